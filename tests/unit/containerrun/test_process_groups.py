"""A "stopped" that means stopped: the sentinel waits for the main process's whole process group, and START waits too.

The main process is a wrapper shell around a worker that traps SIGTERM and lingers, as BOSH start scripts and
databases flushing to disk do. Both implementations run each test; where they differ, each branch asserts what
that implementation does.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DEADLINE, Containerrun, Start, gone, lines, wait_for, wrapped_worker


def status_state(base_dir: Path) -> str:
    """What `processcontrol status` says about the one socket."""
    script = Path(sys.executable).with_name("processcontrol")
    out = subprocess.run(
        [str(script), "status", "--base-dir", str(base_dir), "-o", "json"],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=True,
    ).stdout
    rows = json.loads(out)
    assert len(rows) == 1, rows
    state: str = rows[0]["state"]
    return state


def started_worker(run: Containerrun, record: Path, worker_pid: Path, starts: int = 1) -> int:
    wait_for(lambda: lines(record).count("start") == starts and worker_pid.exists(), "the worker to start")
    return int(worker_pid.read_text())


def test_sentinel_stays_until_the_whole_process_group_is_gone(start: Start, base_dir: Path) -> None:
    command, record, worker_pid = wrapped_worker(base_dir)
    run = start(command)
    main = run.wait_running()
    worker = started_worker(run, record, worker_pid)
    assert status_state(base_dir) == "running"
    run.send("STOP")
    wait_for(lambda: gone(main), "the wrapper shell to exit")
    if run.impl.ours:
        # The worker got SIGTERM with its group and is flushing: not stopped yet, and nobody is told it is.
        assert not gone(worker)
        assert run.endpoint.sentinel.exists()
        assert status_state(base_dir) == "running"
        wait_for(lambda: not run.endpoint.sentinel.exists(), "the sentinel to go")
        assert gone(worker)
        assert lines(record) == ["start", "term", "done"]
        assert status_state(base_dir) == "stopped"
        assert "the main process and its whole process group are gone" in run.log()
    else:
        # The Go original signals only the wrapper and calls it stopped when the wrapper exits: the worker never
        # even got SIGTERM and runs on, orphaned, while the sentinel is gone.
        wait_for(lambda: not run.endpoint.sentinel.exists(), "the sentinel to go")
        assert status_state(base_dir) == "stopped"
        assert not gone(worker)
        assert lines(record) == ["start"]


def test_start_right_after_stop_waits_for_the_old_process_group(start: Start, base_dir: Path) -> None:
    command, record, worker_pid = wrapped_worker(base_dir, linger=1)
    run = start(command)
    main = run.wait_running()
    old_worker = started_worker(run, record, worker_pid)
    run.send("STOP")
    run.send("START")
    if run.impl.ours:
        new_main = run.wait_running(other_than=main)
        started_worker(run, record, worker_pid, starts=2)
        # The new worker started after the old one released its lock: no collision, containerrun still up.
        assert lines(record) == ["start", "term", "done", "start"]
        assert gone(old_worker)
        assert run.alive()
        assert not gone(new_main)
        assert "waiting for 1 old process group(s) to be gone before starting" in run.log()
    else:
        # The Go original starts the new wrapper while the old worker (never signalled) holds the lock: the new
        # worker collides, or START kills the old wrapper first and its death is read as a failure. Either way
        # container-run exits non-zero, which restarts the container in Kubernetes.
        assert run.wait_exit() != 0
        assert not gone(old_worker)


@pytest.mark.ours_only
def test_stop_cancels_a_start_that_waits(start: Start, base_dir: Path) -> None:
    """Only ours has a START that waits (the Go original starts at once)."""
    command, record, worker_pid = wrapped_worker(base_dir)
    run = start(command)
    main = run.wait_running()
    started_worker(run, record, worker_pid)
    run.send("STOP")
    run.send("START")
    run.send("STOP")
    wait_for(lambda: "the pending START is cancelled" in run.log(), "the second STOP to be read")
    run.wait_stopped(main)
    run.send("QUIT")  # an observable command behind: the loop went on after the old group was gone
    wait_for(lambda: "received QUIT" in run.log(), "the QUIT")
    assert lines(record) == ["start", "term", "done"]
    assert not run.endpoint.sentinel.exists()
    run.wait_no_descendants()
