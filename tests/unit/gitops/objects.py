"""Status objects for the GitOps checks: the fixture files, and the same scenarios built live by build_status()."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "status"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("status_fixtures", FIXTURES / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SCENARIOS: dict[str, Callable[[], dict[str, Any]]] = _generator().SCENARIOS
FIXTURE_FILES = sorted(FIXTURES.glob("*.json"))


def state_of(stem: str) -> str:
    """The state a fixture shows: its file name up to the first dot (`suspended.e2e.json` -> suspended)."""
    return stem.split(".", 1)[0]


def status_objects() -> list[Any]:
    """Every fixture file, and every scenario computed now (so a change to build_status is seen at once)."""
    files = [pytest.param(json.loads(p.read_text()), state_of(p.stem), id=f"file:{p.stem}") for p in FIXTURE_FILES]
    live = [pytest.param(build(), state_of(stem), id=f"live:{stem}") for stem, build in SCENARIOS.items()]
    return files + live
