"""bench/recording.py: a benchmark run records a new dated file and never replaces one already there (a committed
record, or an earlier run of the same day)."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def recording() -> ModuleType:
    """bench/ is a directory of scripts, not a package: load the module from its file."""
    spec = importlib.util.spec_from_file_location("recording", ROOT / "bench" / "recording.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_run_of_a_recorded_day_gets_a_new_name(tmp_path: Path) -> None:
    day = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    new_record = recording().new_record
    first = new_record(day, "quick", tmp_path)
    assert first == tmp_path / "2026-11-30-quick.json"
    first.write_text("{}\n")
    second = new_record(day, "quick", tmp_path)
    assert second == tmp_path / "2026-11-30-quick-2.json"
    second.write_text("{}\n")
    assert new_record(day, "quick", tmp_path) == tmp_path / "2026-11-30-quick-3.json"
