"""Fixtures for the in-pod script: real unix datagram sockets under a temporary base dir, real shells, real tools."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.testing import missing
from processcontrol.podexec.script import Action, ScriptReport, build_command, parse_output

# Shells the script must work with; dash is /bin/sh on Debian, bash is /bin/sh on SLE.
SHELLS: dict[str, list[str]] = {
    "sh": ["/bin/sh"],
    "dash": [shutil.which("dash") or "/nonexistent/dash"],
    "bash-posix": [shutil.which("bash") or "/nonexistent/bash", "--posix"],
}

# The sender tools as they are found on this machine; python3 resolved past any pyenv shim.
TOOL_BINARIES: dict[str, str | None] = {
    "ncat": shutil.which("ncat"),
    "nc": shutil.which("nc.openbsd") or shutil.which("nc"),
    "socat": shutil.which("socat"),
    "python3": next((p for p in ("/usr/bin/python3", "/bin/python3") if os.access(p, os.X_OK)), None),
    "perl": shutil.which("perl"),
}


@dataclass
class Listener:
    """A containerrun stand-in: binds the socket, records datagrams, keeps the `.running` sentinel like containerrun."""

    base: Path
    job: str
    process: str
    received: list[bytes] = field(default_factory=list)
    sock: socket.socket | None = None
    thread: threading.Thread | None = None
    got: threading.Condition = field(default_factory=threading.Condition)

    @property
    def path(self) -> Path:
        return self.base / "data" / self.job / f"{self.process}_containerrun.sock"

    @property
    def sentinel(self) -> Path:
        return self.base / "data" / self.job / f"{self.process}_containerrun.running"

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sentinel.touch()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        assert self.sock is not None
        while True:
            try:
                data = self.sock.recv(4096)
            except OSError:
                return
            if data == b"":
                return  # the shutdown datagram of stop()
            self.on_command(data.strip())
            with self.got:
                self.received.append(data)
                self.got.notify_all()

    def on_command(self, command: bytes) -> None:
        """What containerrun does with the sentinel (a stand-in that behaves otherwise overrides this)."""
        if command == b"STOP":
            self.sentinel.unlink(missing_ok=True)
        elif command == b"START":
            self.sentinel.touch()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[bytes]:
        with self.got:
            self.got.wait_for(lambda: len(self.received) >= count, timeout=timeout)
            return list(self.received)

    def received_so_far(self) -> list[bytes]:
        """Everything sent to the socket before this call, known without a pause: a marker datagram sent now queues
        behind whatever was sent earlier (a datagram socket keeps order), so once the marker is in, what came
        before it is all there is."""
        marker = f"marker-{id(self)}-{time.monotonic_ns()}".encode()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as poke:
            poke.sendto(marker, str(self.path))
        with self.got:
            assert self.got.wait_for(lambda: marker in self.received, timeout=10), "the marker never arrived"
            before = self.received[: self.received.index(marker)]
            self.received.remove(marker)
            return before

    def stop(self, remove: bool = True) -> None:
        """Stop listening; with remove=False the socket file stays behind (a stale socket)."""
        if self.sock is None:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as poke, contextlib.suppress(OSError):
            poke.sendto(b"", str(self.path))
        if self.thread is not None:
            self.thread.join(timeout=5)
        self.sock.close()
        self.sock = None
        if remove:
            self.path.unlink(missing_ok=True)


def make_stale_socket(base: Path, job: str, process: str) -> Path:
    """A socket file whose listener is gone, as a crashed containerrun leaves it."""
    path = base / "data" / job / f"{process}_containerrun.sock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
    return path


class Pod:
    """A base dir laid out like a kubecf pod's /var/vcap, with listeners on it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        (base / "data").mkdir(parents=True)
        self.listeners: dict[tuple[str, str], Listener] = {}

    def listen(self, job: str, process: str) -> Listener:
        listener = Listener(self.base, job, process)
        listener.start()
        self.listeners[(job, process)] = listener
        return listener

    def pid_file(self, job: str, process: str, content: str) -> None:
        path = self.base / "sys" / "run" / "bpm" / job / f"{process}.pid"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)

    def close(self) -> None:
        for listener in self.listeners.values():
            listener.stop()


@pytest.fixture
def pod() -> Iterator[Pod]:
    # A short path of its own: sun_path holds 108 bytes, pytest's tmp_path is often longer.
    base = Path(tempfile.mkdtemp(prefix="pc-"))
    p = Pod(base / "vcap")
    try:
        yield p
    finally:
        p.close()
        shutil.rmtree(base, ignore_errors=True)


def tool_path(name: str) -> str:
    """Where a sender tool is on this machine (missing: skip, or fail in CI)."""
    path = TOOL_BINARIES[name]
    if path is None:
        missing(f"{name} is not installed")
    return path


def toolbox(directory: Path, tools: Sequence[str]) -> Path:
    """A PATH directory holding only the given tools (symlinks); the script itself needs only shell builtins."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in tools:
        (directory / name).symlink_to(tool_path(name))
    return directory


@dataclass
class Run:
    stdout: str
    stderr: str
    returncode: int

    @property
    def report(self) -> ScriptReport:
        return parse_output(self.stdout)


def run_script(
    base: Path,
    action: Action | str,
    jobs: Sequence[str] = (),
    processes: Sequence[str] = (),
    *,
    path: Path | str,
    shell: str = "sh",
    cwd: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Run:
    """Run the script exactly as the operator's exec does, with the shell swapped in."""
    command = build_command(Action(action) if action in Action.__members__ else Action.STATUS, jobs, processes)
    if action not in Action.__members__:
        command[4] = str(action)
    interpreter = SHELLS[shell]
    if not os.access(interpreter[0], os.X_OK):
        missing(f"{shell} is not installed")
    env = {"PATH": str(path), "CONTAINERRUN_BASE_DIR": str(base), **(extra_env or {})}
    done = subprocess.run(
        [*interpreter, *command[1:]], env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    return Run(done.stdout, done.stderr, done.returncode)


CONTAINERRUN = Path(sys.executable).parent / "containerrun"
PROCESSCONTROL = Path(sys.executable).parent / "processcontrol"


class Containerrun:
    """Our real `containerrun` supervising `sleep`, on a pod's base dir."""

    def __init__(self, base: Path, job: str, process: str) -> None:
        if not os.access(CONTAINERRUN, os.X_OK):
            missing("containerrun is not installed")
        self.base = base
        self.job = job
        self.process = process
        self.sock = base / "data" / job / f"{process}_containerrun.sock"
        self.sentinel = base / "data" / job / f"{process}_containerrun.running"
        self.pid_file = base / "sys" / "run" / "bpm" / job / f"{process}.pid"
        command = [str(CONTAINERRUN), "--job-name", job, "--process-name", process, "--base-dir", str(base)]
        command += ["--stop-timeout", "5", "--", "sleep", "1000"]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.wait_until(lambda: self.sock.is_socket() and self.sentinel.exists() and self.pid_file.exists())

    def pid(self) -> int | None:
        """The pid file's number, or None when containerrun has removed it (after STOP)."""
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if self.proc.poll() is not None:
                raise AssertionError(f"containerrun {self.job}/{self.process} exited with {self.proc.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError(f"containerrun {self.job}/{self.process}: condition not reached")
            time.sleep(0.02)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def containerruns(pod: Pod) -> Iterator[Callable[[str, str], Containerrun]]:
    started: list[Containerrun] = []

    def start(job: str, process: str) -> Containerrun:
        runner = Containerrun(pod.base, job, process)
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.close()
