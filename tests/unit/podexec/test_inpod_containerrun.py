"""The in-pod script driving our real `containerrun` (and the real `processcontrol send`) with each tool."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.testing import missing
from processcontrol.podexec.script import ScriptReport

from .conftest import PROCESSCONTROL, Containerrun, Pod, make_stale_socket, run_script, toolbox

Start = Callable[[str, str], Containerrun]


def real_processcontrol(directory: Path) -> Path:
    if not os.access(PROCESSCONTROL, os.X_OK):
        missing("processcontrol is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "processcontrol").symlink_to(PROCESSCONTROL)
    return directory


def bin_dir_for(tool: str, directory: Path) -> Path:
    return real_processcontrol(directory) if tool == "processcontrol" else toolbox(directory, [tool])


def status(pod: Pod, path: Path) -> ScriptReport:
    run = run_script(pod.base, "STATUS", path=path)
    assert run.returncode == 0, run.stderr
    return run.report


@pytest.mark.parametrize("tool", ["processcontrol", "ncat", "nc", "socat", "python3", "perl"])
def test_stop_and_start_real_containerrun(pod: Pod, containerruns: Start, tmp_path: Path, tool: str) -> None:
    runners = [containerruns("pxc-mysql", "mysql"), containerruns("pxc-mysql", "galera-agent")]
    make_stale_socket(pod.base, "gone", "crashed")
    bin_dir = bin_dir_for(tool, tmp_path / "bin")

    run = run_script(pod.base, "STOP", ["pxc-mysql", "gone"], path=bin_dir)
    assert run.returncode == 0, run.stderr
    report = run.report
    assert report.tool == ("processcontrol-python" if tool == "processcontrol" else tool)
    results = {(s.job, s.process): s.result for s in report.sockets}
    assert results == {
        ("pxc-mysql", "mysql"): "sent",
        ("pxc-mysql", "galera-agent"): "sent",
        ("gone", "crashed"): "refused",
    }
    for runner in runners:
        runner.wait_until(lambda r=runner: not r.sentinel.exists())  # type: ignore[misc]

    after_stop = {(s.job, s.process): s for s in status(pod, bin_dir).sockets}
    for runner in runners:
        seen = after_stop[runner.job, runner.process]
        assert seen.running is False
        assert seen.result == "probed"
        assert seen.pid == runner.pid()
    assert after_stop["gone", "crashed"].result in ("stale", "probed")

    run = run_script(pod.base, "START", [], ["mysql"], path=bin_dir)
    assert [(s.job, s.process, s.result) for s in run.report.sockets] == [("pxc-mysql", "mysql", "sent")]
    runners[0].wait_until(runners[0].sentinel.exists)
    after_start = {(s.job, s.process): s for s in status(pod, bin_dir).sockets}
    assert after_start["pxc-mysql", "mysql"].running is True
    assert after_start["pxc-mysql", "mysql"].pid == runners[0].pid() is not None
    assert after_start["pxc-mysql", "galera-agent"].running is False


def test_status_with_real_processcontrol_only(pod: Pod, containerruns: Start, tmp_path: Path) -> None:
    """An image with our package but no nc: STATUS probes with the console script's own interpreter."""
    containerruns("job", "live")
    make_stale_socket(pod.base, "job", "stale")
    report = status(pod, real_processcontrol(tmp_path / "bin"))
    assert report.tool == "processcontrol-python"
    results = {s.process: (s.result, s.running) for s in report.sockets}
    assert results == {"live": ("probed", True), "stale": ("stale", False)}


@pytest.mark.parametrize("shell", ["sh", "dash", "bash-posix"])
def test_probing_leaves_containerrun_running(pod: Pod, containerruns: Start, tmp_path: Path, shell: str) -> None:
    runner = containerruns("job", "p")
    bin_dir = toolbox(tmp_path / "bin", ["nc"])
    for _ in range(3):
        report = run_script(pod.base, "STATUS", path=bin_dir, shell=shell).report
        assert [(s.result, s.running) for s in report.sockets] == [("probed", True)]
    assert runner.proc.poll() is None
    assert runner.sentinel.exists()
