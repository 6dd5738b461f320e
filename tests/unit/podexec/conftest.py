"""Fixtures for the in-pod script: real unix datagram sockets under a temporary base dir, real shells, real tools."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest

from harness.testing import missing
from processcontrol.podexec.script import READY, Action, Outcome, ScriptReport, build_command, go_ahead, parse_output

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


# Long enough for any run here. The watchdog that holds the window is gone as soon as the go-ahead is read, so a
# long window costs nothing (tests of the window itself pass their own).
WINDOW_S = 30.0


@dataclass
class Run:
    stdout: str
    stderr: str
    returncode: int
    go: str | None = None  # the line written on stdin; None: none (stdin at EOF, as an exec without a dialogue)

    @property
    def outcome(self) -> Outcome:
        return parse_output(self.stdout)

    @property
    def look(self) -> ScriptReport:
        return self.outcome.look

    @property
    def report(self) -> ScriptReport:
        """What the run did: after a go-ahead, the report of the send (checked to echo the go-ahead's action and
        seq); without one, the look. An error before the look (no data directory) is in the look."""
        outcome = self.outcome
        if self.go is None or outcome.look.error is not None:
            assert outcome.acted is None, self.stdout
            return outcome.look
        action, seq = self.go.split("\t")[:2]
        assert (outcome.action, outcome.seq) == (action, int(seq)), f"not acted on {self.go!r}: {self.stdout!r}"
        assert outcome.acted is not None and outcome.idle is None, self.stdout
        return outcome.acted


def ready(stdout: str) -> bool:
    """Whether the look is out: a whole line starting with the prompt (what the exec transport waits for)."""
    return any(line.startswith(READY) for line in stdout.splitlines(keepends=True) if line.endswith("\n"))


class Session:
    """The script running with its stdin a pipe, its stdout read as it comes (as the exec transport reads it), in a
    session of its own (so whatever is left of it can be killed when a test fails)."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], cwd: Path | None = None) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            list(argv),
            env=env,
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._changed = threading.Condition()
        self._out = bytearray()
        self._err = bytearray()
        self._ended = 0  # streams at EOF
        self._readers = [
            threading.Thread(target=self._drain, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._drain, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _drain(self, stream: IO[bytes] | None, into: bytearray) -> None:
        assert stream is not None
        while chunk := os.read(stream.fileno(), 65536):
            with self._changed:
                into += chunk
                self._changed.notify_all()
        with self._changed:
            self._ended += 1
            self._changed.notify_all()

    @property
    def stdout(self) -> str:
        with self._changed:
            return self._out.decode("utf-8", "replace")

    def wait_ready(self, timeout: float = 30.0) -> str | None:
        """The stdout so far once the look's ready line is out; None when the script ended without one (an error
        before the look). Fails when neither happens within `timeout`."""
        with self._changed:
            done = self._changed.wait_for(lambda: ready(self.stdout) or self._ended == 2, timeout=timeout)
            assert done, f"no ready line within {timeout}s: {self.stdout!r}"
            return self.stdout if ready(self.stdout) else None

    def write(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode())
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()

    def finish(self, timeout: float = 60.0, go: str | None = None) -> Run:
        """Wait for the script to end (its stdin is left as it is) and collect what it printed. Its output is
        complete once both pipes are at EOF, that is once nothing that could still write to them is left."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        for reader in self._readers:
            reader.join(10)
            assert not reader.is_alive(), "the script ended, but something it started still holds its stdout or stderr"
        return Run(self._out.decode("utf-8", "replace"), self._err.decode("utf-8", "replace"), self.proc.returncode, go)

    def kill(self) -> None:
        """Kill what is left of the script's session (nothing, when it ended as it should); close its stdin."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self.close_stdin()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def script_argv(
    jobs: Sequence[str] = (),
    processes: Sequence[str] = (),
    *,
    shell: str = "sh",
    only: Sequence[tuple[str, str]] | None = None,
    wait_s: float = 0.0,
    window_s: float = WINDOW_S,
    script: str | None = None,
) -> list[str]:
    """The operator's exec command with the shell swapped in (and, given `script`, another script)."""
    command = build_command(jobs, processes, only=only, wait_s=wait_s, window_s=window_s)
    if script is not None:
        command[2] = script
    interpreter = SHELLS[shell]
    if not os.access(interpreter[0], os.X_OK):
        missing(f"{shell} is not installed")
    return [*interpreter, *command[1:]]


def converse(
    argv: Sequence[str],
    env: dict[str, str],
    answer: Callable[[ScriptReport], str | None] | None,
    *,
    cwd: Path | None = None,
    timeout: float = 60.0,
) -> Run:
    """Run the script as the operator's exec does. With `answer`: stdin open; once the look is out, the line
    `answer(look)` returns is written (None: an empty line, as the transport writes) and stdin is closed. Without:
    stdin at EOF from the start (an exec without a dialogue)."""
    if answer is None:
        done = subprocess.run(
            list(argv), env=env, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
        )
        return Run(done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"), done.returncode)
    with Session(argv, env, cwd) as session:
        stdout = session.wait_ready(timeout)
        if stdout is None:
            return session.finish(timeout)
        line = answer(parse_output(stdout, look_only=True).look)
        session.write(line or "\n")
        session.close_stdin()
        return session.finish(timeout, go=line)


def run_script(
    base: Path,
    action: str = "STATUS",
    jobs: Sequence[str] = (),
    processes: Sequence[str] = (),
    *,
    path: Path | str,
    shell: str = "sh",
    cwd: Path | None = None,
    extra_env: dict[str, str] | None = None,
    only: Sequence[tuple[str, str]] | None = None,
    wait_s: float = 0.0,
    window_s: float = WINDOW_S,
    script: str | None = None,
    pairs: Sequence[tuple[str, str]] | None = None,
    seq: int = 1,
    timeout: float = 60.0,
) -> Run:
    """Run the script exactly as the operator's exec does, with the shell swapped in.

    `action` STOP or START: after the look, the go-ahead for `pairs` (default: every socket the look reported) is
    written on its stdin, as the operator's dialogue does. STATUS: no go-ahead (stdin at EOF); the look is the
    report, as for the operator's status looks.
    """
    argv = script_argv(jobs, processes, shell=shell, only=only, wait_s=wait_s, window_s=window_s, script=script)
    env = {"PATH": str(path), "CONTAINERRUN_BASE_DIR": str(base), **(extra_env or {})}

    answer = None if action == "STATUS" else answering(Action(action), seq, pairs)
    return converse(argv, env, answer, cwd=cwd, timeout=timeout)


def answering(
    action: Action, seq: int = 1, pairs: Sequence[tuple[str, str]] | None = None
) -> Callable[[ScriptReport], str]:
    """A dialogue's answer: the go-ahead for `pairs`, default every socket the look reported."""

    def answer(look: ScriptReport) -> str:
        return go_ahead(action, seq, [(s.job, s.process) for s in look.sockets] if pairs is None else pairs)

    return answer


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
