"""The containerrun supervisor: runs one process (and its post-start) and obeys STOP/START/QUIT datagrams.

One thread, one `selectors` loop over two file descriptors: the command socket and the signal wake-up
socket (`signal.set_wakeup_fd`). Every wake-up reaps exited children with `waitpid(-1, WNOHANG)`,
so a SIGCHLD can never be missed, and drains every queued datagram, so no command is lost.
Each child runs in its own session (and so its own process group); signals go to the whole group.

"Stopped" means stopped: the `.running` sentinel goes when the main process's whole process group is gone (a
wrapper shell's worker that lingers after SIGTERM keeps it), not when the main process exits; `--stop-timeout`
bounds that with SIGKILL. A START while old process groups are still there (a STOP under way, or leftovers of a
main process that exited) waits for them to be gone, within the same bound, before it starts the new main
process, so the new one never meets the old one's port or lock.
"""

from __future__ import annotations

import contextlib
import ctypes
import enum
import logging
import os
import selectors
import shlex
import shutil
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from processcontrol.containerrun.protocol import MAX_DATAGRAM, Command, Endpoint, parse_command

log = logging.getLogger("containerrun")

# Ask for a generous receive buffer; the kernel caps it at net.core.rmem_max. Unix datagram senders
# block (they are not dropped) while the queue is full, so this only makes bursts cheaper.
RECEIVE_BUFFER = 4 * 1024 * 1024
# The post-start condition is retried this often, for this long (as the Go original).
CONDITION_INTERVAL = 3.0
CONDITION_TIMEOUT = 15 * 60.0
# While waiting for stopped process groups to empty, look again this often (SIGCHLD usually comes first).
GROUP_POLL = 0.1
# Exit status when a command cannot be started at all, as a shell reports it.
NOT_STARTED = 127
PR_SET_CHILD_SUBREAPER = 36

HANDLED_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
# Children start with every signal at its default disposition, whatever containerrun inherited.
DEFAULT_SIGNALS = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}


class State(enum.Enum):
    """Whether the main process is meant to be running."""

    RUNNING = "running"
    STOPPED = "stopped"


class Role(enum.Enum):
    """What a child process is for."""

    MAIN = "main process"
    CONDITION = "post-start condition"
    POST_START = "post-start"


@dataclass(frozen=True)
class Config:
    """Everything the supervisor needs, from the command line."""

    endpoint: Endpoint
    command: list[str]
    post_start: list[str] = field(default_factory=list)  # name and args; empty: none
    post_start_condition: list[str] = field(default_factory=list)
    stop_timeout: float = 20.0
    errand: bool = False
    condition_interval: float = CONDITION_INTERVAL
    condition_timeout: float = CONDITION_TIMEOUT


@dataclass(eq=False)
class Child:
    """A process we started; `generation` counts STARTs, so exits of earlier runs are told apart."""

    pid: int
    role: Role
    generation: int


