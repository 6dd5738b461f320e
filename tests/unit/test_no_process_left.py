"""harness.testing.no_process_left, which every unit test runs under (tests/conftest.py): a process a test leaves
behind, also one reparented to init, fails the test and is killed; one still exiting within the grace does not."""

from __future__ import annotations

import subprocess

import pytest

from harness import testing
from harness.base import pid_alive


def orphan(command: str) -> int:
    """Start `command` in the background of a shell that exits at once: the command is reparented to init, as a
    containerrun's main process is when containerrun is SIGKILLed. Returns its pid."""
    shell = subprocess.Popen(["sh", "-c", f"{command} & echo $!"], stdout=subprocess.PIPE, text=True)
    assert shell.stdout is not None
    pid = int(shell.stdout.readline())
    shell.wait()
    return pid


def test_a_process_left_behind_fails_the_test_and_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testing, "EXIT_GRACE_S", 0.5)
    left = r"1 process\(es\) started by this test .*: \d+ sleep 1000$"
    with pytest.raises(pytest.fail.Exception, match=left), testing.no_process_left():
        pid = orphan("sleep 1000")
    assert not pid_alive(pid)


def test_a_process_that_exits_within_the_grace_is_no_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(testing, "EXIT_GRACE_S", 5.0)
    with testing.no_process_left():
        pid = orphan("sleep 0.5")
    assert not pid_alive(pid)


def test_processes_of_the_test_around_it_are_not_counted() -> None:
    """The marker is this block's own: a process of the enclosing test (its own marker) is left alone."""
    outer = orphan("sleep 1000")
    try:
        with testing.no_process_left():
            pass
        assert pid_alive(outer)
    finally:
        subprocess.run(["kill", "-9", str(outer)], check=True)
