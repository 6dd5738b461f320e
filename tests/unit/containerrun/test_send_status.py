"""`processcontrol send` and `processcontrol status`: results, filters, output and exit codes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from processcontrol import cli
from processcontrol.containerrun.protocol import Endpoint

from .conftest import DEADLINE, Start


def run_cli(argv: list[str]) -> int:
    """Run a `processcontrol` subcommand in-process, through the real CLI."""
    return cli.main(argv)


class Listener:
    """A bound containerrun-style socket that records what it receives (a stand-in for containerrun)."""

    def __init__(self, base_dir: Path, job: str, process: str) -> None:
        self.endpoint = Endpoint(base_dir, job, process)
        self.endpoint.socket.parent.mkdir(parents=True, exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.endpoint.socket))
        self.sock.setblocking(False)

    def received(self) -> list[bytes]:
        got = []
        while True:
            try:
                got.append(self.sock.recv(1024))
            except BlockingIOError:
                return got

    def run(self, pid: int) -> None:
        """Look like a running process: sentinel and pid file."""
        self.endpoint.sentinel.touch()
        self.endpoint.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.endpoint.pidfile.write_text(str(pid))


@pytest.fixture
def listeners(base_dir: Path) -> Iterator[dict[str, Listener]]:
    made = {
        "a/web": Listener(base_dir, "a", "web"),
        "a/worker": Listener(base_dir, "a", "worker"),
        "b/web": Listener(base_dir, "b", "web"),
    }
    yield made
    for listener in made.values():
        listener.sock.close()


def stale_socket(base_dir: Path, job: str, process: str) -> Path:
    path = Endpoint(base_dir, job, process).socket
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
    return path


def test_send_all(base_dir: Path, listeners: dict[str, Listener], capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["send", "STOP", "--all", "--base-dir", str(base_dir)]) == 0
    assert all(listener.received() == [b"STOP"] for listener in listeners.values())
    out = capsys.readouterr().out.splitlines()
    assert out == [f"sent     {listeners[name].endpoint.socket}" for name in ("a/web", "a/worker", "b/web")]


def test_send_uses_the_base_dir_from_the_environment(
    base_dir: Path, listeners: dict[str, Listener], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONTAINERRUN_BASE_DIR", str(base_dir))
    assert run_cli(["send", "QUIT", "--all"]) == 0
    assert listeners["b/web"].received() == [b"QUIT"]


@pytest.mark.parametrize(
    ("filters", "chosen"),
    [
        (["--job", "a"], {"a/web", "a/worker"}),
        (["--process", "web"], {"a/web", "b/web"}),
        (["--job", "a", "--process", "web"], {"a/web"}),
        (["--job", "a", "--job", "b", "--process", "web"], {"a/web", "b/web"}),
    ],
)
def test_send_filters(base_dir: Path, listeners: dict[str, Listener], filters: list[str], chosen: set[str]) -> None:
    assert run_cli(["send", "START", *filters, "--base-dir", str(base_dir)]) == 0
    assert {name for name, listener in listeners.items() if listener.received() == [b"START"]} == chosen


def test_send_to_named_sockets_reports_refused_and_missing(
    base_dir: Path, listeners: dict[str, Listener], capsys: pytest.CaptureFixture[str]
) -> None:
    stale = stale_socket(base_dir, "c", "dead")
    missing = base_dir / "data" / "c" / "nothing_containerrun.sock"
    good = listeners["a/web"].endpoint.socket
    assert run_cli(["send", "STOP", str(good), str(stale), str(missing)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"sent     {good}"
    assert out[1].startswith(f"refused  {stale}: ")
    assert out[2].startswith(f"missing  {missing}: ")
    assert listeners["a/web"].received() == [b"STOP"]


def test_send_reports_a_job_without_sockets(
    base_dir: Path, listeners: dict[str, Listener], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(["send", "STOP", "--job", "a", "--job", "zzz", "--base-dir", str(base_dir)]) == 1
    out = capsys.readouterr().out
    assert "missing  no socket for job 'zzz'" in out
    assert out.count("sent ") == 2


def test_send_all_without_sockets_fails(base_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["send", "STOP", "--all", "--base-dir", str(base_dir)]) == 1
    assert "no containerrun sockets" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["send", "STOP"], "name sockets, or select them"),
        (["send", "STOP", "/x.sock", "--all"], "not both"),
        (["send", "stop", "--all"], "invalid choice: 'stop'"),
        (["send"], "required"),
        (["status", "-o", "yaml"], "invalid choice: 'yaml'"),
    ],
)
def test_usage_errors_exit_2(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_cli(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_status(base_dir: Path, listeners: dict[str, Listener], capsys: pytest.CaptureFixture[str]) -> None:
    listeners["a/web"].run(4242)
    stale = stale_socket(base_dir, "c", "dead")
    assert run_cli(["status", "--base-dir", str(base_dir)]) == 0
    table = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert table == [
        ["JOB", "PROCESS", "STATE", "PID", "SOCKET"],
        ["a", "web", "running", "4242", str(listeners["a/web"].endpoint.socket)],
        ["a", "worker", "stopped", "-", str(listeners["a/worker"].endpoint.socket)],
        ["b", "web", "stopped", "-", str(listeners["b/web"].endpoint.socket)],
        ["c", "dead", "stale", "-", str(stale)],
    ]
    assert run_cli(["status", "--base-dir", str(base_dir), "-o", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows == [
        {
            "job": "a",
            "process": "web",
            "state": "running",
            "pid": 4242,
            "socket": str(listeners["a/web"].endpoint.socket),
        },
        {
            "job": "a",
            "process": "worker",
            "state": "stopped",
            "pid": None,
            "socket": str(listeners["a/worker"].endpoint.socket),
        },
        {
            "job": "b",
            "process": "web",
            "state": "stopped",
            "pid": None,
            "socket": str(listeners["b/web"].endpoint.socket),
        },
        {"job": "c", "process": "dead", "state": "stale", "pid": None, "socket": str(stale)},
    ]
    assert all(listener.received() == [] for listener in listeners.values()), "status must not send commands"


def test_status_without_sockets(base_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["status", "--base-dir", str(base_dir), "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def processcontrol(*argv: str) -> subprocess.CompletedProcess[str]:
    """The installed console script, as people and the in-pod script run it."""
    script = Path(sys.executable).with_name("processcontrol")
    return subprocess.run(
        [str(script), *argv], capture_output=True, text=True, timeout=DEADLINE, env={**os.environ}, check=False
    )


def test_send_and_status_drive_a_real_containerrun(start: Start, base_dir: Path) -> None:
    run = start(["sleep", "1000"])
    pid = run.wait_running()
    rows = json.loads(processcontrol("status", "--base-dir", str(base_dir), "-o", "json").stdout)
    assert [(row["state"], row["pid"]) for row in rows] == [("running", pid)]
    result = processcontrol("send", "STOP", "--all", "--base-dir", str(base_dir))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"sent     {run.sock}\n"
    run.wait_stopped(pid)
    rows = json.loads(processcontrol("status", "--base-dir", str(base_dir), "-o", "json").stdout)
    assert [(row["state"], row["pid"]) for row in rows] == [("stopped", None)]
    run.proc.terminate()
    assert run.wait_exit() == 0
    result = processcontrol("send", "START", str(run.sock))
    assert result.returncode == 1
    # Ours removes its socket on exit; the Go original leaves it, and then it refuses.
    assert result.stdout.startswith("missing " if run.impl.ours else "refused ")
