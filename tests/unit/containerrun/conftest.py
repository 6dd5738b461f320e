"""Real containerrun processes in temporary base directories, driven through real sockets.

Every protocol test takes the `impl` fixture, parametrized over both implementations: ours, and the Go
original (`code.cloudfoundry.org/quarks-container-run` v0.0.3), built by hack/build-container-run.sh from
../shared/third_party (the Go module proxy does not serve it) and run by hack/container-run-vcap with the
test's base directory bound on /var/vcap, which it hard-codes. Without ../shared (or Go, or root for the
mount namespace) the Go parametrizations skip with the reason; with CI=true they fail instead, so CI cannot
pass without having run them. Tests that hold only for ours are marked `ours_only` with the reason in their
docstring, and are skipped for the Go original.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import pytest

from harness.base import kill_marked, pid_alive, pids_with_env, socket_inodes, wait_until
from harness.testing import missing
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


REPO = Path(__file__).resolve().parents[3]
BUILD_GO = REPO / "hack" / "build-container-run.sh"
VCAP_WRAPPER = REPO / "hack" / "container-run-vcap"

OURS = Implementation("ours", (sys.executable, "-m", "processcontrol.containerrun"), ours=True)
GO = Implementation("go-v0.0.3", (), ours=False)  # argv: see go_container_run()
IMPLEMENTATIONS = [OURS, GO]


def go_container_run_argv() -> tuple[tuple[str, ...], str]:
    """The command that runs the Go original on CONTAINERRUN_BASE_DIR, or () and why it cannot run here."""
    if os.geteuid() != 0:
        return (), "the Go container-run needs root for its /var/vcap bind mount (unshare -m)"
    if not shutil.which("unshare"):
        return (), "the Go container-run needs unshare (util-linux) for its /var/vcap bind mount"
    done = subprocess.run([BUILD_GO], capture_output=True, text=True, check=False)
    if done.returncode == 3:
        return (), f"no Go container-run source: {done.stderr.strip()}"
    if done.returncode != 0:
        return (), f"hack/build-container-run.sh failed (exit {done.returncode}):\n{done.stderr[-3000:]}"
    return (str(VCAP_WRAPPER), done.stdout.strip().splitlines()[-1]), ""


def wait_for(predicate: Callable[[], T | None], what: str, timeout: float = DEADLINE) -> T:
    """wait_until at this suite's pace (20 ms: a signal's effect shows within milliseconds)."""
    return wait_until(predicate, timeout, what, interval=0.02)


def gone(pid: int) -> bool:
    """Whether a process has exited (a zombie counts as exited)."""
    return not pid_alive(pid)


def marked_pids(token: str) -> set[int]:
    """Live processes whose environment carries the token: a containerrun and everything under it."""
    return pids_with_env(f"{TOKEN_VAR}={token}")


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
        """Send one datagram; to the Go original, only once it listens again, and wait until it does again.

        The Go original reads one datagram per socket: it closes the socket, unlinks it and binds a new one
        after each, so a datagram sent in between is refused, finds no socket, or is queued on the closed one
        and lost. The protocol tests are about what a command does, so they pace their sends;
        test_back_to_back_datagrams_are_all_read shows the difference.
        """
        if self.impl.ours:
            send_datagram(self.sock, payload)
            return
        before = wait_for(self.listening_socket, "the Go container-run to listen")
        send_datagram(self.sock, payload)
        wait_for(
            lambda: self.listening_socket() not in (None, before) or not self.alive(),
            "the Go container-run to listen again (or exit)",
        )

    def socket_inodes(self) -> set[int]:
        """The socket inodes (sockfs) of containerrun's open file descriptors."""
        return socket_inodes(self.proc.pid)

    def listening_socket(self) -> int | None:
        """The Go original's current socket: its one socket fd, once its path is bound (else None).

        It closes the old socket, unlinks the path, then creates and binds the new one; so a new socket fd
        with the path present is bound.
        """
        inodes = self.socket_inodes()
        if len(inodes) == 1 and self.sock.exists():
            return inodes.pop()
        return None

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
        kill_marked(f"{TOKEN_VAR}={self.token}")


Start = Callable[..., Containerrun]


@pytest.fixture(scope="session")
def go_implementation() -> Implementation:
    """The Go original, built once per session (a cache hit after the first time); skipped, or failed in CI."""
    argv, why = go_container_run_argv()
    if not argv:
        missing(f"the protocol suite against the Go container-run: {why}")
    return Implementation(GO.name, argv, ours=False)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """An `ours_only` test is not run against the Go original at all (deselected, not skipped: it does not apply)."""
    keep: list[pytest.Item] = []
    not_for_go: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        go = callspec is not None and callspec.params.get("impl") is GO
        (not_for_go if go and item.get_closest_marker("ours_only") else keep).append(item)
    if not_for_go:
        config.hook.pytest_deselected(items=not_for_go)
        items[:] = keep


@pytest.fixture(params=IMPLEMENTATIONS, ids=lambda impl: impl.name)
def impl(request: pytest.FixtureRequest) -> Implementation:
    implementation: Implementation = request.param
    if implementation is GO:
        go: Implementation = request.getfixturevalue("go_implementation")
        return go
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
    # Its SIGTERM trap kills its own `sleep`: the Go original signals only the main process, and these tests are
    # about the protocol (test_grandchildren_are_stopped is about process groups).
    script = (
        f"trap 'echo quit >> {record}' QUIT; trap 'echo term >> {record}; kill $!; exit 0' TERM; "
        f"echo start >> {record}; sleep 1000 & while :; do wait; done"
    )
    return ["sh", "-c", script]


def wait_recorder(record: Path, starts: int = 1) -> None:
    """Wait until the recorder has started `starts` times, so its traps are set."""
    wait_for(lambda: lines(record).count("start") == starts, f"the recorder to start {starts} time(s)")


class Recording(NamedTuple):
    """containerrun supervising the recorder: the run, the record file and the main process's pid."""

    run: Containerrun
    record: Path
    pid: int


@pytest.fixture
def recording(start: Start, base_dir: Path) -> Recording:
    """The recorder running under containerrun, its traps set."""
    record = base_dir / "record"
    run = start(recorder(record))
    pid = run.wait_running()
    wait_recorder(record)
    return Recording(run, record, pid)


LINGER_S = 4  # how long the worker takes to stop after SIGTERM: far longer than the checks made meanwhile


def wrapped_worker(base_dir: Path, linger: float = LINGER_S) -> tuple[list[str], Path, Path]:
    """A wrapper shell (the main process) around a worker that holds a lock directory while it runs.

    On SIGTERM the worker records `term`, lingers, releases the lock and records `done`. A worker that finds the
    lock taken records `collision` and exits 1, so the wrapper (which returns the worker's status) fails too.
    Returns the command, the record file and the file holding the worker's pid.
    """
    record, worker_pid, lock, worker = (base_dir / n for n in ("record", "worker.pid", "lock", "worker.sh"))
    # The trap is set before it says `start`: a STOP sent after `start` always finds it.
    worker.write_text(
        f"trap 'echo term >> {record}; sleep {linger}; rmdir {lock}; echo done >> {record}; exit 0' TERM\n"
        f"mkdir {lock} 2>/dev/null || {{ echo collision >> {record}; exit 1; }}\n"
        f"echo $$ > {worker_pid}\n"
        f"echo start >> {record}\n"
        "while :; do sleep 0.05; done\n"
    )
    return ["sh", "-c", f'sh {worker} & wait "$!"'], record, worker_pid
