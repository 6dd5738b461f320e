"""What the test tiers share about pytest itself: a missing prerequisite is never a silent pass, and a test leaves
no process behind.

On a developer's machine a missing prerequisite skips with its reason (`-rs` in pytest's options prints every
reason in the summary); in CI (`CI` set, as `.ci/run` does) it fails, so that nothing CI is meant to check can go
unchecked there.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from harness.base import kill_marked, pid_alive, pids_with_env

# Set to a fresh value around each test: every process the test starts inherits it, and so does everything those
# start in turn, also once reparented to init.
TEST_MARKER = "PROCESSCONTROL_TEST_MARKER"
# A process the test stopped may still be exiting when the test returns (a SIGTERM handler, a stop timeout).
EXIT_GRACE_S = 5.0


def in_ci() -> bool:
    """Whether this runs in CI (`CI=true`, `1` or `yes`)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> NoReturn:
    """A prerequisite of this test is missing: skip with the reason, or fail in CI."""
    if in_ci():
        pytest.fail(f"CI must run this test, but: {reason}", pytrace=False)
    pytest.skip(reason)


def _describe(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} {' '.join(a.decode(errors='replace') for a in argv)[:200]}"


@contextlib.contextmanager
def no_process_left() -> Iterator[None]:
    """Fail when a process started inside is still alive at the end (after a short grace), and kill it, so that one
    test's leak is that test's failure and not a `sleep 1000` under init for the rest of the machine's life."""
    entry = f"{TEST_MARKER}={uuid.uuid4().hex}"
    before = os.environ.get(TEST_MARKER)
    os.environ[TEST_MARKER] = entry.split("=", 1)[1]
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(TEST_MARKER, None)
        else:
            os.environ[TEST_MARKER] = before
    left = pids_with_env(entry)
    deadline = time.monotonic() + EXIT_GRACE_S
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = {pid for pid in left if pid_alive(pid)}
    if not left:
        return
    described = [_describe(pid) for pid in sorted(left)]
    kill_marked(entry)
    pytest.fail(
        f"{len(described)} process(es) started by this test still ran {EXIT_GRACE_S:g}s after it ended (killed now): "
        + "; ".join(described),
        pytrace=False,
    )
