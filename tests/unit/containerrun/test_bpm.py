"""The `bpm` command containerrun writes for drain scripts: real scripts, real sockets of both implementations.

Our bpm is tested against our containerrun and the Go original's socket alike (written aside, since the Go
original writes its own bash bpm where ours would go), against the Go original's bpm for the same exit codes and
output, with each sender tool, with names no shell should run, and from a drain-style script.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from processcontrol.containerrun.bpm import BPM_PATH, bpm_script

from .conftest import (
    DEADLINE,
    OURS,
    Containerrun,
    Implementation,
    Start,
    gone,
    lines,
    recorder,
    wait_for,
    wait_recorder,
    wrapped_worker,
)

SLEEP = ["sleep", "1000"]
VENV_BIN = Path(sys.executable).parent
USAGE = "usage: {0} [start|stop|quit|term|pid|running] JOBNAME [-p PROCESSNAME]\n"

Bpm = Callable[..., subprocess.CompletedProcess[str]]


def write_ours(path: Path, base_dir: Path) -> Path:
    path.write_text(bpm_script(base_dir))
    path.chmod(0o755)
    return path


def run_bpm(
    script: Path,
    args: Sequence[str],
    *,
    base_dir: Path | None = None,
    path: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a bpm script as a drain script would: executed directly, no terminal."""
    environ = {k: v for k, v in os.environ.items() if k != "CONTAINERRUN_BASE_DIR"}
    environ["PATH"] = path if path is not None else f"{VENV_BIN}:{os.environ['PATH']}"
    if base_dir is not None:
        environ["CONTAINERRUN_BASE_DIR"] = str(base_dir)
    environ.update(env or {})
    return subprocess.run(
        [str(script), *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE + 40,  # stop waits up to 30 s
        env=environ,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture
def bpm(tmp_path: Path, base_dir: Path) -> Bpm:
    """Our bpm, written aside, addressing `base_dir` through CONTAINERRUN_BASE_DIR."""
    script = write_ours(tmp_path / "bpm", tmp_path / "not-the-base")  # the environment must win over the default

    def _bpm(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return run_bpm(script, args, base_dir=base_dir, **kwargs)  # type: ignore[arg-type]

    return _bpm


def test_containerrun_writes_a_bpm_only_where_none_is(start: Start, base_dir: Path) -> None:
    path = base_dir / BPM_PATH
    first = start(SLEEP, job="first")
    first.wait_running()
    assert os.access(path, os.X_OK)
    written = path.read_bytes()
    if first.impl.ours:
        assert written.decode() == bpm_script(base_dir)
    else:
        assert written.startswith(b"#!/bin/bash\n")
    path.write_text("#!/bin/sh\necho mine\n")
    second = start(SLEEP, job="second")
    second.wait_running()
    assert path.read_text() == "#!/bin/sh\necho mine\n"


def test_written_bpm_uses_the_base_dir_containerrun_ran_with(start: Start, base_dir: Path) -> None:
    """Ours is written with its base directory as the default; the Go original's is /var/vcap, always."""
    run = start(SLEEP)
    pid = run.wait_running()
    if not run.impl.ours:
        assert "/var/vcap/data/${JOB}" in (base_dir / BPM_PATH).read_text()
        return
    done = run_bpm(base_dir / BPM_PATH, ["pid", "job", "-p", "proc"])  # no CONTAINERRUN_BASE_DIR
    assert (done.returncode, done.stdout) == (0, f"{pid}\n")


def test_bpm_verbs(start: Start, base_dir: Path, bpm: Bpm) -> None:
    record = base_dir / "record"
    run = start(recorder(record), job="web", process="nginx")
    pid = run.wait_running()
    wait_recorder(record)

    assert bpm("running", "web", "-p", "nginx").returncode == 0
    done = bpm("pid", "web", "-p", "nginx")
    assert (done.returncode, done.stdout) == (0, f"{pid}\n")
    assert bpm("running", "web").returncode == 1  # the process name defaults to the job name

    assert bpm("quit", "web", "-p", "nginx").returncode == 0
    wait_for(lambda: "quit" in lines(record), "SIGQUIT to reach the process")

    done = bpm("stop", "web", "-p", "nginx")
    assert (done.returncode, done.stdout) == (0, "")
    assert not run.endpoint.sentinel.exists()  # stop returned only once it was stopped
    assert gone(pid)
    assert lines(record) == ["start", "quit", "term"]
    done = bpm("pid", "web", "-p", "nginx")
    assert (done.returncode, done.stdout) == (1, "Process is not running\n")
    assert bpm("running", "web", "-p", "nginx").returncode == 1
    assert bpm("stop", "web", "-p", "nginx").returncode == 0  # already stopped

    assert bpm("start", "web", "-p", "nginx").returncode == 0
    second = run.wait_running(other_than=pid)
    wait_recorder(record, 2)

    assert bpm("term", "web", "-p", "nginx").returncode == 0  # does not wait
    run.wait_stopped(second)


@pytest.mark.parametrize(
    "args",
    [[], ["stop"], ["stop", "j", "-p"], ["stop", "j", "-x", "p"], ["restart", "j"], ["stop", "j", "-p", "p", "x"]],
    ids=["none", "no-job", "three", "not-p", "bad-verb", "five"],
)
def test_bpm_usage_errors_exit_1(bpm: Bpm, tmp_path: Path, args: list[str]) -> None:
    done = bpm(*args)
    assert (done.returncode, done.stdout) == (1, USAGE.format(tmp_path / "bpm"))


def test_bpm_send_failure(bpm: Bpm, base_dir: Path) -> None:
    """No containerrun: start/term/quit fail (exit 1, the tool's message); stop then waits only for the sentinel."""
    for verb in ("start", "term", "quit"):
        done = bpm(verb, "job", "-p", "proc")
        assert done.returncode == 1
        assert "proc_containerrun.sock" in done.stderr
    assert bpm("stop", "job", "-p", "proc").returncode == 0  # nothing running: as the original


def test_bpm_stop_gives_up_after_its_wait(base_dir: Path, bpm: Bpm) -> None:
    """Against ours only: bpm's wait is its own, and the Go original's fixed 20 s stop timeout would only make
    the test wait longer."""
    ready = base_dir / "ready"
    run = Containerrun(OURS, base_dir, "job", "proc", ["sh", "-c", f"trap '' TERM; touch {ready}; exec sleep 1000"])
    try:
        run.wait_listening()
        run.wait_running()
        wait_for(ready.exists, "the child to ignore SIGTERM")
        done = bpm("stop", "job", "-p", "proc", env={"PROCESSCONTROL_BPM_STOP_WAIT": "1"})
        assert (done.returncode, done.stdout) == (1, "Process did not stop within 1 seconds\n")
        assert run.endpoint.sentinel.exists()
    finally:
        run.close()


def tool_path(tool: str, shims: Path) -> str:
    """A PATH with only what bpm needs besides the shell: sleep, cat and one sender tool."""
    shims.mkdir()
    for name in ("sleep", "cat"):
        found = shutil.which(name)
        assert found
        (shims / name).symlink_to(found)
    sources = {
        "processcontrol": str(VENV_BIN / "processcontrol"),
        "ncat": shutil.which("ncat"),
        "nc-openbsd": shutil.which("nc.openbsd"),
        "socat": shutil.which("socat"),
        "python3": sys.executable,
        "perl": shutil.which("perl"),
    }
    source = sources[tool]
    assert source, f"{tool} is not installed (make deps installs it)"
    (shims / ("nc" if tool == "nc-openbsd" else tool)).symlink_to(source)
    return str(shims)


# A job and a process name that would run commands, glob, or change a tool's address syntax if they were code.
HOSTILE_JOB = "a b'\"$(touch c)`touch c`;*"
HOSTILE_PROCESS = "-x :,!!\\%s*"


@pytest.mark.parametrize("tool", ["processcontrol", "ncat", "nc-openbsd", "socat", "python3", "perl"])
def test_bpm_senders_with_hostile_names(start: Start, base_dir: Path, tmp_path: Path, tool: str) -> None:
    script = write_ours(tmp_path / "bpm", base_dir)
    path = tool_path(tool, tmp_path / "shims")
    run = start(SLEEP, job=HOSTILE_JOB, process=HOSTILE_PROCESS)
    pid = run.wait_running()
    args = [HOSTILE_JOB, "-p", HOSTILE_PROCESS]
    done = run_bpm(script, ["stop", *args], path=path, cwd=base_dir)
    assert (done.returncode, done.stderr) == (0, "")
    run.wait_stopped(pid)
    done = run_bpm(script, ["start", *args], path=path, cwd=base_dir)
    assert (done.returncode, done.stderr) == (0, "")
    second = run.wait_running(other_than=pid)
    done = run_bpm(script, ["pid", *args], path=path, cwd=base_dir)
    assert (done.returncode, done.stdout) == (0, f"{second}\n")
    assert not (base_dir / "c").exists()


def test_drain_script_calls_bpm_stop(start: Start, base_dir: Path, tmp_path: Path) -> None:
    """A BOSH-style drain script: `bpm stop JOB -p PROCESS`, then print the wait in seconds (0).

    With ours, bpm stop returns once the wrapper shell's lingering worker is gone too. Against the Go original's
    socket, the same script returns while the worker still runs (it was not even signalled)."""
    command, record, worker_pid = wrapped_worker(base_dir)
    run = start(command, job="db", process="mysql")
    run.wait_running()
    wait_for(lambda: lines(record) == ["start"] and worker_pid.exists(), "the worker to start")
    worker = int(worker_pid.read_text())
    # Ours drains with the bpm it wrote; the Go original wrote its own, hard-coded to /var/vcap: ours goes aside.
    bpm_path = base_dir / BPM_PATH if run.impl.ours else write_ours(tmp_path / "bpm", base_dir)
    drain = tmp_path / "drain"
    drain.write_text(f"#!/bin/sh\nset -e\n'{bpm_path}' stop db -p mysql >&2\necho 0\n")
    drain.chmod(0o755)
    done = subprocess.run(
        [str(drain)],
        capture_output=True,
        text=True,
        timeout=DEADLINE + 40,
        env={**os.environ, "PATH": f"{VENV_BIN}:{os.environ['PATH']}", "CONTAINERRUN_BASE_DIR": str(base_dir)},
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, "0\n"), done.stderr
    if run.impl.ours:
        assert gone(worker)
        assert lines(record) == ["start", "term", "done"]
    else:
        assert not gone(worker)
        assert lines(record) == ["start"]


def go_bpm_runner(base_dir: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run the Go original's own bpm (bash, /var/vcap, `nc -w 1`) with `base_dir` bound on /var/vcap."""
    inner = 'mount --bind "$1" /var/vcap && shift && exec "$@"'

    def _run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["unshare", "--mount", "sh", "-c", inner, "go-bpm", str(base_dir), "/var/vcap/" + str(BPM_PATH), *args],
            capture_output=True,
            text=True,
            timeout=DEADLINE + 40,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    return _run


def test_bpm_answers_as_the_go_bpm(go_implementation: Implementation, base_dir: Path, tmp_path: Path, bpm: Bpm) -> None:
    """The same calls to the Go original's bpm and ours, on the Go original: the same exit codes and output."""
    assert shutil.which("nc"), "the Go original's bpm sends with nc (make deps installs netcat-openbsd)"
    record = base_dir / "record"
    run = Containerrun(go_implementation, base_dir, "web", "nginx", recorder(record))
    try:
        run.wait_listening()
        pid = run.wait_running()
        wait_recorder(record)
        go = go_bpm_runner(base_dir)

        def same(*args: str) -> tuple[int, str]:
            theirs, ours = go(*args), bpm(*args)
            assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), (args, theirs, ours)
            return ours.returncode, ours.stdout

        assert same("running", "web", "-p", "nginx") == (0, "")
        assert same("pid", "web", "-p", "nginx") == (0, f"{pid}\n")
        assert same("pid", "web") == (1, "Process is not running\n")
        for args in (["stop"], ["stop", "j", "-x", "p"], ["restart", "j"]):
            theirs, ours = go(*args), bpm(*args)
            assert theirs.returncode == ours.returncode == 1
            assert theirs.stdout.startswith("usage: ") and ours.stdout.startswith("usage: ")
        assert go("quit", "web", "-p", "nginx").returncode == 0
        wait_for(lambda: lines(record).count("quit") == 1, "the Go bpm's QUIT")
        assert bpm("quit", "web", "-p", "nginx").returncode == 0
        wait_for(lambda: lines(record).count("quit") == 2, "our bpm's QUIT")
        done = bpm("stop", "web", "-p", "nginx")
        assert (done.returncode, done.stdout) == (0, "")
        assert gone(pid)
        assert same("stop", "web", "-p", "nginx") == (0, "")  # stopped already
        assert same("running", "web", "-p", "nginx") == (1, "")
        assert go("start", "web", "-p", "nginx").returncode == 0
        second = run.wait_running(other_than=pid)
        assert same("start", "web", "-p", "nginx") == (0, "")  # running already
        done = go("stop", "web", "-p", "nginx")
        assert (done.returncode, done.stdout) == (0, "")
        assert gone(second)
    finally:
        run.close()
