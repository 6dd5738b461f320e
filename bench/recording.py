"""Where a benchmark run's record goes: a new file named after its date, never one that is already there, so a run
leaves the committed records as they are. `latest.*` change only when asked (`--update-latest`, `make bench
UPDATE=1`)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"


def new_record(started: datetime, name: str, directory: Path = RESULTS) -> Path:
    """`<directory>/<date>-<name>.json`, or `-2`, `-3`, ... after it when a run of that day is recorded already."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{started:%Y-%m-%d}-{name}"
    path, n = directory / f"{stem}.json", 2
    while path.exists():
        path, n = directory / f"{stem}-{n}.json", n + 1
    return path