def exit_status(wait_status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128 + the signal number."""
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def describe(wait_status: int) -> str:
    """A wait status in words."""
    if os.WIFSIGNALED(wait_status):
        number = os.WTERMSIG(wait_status)
        try:
            return f"was killed by {signal.Signals(number).name}"
        except ValueError:
            return f"was killed by signal {number}"
    return f"exited with status {os.waitstatus_to_exitcode(wait_status)}"


def group_alive(pgid: int) -> bool:
    """Whether any process (zombies included) is left in a process group."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def become_subreaper() -> None:
    """Adopt orphaned grandchildren (as PID 1 of a container would), so their exits wake us too."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """Do nothing: the wake-up fd carries the signal number to the loop."""


class Supervisor:
    """Runs the main process and its post-start; obeys the socket and signals until it exits."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.state = State.STOPPED
        self._generation = 0
        self._children: dict[int, Child] = {}
        self._main: Child | None = None
        self._groups: set[int] = set()  # process groups we started that may still have members
        self._stopping = False  # signalled groups to stop and waiting for them to empty
        self._start_pending = False  # a START waits for the old groups to be gone
        self._sentinel_group: int | None = None  # the main process's group, while its sentinel is up
        self._kill_at: float | None = None  # SIGKILL what is left at this time (after a STOP)
        self._condition_at: float | None = None  # (re)try the post-start condition at this time
        self._condition_give_up = 0.0
        self._exit_code: int | None = None  # set when shutting down; we exit once every group is gone
        self._selector = selectors.DefaultSelector()
        self._sock: socket.socket | None = None
        self._sock_inode = 0
        self._wakeup_r, self._wakeup_w = socket.socketpair()
        self._old_handlers: dict[int, signal._HANDLER] = {}
        self._old_wakeup_fd = -1

    # ---------------------------------------------------------------- life

    def run(self) -> int:
        """Start the main process and supervise it; return containerrun's exit status."""
        self._open()
        try:
            self._start_processes("containerrun started")
            while self._exit_code is None or self._groups:
                self._step()
            log.info("exiting with status %d", self._exit_code)
            return self._exit_code
        finally:
            self._close()

    def _open(self) -> None:
        endpoint = self.config.endpoint
        endpoint.socket.parent.mkdir(parents=True, exist_ok=True)
        endpoint.pidfile.parent.mkdir(parents=True, exist_ok=True)
        for path in (endpoint.sentinel, endpoint.pidfile):  # left over by a crash: not true any more
            path.unlink(missing_ok=True)
        self._sock = self._bind(endpoint.socket)
        self._sock_inode = endpoint.socket.stat().st_ino  # so that we only ever remove our own socket file
        self._selector.register(self._sock, selectors.EVENT_READ)
        for end in (self._wakeup_r, self._wakeup_w):
            end.setblocking(False)
        self._selector.register(self._wakeup_r, selectors.EVENT_READ)
        self._old_wakeup_fd = signal.set_wakeup_fd(self._wakeup_w.fileno(), warn_on_full_buffer=False)
        for signum in HANDLED_SIGNALS:
            self._old_handlers[signum] = signal.signal(signum, _ignore_signal)
        become_subreaper()

    @staticmethod
    def _bind(path: Path) -> socket.socket:
        try:
            path.unlink()
            log.info("replaced the existing socket file %s", path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        sock.bind(os.fspath(path))
        sock.setblocking(False)
        log.info("listening on %s", path)
        return sock

    def _close(self) -> None:
        if self._groups:  # only after an unexpected error: never leave children behind
            self._signal_groups(signal.SIGKILL)
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._old_wakeup_fd)
        self._selector.close()
        if self._sock is not None:
            path = self.config.endpoint.socket
            with contextlib.suppress(OSError):
                if path.stat().st_ino == self._sock_inode:
                    path.unlink()
            self._sock.close()
        self._remove_state_files()
        self._wakeup_r.close()
        self._wakeup_w.close()

    # ---------------------------------------------------------------- loop

    def _step(self) -> None:
        for key, _ in self._selector.select(self._timeout()):
            if key.fileobj is self._wakeup_r:
                self._drain_signals()
            else:
                self._drain_socket()
        self._reap()
        now = time.monotonic()
        if self._kill_at is not None and now >= self._kill_at:
            self._kill_at = None
            count = self._signal_groups(signal.SIGKILL)
            log.info("stop timeout of %gs passed: SIGKILL to %d process group(s)", self.config.stop_timeout, count)
        if self._condition_at is not None and now >= self._condition_at:
            self._condition_at = None
            self._run_condition()
        self._prune_groups()

    def _timeout(self) -> float | None:
        deadlines = [at for at in (self._kill_at, self._condition_at) if at is not None]
        timeout = max(0.0, min(deadlines) - time.monotonic()) if deadlines else None
        # Waiting for groups to empty: their last member's exit need not wake us (it may not be our child).
        lingering = self._sentinel_group is not None and self._main is None
        if self._groups and (self._stopping or self._exit_code is not None or self._start_pending or lingering):
            timeout = GROUP_POLL if timeout is None else min(timeout, GROUP_POLL)
        return timeout

    def _drain_signals(self) -> None:
        try:
            received = self._wakeup_r.recv(4096)
        except BlockingIOError:
            return
        for signum in received:
            if signum in (signal.SIGTERM, signal.SIGINT):
                log.info("received %s", signal.Signals(signum).name)
                self._shutdown(0, signal.Signals(signum).name)
            elif signum == signal.SIGQUIT:
                log.info("received SIGQUIT: forwarded to %d process group(s)", self._signal_groups(signum))
            # SIGCHLD: every wake-up reaps.

    def _drain_socket(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data, _, flags, _ = self._sock.recvmsg(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # never fatal: the socket stays bound and is read again on the next wake-up
                log.warning("reading the socket failed (ignored): %s", error)
                return
            if flags & socket.MSG_TRUNC:
                log.debug("ignored a datagram longer than %d bytes", MAX_DATAGRAM)
                continue
            command = parse_command(data)
            if command is None:
                log.debug("ignored a datagram that is not a command: %r", data[:64])
            else:
                self._on_command(command)

    def _reap(self) -> None:
        while True:
            try:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            self._on_exit(pid, wait_status)

    # ---------------------------------------------------------------- commands

    def _on_command(self, command: Command) -> None:
        if command is Command.QUIT:
            log.info("received QUIT: SIGQUIT to %d process group(s)", self._signal_groups(signal.SIGQUIT))
        elif self._exit_code is not None:
            log.info("received %s: ignored, shutting down", command.value)
        elif command is Command.STOP:
            if self._start_pending:
                self._start_pending = False
                log.info("received STOP: the pending START is cancelled")
                return
            if self.state is State.STOPPED:
                log.info("received STOP: already stopped, nothing to do")
                return
            log.info("received STOP")
            self._stop("STOP")
        elif command is Command.START:
            if self.state is State.RUNNING:
                log.info("received START: already running, nothing to do")
                return
            if self._start_pending:
                log.info("received START: already starting once the old processes are gone")
                return
            log.info("received START")
            self._prune_groups()
            if not self._groups:
                self._start_processes("START")
                return
            # Old processes are still there: let them finish (SIGTERM if nobody asked them yet), SIGKILL what is
            # left at the stop timeout, and start only then.
            self._start_pending = True
            if self._kill_at is None:
                self._signal_groups(signal.SIGTERM)
                self._stopping = True
                self._kill_at = time.monotonic() + self.config.stop_timeout
            log.info(
                "waiting for %d old process group(s) to be gone before starting (SIGKILL in %gs at most)",
                len(self._groups),
                max(0.0, self._kill_at - time.monotonic()),
            )

    def _stop(self, why: str) -> None:
        """Mark stopped first (so the exits that follow are expected), then SIGTERM every group."""
        self._set_state(State.STOPPED, why)
        self._cancel_post_start()
        count = self._signal_groups(signal.SIGTERM)
        if count:
            self._stopping = True
            if self._kill_at is None:
                self._kill_at = time.monotonic() + self.config.stop_timeout
            log.info("SIGTERM to %d process group(s), SIGKILL after %gs", count, self.config.stop_timeout)

    def _shutdown(self, code: int, why: str) -> None:
        """Stop everything, then exit with `code` once every process group is empty."""
        if self._exit_code is not None:
            return
        self._exit_code = code
        self._start_pending = False
        log.info("shutting down (%s): stopping every process, then exiting with status %d", why, code)
        self._stop(why)

    # ---------------------------------------------------------------- processes

    def _start_processes(self, why: str) -> None:
        self._generation += 1
        main = self._spawn(Role.MAIN, self.config.command)
        if main is None:
            self._shutdown(NOT_STARTED, "the main process could not be started")
            return
        self._main = main
        self._sentinel_group = main.pid  # its own session: the group id is its pid
        endpoint = self.config.endpoint
        endpoint.sentinel.touch()
        endpoint.pidfile.write_text(str(main.pid))  # no newline, as the Go original
        self._set_state(State.RUNNING, why)
        self._begin_post_start()

    def _spawn(self, role: Role, argv: list[str]) -> Child | None:
        quiet = role is Role.CONDITION  # the condition's output is discarded, as in the Go original
        actions = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_WRONLY, 0) for fd in (1, 2)] if quiet else []
        try:
            pid = os.posix_spawnp(
                argv[0],
                argv,
                os.environ,
                file_actions=actions,
                setsid=True,  # its own session and process group: signals reach grandchildren too
                setsigdef=DEFAULT_SIGNALS,
                setsigmask=(),
            )
        except OSError as error:
            log.error("cannot start the %s %s: %s", role.value, argv[0], error.strerror or error)
            return None
        child = Child(pid, role, self._generation)
        self._children[pid] = child
        self._groups.add(pid)
        level = logging.DEBUG if quiet else logging.INFO
        log.log(level, "started the %s (pid %d): %s", role.value, pid, shlex.join(argv))
        return child

    def _on_exit(self, pid: int, wait_status: int) -> None:
        child = self._children.pop(pid, None)
        if child is None:
            log.debug("reaped orphaned pid %d", pid)
            return
        if child is self._main:
            self._main = None
            # The pid file names the main process, which is gone; the sentinel waits for its group (_prune_groups).
            self.config.endpoint.pidfile.unlink(missing_ok=True)
        current = child.generation == self._generation and self.state is State.RUNNING and self._exit_code is None
        level = logging.DEBUG if child.role is Role.CONDITION else logging.INFO
        log.log(level, "the %s (pid %d) %s", child.role.value, pid, describe(wait_status))
        if not current:
            return  # expected (we stopped it) or from an earlier START
        status = exit_status(wait_status)
        if child.role is Role.MAIN:
            if status == 0:
                self._set_state(State.STOPPED, "the main process exited with status 0")
                self._cancel_post_start()
                if self.config.errand:
                    self._shutdown(0, "errand finished")
            else:
                self._shutdown(status, "the main process failed")
        elif child.role is Role.CONDITION:
            if status == 0:
                self._run_post_start()
            else:
                self._condition_failed()
        elif status != 0:
            self._shutdown(status, "the post-start failed")

    def _begin_post_start(self) -> None:
        post_start = self.config.post_start
        if not post_start:
            return
        if not (os.path.exists(post_start[0]) or shutil.which(post_start[0])):
            log.info("post-start %s does not exist: skipped", post_start[0])
            return
        if self.config.post_start_condition:
            self._condition_give_up = time.monotonic() + self.config.condition_timeout
            self._run_condition()
        else:
            self._run_post_start()

    def _run_condition(self) -> None:
        if self._spawn(Role.CONDITION, self.config.post_start_condition) is None:
            self._condition_failed()

    def _condition_failed(self) -> None:
        if time.monotonic() >= self._condition_give_up:
            log.error("the post-start condition did not succeed within %gs", self.config.condition_timeout)
            self._shutdown(1, "the post-start condition timed out")
        else:
            self._condition_at = time.monotonic() + self.config.condition_interval

    def _run_post_start(self) -> None:
        log.info("running the post-start")
        if self._spawn(Role.POST_START, self.config.post_start) is None:
            self._shutdown(NOT_STARTED, "the post-start could not be started")

    def _cancel_post_start(self) -> None:
        self._condition_at = None

    # ---------------------------------------------------------------- helpers

    def _set_state(self, state: State, why: str) -> None:
        if state is not self.state:
            log.info("state: %s -> %s (%s)", self.state.value, state.value, why)
            self.state = state

    def _signal_groups(self, signum: int) -> int:
        """Send a signal to every process group we started that is still there; return how many."""
        count = 0
        for pgid in sorted(self._groups):
            try:
                os.killpg(pgid, signum)
                count += 1
            except ProcessLookupError:
                self._groups.discard(pgid)
            except PermissionError as error:
                log.warning("cannot signal process group %d: %s", pgid, error.strerror)
        return count

    def _prune_groups(self) -> None:
        self._groups = {pgid for pgid in self._groups if group_alive(pgid)}
        if self._sentinel_group is not None and self._main is None and self._sentinel_group not in self._groups:
            self._sentinel_group = None
            self.config.endpoint.sentinel.unlink(missing_ok=True)
            log.info("the main process and its whole process group are gone")
        if not self._groups:
            self._kill_at = None
            if self._stopping:
                self._stopping = False
                log.info("every process has stopped")
            if self._start_pending:
                self._start_pending = False
                self._start_processes("START, once the old processes were gone")

    def _remove_state_files(self) -> None:
        endpoint = self.config.endpoint
        for path in (endpoint.sentinel, endpoint.pidfile):
            path.unlink(missing_ok=True)
