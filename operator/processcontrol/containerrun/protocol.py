"""The containerrun socket protocol: file layout, command parsing, socket discovery and sending.

This is the one place that knows where containerrun keeps its files and what a command looks like;
the supervisor, `processcontrol send` and `processcontrol status` all use it. It imports nothing
heavy, so `processcontrol send` starts fast inside pods.
"""

from __future__ import annotations

import enum
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

DEFAULT_BASE_DIR = "/var/vcap"
BASE_DIR_ENV = "CONTAINERRUN_BASE_DIR"
SOCKET_SUFFIX = "_containerrun.sock"
SENTINEL_SUFFIX = "_containerrun.running"

# The Go original reads 256 bytes per datagram; anything longer is not a command.
MAX_DATAGRAM = 256
# How long a sender waits for room in a full receive queue before giving up on a socket.
SEND_TIMEOUT = 5.0


class Command(enum.Enum):
    """A command understood by containerrun."""

    STOP = "STOP"
    START = "START"
    QUIT = "QUIT"


def parse_command(payload: bytes) -> Command | None:
    """Return the command in a datagram, or None: trimmed, exact, case-sensitive, UTF-8, not oversized."""
    if len(payload) > MAX_DATAGRAM:
        return None
    try:
        text = payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    try:
        return Command(text)
    except ValueError:
        return None


def default_base_dir() -> Path:
    """The base directory: `$CONTAINERRUN_BASE_DIR`, else `/var/vcap`."""
    return Path(os.environ.get(BASE_DIR_ENV) or DEFAULT_BASE_DIR)


@dataclass(frozen=True)
class Endpoint:
    """The files of one containerrun-managed process."""

    base_dir: Path
    job: str
    process: str

    @property
    def socket(self) -> Path:
        """The unix datagram socket that receives commands."""
        return self.base_dir / "data" / self.job / f"{self.process}{SOCKET_SUFFIX}"

    @property
    def sentinel(self) -> Path:
        """The file that exists while the main process runs."""
        return self.base_dir / "data" / self.job / f"{self.process}{SENTINEL_SUFFIX}"

    @property
    def pidfile(self) -> Path:
        """The bpm-style pid file of the main process."""
        return self.base_dir / "sys" / "run" / "bpm" / self.job / f"{self.process}.pid"

    @classmethod
    def from_socket(cls, path: Path) -> Endpoint:
        """The endpoint a socket path `<base>/data/<job>/<process>_containerrun.sock` belongs to."""
        if not path.name.endswith(SOCKET_SUFFIX) or path.parent.parent.name != "data":
            raise ValueError(f"not a containerrun socket path: {path}")
        return cls(path.parent.parent.parent, path.parent.name, path.name[: -len(SOCKET_SUFFIX)])

    def read_pid(self) -> int | None:
        """The pid in the pid file, or None when there is none."""
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None


def valid_name(name: str) -> bool:
    """Whether a job or process name is usable as a single path component."""
    return bool(name) and "/" not in name and name not in (".", "..") and "\0" not in name


def discover(base_dir: Path, jobs: Iterable[str] = (), processes: Iterable[str] = ()) -> list[Endpoint]:
    """Every containerrun socket under `<base>/data`, sorted, filtered by job and process names (empty = all)."""
    job_set, process_set = set(jobs), set(processes)
    found = []
    for path in (base_dir / "data").glob(f"*/*{SOCKET_SUFFIX}"):
        endpoint = Endpoint.from_socket(path)
        if (not job_set or endpoint.job in job_set) and (not process_set or endpoint.process in process_set):
            found.append(endpoint)
    return sorted(found, key=lambda e: (e.job, e.process))


class SendResult(enum.Enum):
    """What happened to one datagram."""

    SENT = "sent"
    REFUSED = "refused"  # the socket file exists but nobody listens: a stale socket
    MISSING = "missing"  # no socket file
    FAILED = "failed"  # anything else (permissions, timeout, not a socket)


def send(path: Path, command: Command | str | bytes, timeout: float = SEND_TIMEOUT) -> tuple[SendResult, str]:
    """Send one datagram to a socket at once; return the result and, unless sent, why."""
    payload = (
        command.value.encode()
        if isinstance(command, Command)
        else command.encode()
        if isinstance(command, str)
        else command
    )
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.sendto(payload, os.fspath(path))
        except FileNotFoundError:
            return SendResult.MISSING, "no such socket"
        except ConnectionRefusedError:
            return SendResult.REFUSED, "connection refused (stale socket, containerrun not running)"
        except TimeoutError:
            return SendResult.FAILED, f"receive queue stayed full for {timeout:g}s"
        except OSError as error:
            return SendResult.FAILED, error.strerror or str(error)
    return SendResult.SENT, ""


class SocketState(enum.Enum):
    """What a socket says about its process."""

    RUNNING = "running"  # the socket answers and the sentinel exists
    STOPPED = "stopped"  # the socket answers, no sentinel
    STALE = "stale"  # the socket refuses: containerrun is gone
    UNKNOWN = "unknown"  # it could not be told (permissions, not a socket, ...)


def probe(endpoint: Endpoint) -> SocketState:
    """Tell an endpoint's state without sending anything (connecting a datagram socket sends nothing)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(os.fspath(endpoint.socket))
        except ConnectionRefusedError:
            return SocketState.STALE
        except OSError:  # vanished since discovery, permissions, not a socket
            return SocketState.UNKNOWN
    return SocketState.RUNNING if endpoint.sentinel.exists() else SocketState.STOPPED


def command_names() -> Sequence[str]:
    """The command names, for argument parsers."""
    return [command.value for command in Command]
