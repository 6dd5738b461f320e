"""The bottom layer of the harness: where state and the binary cache live, progress output, processes we start
and stop by process group, kubectl as a control plane's admin, and polling for a condition.

Everything else in the harness builds on this module; it imports nothing from the harness.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def cache_dir() -> Path:
    """Where hack/build-controlplane.sh puts the binaries."""
    default = Path.home() / ".cache" / "processcontrol"
    return Path(os.environ.get("PROCESSCONTROL_CACHE", str(default)))


def state_dir() -> Path:
    """The control plane's state directory."""
    return Path(os.environ.get("PROCESSCONTROL_STATE", "/tmp/processcontrol-cp"))


def kubeconfig_path() -> Path:
    """The admin kubeconfig (cluster-admin via O=system:masters)."""
    return state_dir() / "kubeconfig"


class ControlPlaneError(Exception):
    """A step failed; the message says which component and why."""


class Progress:
    """Progress output for one component (stdout, flushed, so `make` shows it as it happens)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def log(self, message: str) -> None:
        """One line, prefixed with the component's name."""
        print(f"{self.name}: {message}", flush=True)

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        """Print a step and how long it took."""
        start = time.monotonic()
        self.log(f"{what} ...")
        yield
        self.log(f"{what}: done in {time.monotonic() - start:.1f}s")


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """A free TCP port on loopback."""
    return free_ports(1)[0]


# --- processes ---------------------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3, the state, first), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), None if it is gone."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    return fields[19]


def parent_pid(pid: int) -> int | None:
    """The process's parent (field 4 of /proc/PID/stat), None if it is gone."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[1])


def pid_alive(pid: int) -> bool:
    """Whether a host process exists and is not a zombie."""
    return _start_time(pid) is not None


def pids_with_env(*entries: str) -> set[int]:
    """Live processes whose environment has one of these exact `NAME=value` entries: a process we started with a
    marker and everything it started in turn (children inherit the environment)."""
    needles = {entry.encode() for entry in entries}
    pids = set()
    for proc in os.scandir("/proc"):
        if proc.name.isdigit():
            try:
                with open(f"/proc/{proc.name}/environ", "rb") as environ:
                    if not needles.isdisjoint(environ.read().split(b"\0")):
                        pids.add(int(proc.name))
            except OSError:
                continue
    return {pid for pid in pids if pid_alive(pid)}


def kill_marked(*entries: str, timeout: float = 5.0) -> int:
    """SIGKILL every process whose environment has one of these `NAME=value` entries, as a container runtime kills a
    whole container, and wait until they are gone; return how many there were. A process that left its parent's
    session (containerrun's main process does) survives a kill of the group it was started in, but not this."""
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    # Again until none is left: one may have forked between the scan and its kill.
    while entries and (pids := pids_with_env(*entries)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        killed |= pids
        time.sleep(0.02)
    return len(killed)


def socket_inodes(pid: int) -> set[int]:
    """The sockfs inodes of a process's open sockets (none when it is gone)."""
    inodes = set()
    with contextlib.suppress(FileNotFoundError):
        for fd in os.scandir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(fd.path)
                if target.startswith("socket:["):
                    inodes.add(int(target[len("socket:[") : -1]))
    return inodes


@dataclass
class ProcessRecord:
    """A process we started: pid (= its process group) and start time, guarding against pid reuse."""

    pid: int
    start_time: str

    def alive(self) -> bool:
        """The same process still runs (and is not a zombie)."""
        return _start_time(self.pid) == self.start_time

    def write(self, path: Path) -> None:
        """Save as a pid file: `PID START_TIME`."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{self.pid} {self.start_time}\n")

    @classmethod
    def read(cls, path: Path) -> ProcessRecord | None:
        """Load a pid file written by write(); None when missing or unreadable."""
        try:
            pid, start = path.read_text().split()
            return cls(int(pid), start)
        except (OSError, ValueError):
            return None


def spawn(argv: list[str], log_path: Path, pid_path: Path, env: dict[str, str] | None = None) -> ProcessRecord:
    """Start a detached process in its own session (process group), output appended to log_path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    start = _start_time(proc.pid)
    record = ProcessRecord(proc.pid, start or "?")
    record.write(pid_path)
    # The child is detached from us: do not let Popen's destructor warn about it.
    proc.returncode = 0
    return record


def stop_group(record: ProcessRecord, timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after timeout; wait until the leader is gone."""
    if not record.alive():
        # The leader is gone, but members of its group may linger.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(record.pid, signal.SIGKILL)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and record.alive():
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and record.alive():
        time.sleep(0.05)


def mount_points_under(root: Path) -> list[str]:
    """The mount points at or below root."""
    prefix = str(root.resolve()).rstrip("/")
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        # Field 5 is the mount point, with octal escapes for spaces and the like.
        point = line.split()[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return points


def log_tail(path: Path, lines: int = 40) -> str:
    """The last lines of a log file."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def kubectl(
    *args: str, state: Path | None = None, input_text: str | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run kubectl as the admin of a control plane (this one, or the one rooted at `state`)."""
    env = dict(os.environ, KUBECONFIG=str((state or state_dir()) / "kubeconfig"))
    result = subprocess.run(
        ["kubectl", *args], input=input_text, capture_output=True, text=True, env=env, check=False, timeout=timeout
    )
    if check and result.returncode != 0:
        raise ControlPlaneError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
    return result


def wait_until(
    check: Callable[[], T | None],
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.2,
    tolerate: tuple[type[Exception], ...] = (),
) -> T:
    """Poll check() until it returns something truthy and return that; the exceptions in `tolerate` count as not
    yet. Fail with an AssertionError naming `what`, the last value and the last tolerated error."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    error = ""
    while True:
        try:
            last = check()
            if last:
                return last
        except tolerate as exc:
            error = f", last error: {exc}"
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r}{error})")
        time.sleep(interval)
