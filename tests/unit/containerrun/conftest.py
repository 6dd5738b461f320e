"""Real containerrun processes in temporary base directories, driven through real sockets.

Every protocol test takes the `impl` fixture, parametrized over the implementations we can run.
Only ours exists here: the Go original (`code.cloudfoundry.org/quarks-container-run`, v0.0.3) is not
served by the Go module proxy in this environment, so it cannot be built. To add it, append an
`Implementation(name="go-v0.0.3", argv=(binary,), ours=False)` to IMPLEMENTATIONS; note that it has no
`--base-dir`/`--stop-timeout`, so it needs a build whose base path is set from CONTAINERRUN_BASE_DIR
(its package has `SetBasePath`). Tests that hold only for ours are marked `ours_only` and are skipped
for any other implementation.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from processcontrol.containerrun.protocol import Endpoint

# Generous: the machine is small and busy; tests poll and return as soon as the condition holds.
DEADLINE = 30.0
TOKEN_VAR = "CONTAINERRUN_TEST_TOKEN"

T = TypeVar("T")


@dataclass(frozen=True)
class Implementation:
    """A containerrun implementation under test: how to start it."""

    name: str
    argv: tuple[str, ...]
    ours: bool

    def flags(self, base_dir: Path, stop_timeout: float, debug: bool) -> list[str]:
        """The flags beyond the Go original's."""
        flags = ["--base-dir", str(base_dir), "--stop-timeout", f"{stop_timeout:g}"] if self.ours else []
        return [*flags, "--debug"] if debug else flags


OURS = Implementation("ours", (sys.executable, "-m", "processcontrol.containerrun"), ours=True)
IMPLEMENTATIONS = [OURS]


def wait_for(predicate: Callable[[], T], what: str, timeout: float = DEADLINE) -> T:
    """Poll until `predicate()` is truthy; return its value, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def gone(pid: int) -> bool:
    """Whether a process has exited (a zombie counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def marked_pids(token: str) -> set[int]:
    """Live processes whose environment carries the token: a containerrun and everything under it."""
    needle = f"{TOKEN_VAR}={token}".encode()
    pids = set()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/environ", "rb") as environ:
                    if needle in environ.read().split(b"\0"):
                        pids.add(int(entry.name))
            except OSError:
                continue
    return pids


def send_datagram(path: Path, payload: bytes | str) -> None:
    """Send one datagram the plainest way there is."""
    data = payload.encode() if isinstance(payload, str) else payload
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(data, os.fspath(path))


def lines(path: Path) -> list[str]:
    """The lines of a file written by a test child; none when it does not exist yet."""
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


class Containerrun:
    """One running containerrun under test, with its files, log and descendants."""

    def __init__(
        self,
        impl: Implementation,
        base_dir: Path,
        job: str,
        process: str,
        command: Sequence[str],
        *,
        extra: Sequence[str] = (),
        stop_timeout: float = 5.0,
        debug: bool = False,
    ) -> None:
        self.impl = impl
        self.endpoint = Endpoint(base_dir, job, process)
        self.token = uuid.uuid4().hex
        self.log_path = base_dir / f"{job}.{process}.log"
        argv = [
            *impl.argv,
            "--job-name",
            job,
            "--process-name",
            process,
            *impl.flags(base_dir, stop_timeout, debug),
            *extra,
            "--",
            *command,
        ]
        env = {**os.environ, TOKEN_VAR: self.token, "CONTAINERRUN_BASE_DIR": str(base_dir)}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, cwd=base_dir)

    @property
    def sock(self) -> Path:
        return self.endpoint.socket

    def send(self, payload: bytes | str) -> None:
        send_datagram(self.sock, payload)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_count(self, text: str) -> int:
        return self.log().count(text)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def descendants(self) -> set[int]:
        """Live processes started under this containerrun (not itself)."""
        return marked_pids(self.token) - {self.proc.pid}

    def wait_listening(self) -> None:
        wait_for(lambda: self.sock.exists() or not self.alive(), "the socket")
        assert self.alive(), self.log()

    def wait_running(self, other_than: int | None = None) -> int:
        """Wait for the sentinel and a pid file naming a live main process; return its pid."""

        def running() -> int | None:
            assert self.alive(), f"containerrun exited {self.proc.returncode}:\n{self.log()}"
            pid = self.endpoint.read_pid()
            if self.endpoint.sentinel.exists() and pid and pid != other_than and not gone(pid):
                return pid
            return None

        pid = wait_for(running, "the main process to run")
        assert pid is not None
        return pid

    def wait_stopped(self, pid: int) -> None:
        """Wait until the main process is gone and the sentinel removed, with containerrun still up."""
        wait_for(lambda: gone(pid) and not self.endpoint.sentinel.exists(), "the main process to stop")
        assert self.alive(), self.log()

    def wait_no_descendants(self) -> None:
        wait_for(lambda: not self.descendants(), "every child process to be gone")

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        return self.proc.wait(timeout)

    def close(self) -> None:
        """Stop it and everything under it, whatever state the test left it in."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in marked_pids(self.token):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


Start = Callable[..., Containerrun]


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda impl: impl.name)
def impl(request: pytest.FixtureRequest) -> Implementation:
    implementation: Implementation = request.param
    if not implementation.ours and request.node.get_closest_marker("ours_only"):
        pytest.skip(f"holds only for our containerrun, not for {implementation.name}")
    return implementation


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """A short temporary base directory (unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="cr", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start(impl: Implementation, base_dir: Path) -> Iterator[Start]:
    """Start containerruns of `impl` in `base_dir`; stop all of them and their children afterwards."""
    started: list[Containerrun] = []

    def _start(command: Sequence[str], job: str = "job", process: str = "proc", **kwargs: Any) -> Containerrun:
        run = Containerrun(impl, base_dir, job, process, command, **kwargs)
        started.append(run)
        run.wait_listening()
        return run

    yield _start
    for run in started:
        run.close()


def recorder(record: Path) -> list[str]:
    """A main process that appends `start`, `quit` (on SIGQUIT) and `term` (on SIGTERM) to `record`."""
    script = (
        f"trap 'echo quit >> {record}' QUIT; trap 'echo term >> {record}; exit 0' TERM; echo start >> {record}; "
        "sleep 1000 & while :; do wait; done"
    )
    return ["sh", "-c", script]


def wait_recorder(record: Path, starts: int = 1) -> None:
    """Wait until the recorder has started `starts` times, so its traps are set."""
    wait_for(lambda: lines(record).count("start") == starts, f"the recorder to start {starts} time(s)")
