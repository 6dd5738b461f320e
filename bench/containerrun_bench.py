"""containerrun benchmark, ours and the Go original v0.0.3 in the same run: STOP-to-SIGTERM and STOP-to-child-gone
latency, datagrams lost in a burst, and what a START right after STOP does.

    .venv/bin/python bench/containerrun_bench.py [--rounds 200] [--burst 10000] [--trials 20]
        [--json bench/results/containerrun.json]

Latency: the bench sends one STOP datagram and measures, on the shared monotonic clock, when the child
(a small Python program) receives SIGTERM and when it is gone (a pidfd becomes readable), then sends
START and waits for the next child; p50/p99 over the rounds. Burst: BURST QUIT datagrams from a blocking
sender to a child that ignores SIGQUIT; lost = sends that failed + datagrams the log does not show as
received. START right after STOP: TRIALS times, STOP and at once START to a containerrun whose main process is
(a) `sleep`, which dies on SIGTERM at once, or (b) a wrapper shell around a worker that holds a lock directory
and takes 0.5 s to release it after SIGTERM; each trial's outcome is counted: `restarted` (a new main process
runs, containerrun is up, no collision), `collision` (the new worker found the old one's lock taken),
`containerrun exited`, `stayed stopped`. To the Go original, which rebinds its socket after every datagram, the
START goes as soon as its new socket is bound (as an in-pod sender retrying would); a send that finds no socket or
is refused is retried (counted).

The Go original is built by hack/build-container-run.sh from ../shared/third_party and run through
hack/container-run-vcap (root: a private mount namespace binds the base directory on /var/vcap); without it,
only ours is measured and the JSON says why.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from harness.base import pids_with_env, socket_inodes
from processcontrol.containerrun.protocol import Endpoint

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Implementation:
    """How to start one implementation, and how its log shows a received QUIT."""

    name: str
    argv: tuple[str, ...]
    extra_flags: tuple[str, ...]
    quit_received: str
    rebinds: bool = False  # the Go original binds a new socket after every datagram


IMPLEMENTATIONS = [
    Implementation(
        "ours",
        (sys.executable, "-m", "processcontrol.containerrun"),
        ("--stop-timeout", "5"),
        "received QUIT",
    ),
]


def go_original() -> tuple[Implementation | None, str]:
    """The Go original (its stop timeout is 20 s, fixed), or None and why it cannot run here."""
    if os.geteuid() != 0:
        return None, "needs root for the /var/vcap bind mount"
    done = subprocess.run([REPO / "hack" / "build-container-run.sh"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return None, done.stderr.strip()[-500:]
    binary = done.stdout.strip().splitlines()[-1]
    wrapper = str(REPO / "hack" / "container-run-vcap")
    return Implementation("go-v0.0.3", (wrapper, binary), (), "Received QUIT command", rebinds=True), ""


# Reports the monotonic time of its SIGTERM on stdout (one line), then exits.
TERM_REPORTER = (
    "import os, signal, time\n"
    "def term(*_):\n"
    "    os.write(1, b'%.9f\\n' % time.monotonic())\n"
    "    os._exit(0)\n"
    "signal.signal(signal.SIGTERM, term)\n"
    "os.write(1, b'ready\\n')\n"
    "while True:\n"
    "    signal.pause()\n"
)
QUIT_IGNORER = "trap '' QUIT; touch {ready}; exec sleep 100000"


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def wait_for(predicate: Callable[[], object], timeout: float = 60.0) -> None:
    """Poll until the predicate holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark step timed out")
        time.sleep(0.001)


def start(
    impl: Implementation, base: Path, command: list[str], debug: bool = False, stdout: int | None = subprocess.PIPE
) -> tuple[subprocess.Popen[bytes], Endpoint, Path]:
    endpoint = Endpoint(base, "bench", "proc")
    log = base / "containerrun.log"
    argv = [*impl.argv, "--job-name", "bench", "--process-name", "proc", *impl.extra_flags]
    argv += ["--debug"] if debug else []
    env = {**os.environ, "CONTAINERRUN_BASE_DIR": str(base)}
    with log.open("wb") as log_file:
        proc = subprocess.Popen([*argv, "--", *command], stdout=stdout, stderr=log_file, env=env, cwd=base)
    return proc, endpoint, log


def bound_socket(pid: int, endpoint: Endpoint) -> int | None:
    """The Go original's socket once bound: its one socket fd, with the path present (it unlinks, then binds)."""
    inodes = socket_inodes(pid)
    return inodes.pop() if len(inodes) == 1 and endpoint.socket.exists() else None


def listening(impl: Implementation, proc: subprocess.Popen[bytes], endpoint: Endpoint) -> int | None:
    """For the Go original: its bound socket, once there is one (else None: ours never rebinds)."""
    if not impl.rebinds:
        return None
    wait_for(lambda: bound_socket(proc.pid, endpoint) is not None or proc.poll() is not None, timeout=30)
    return bound_socket(proc.pid, endpoint)


def relistening(impl: Implementation, proc: subprocess.Popen[bytes], endpoint: Endpoint, before: int | None) -> None:
    """For the Go original: wait until it has bound a new socket after the datagram it read from `before`, so the
    next datagram is not queued on the socket it is closing (and lost): as a sender that paces itself must."""
    if impl.rebinds:
        wait_for(lambda: bound_socket(proc.pid, endpoint) not in (None, before) or proc.poll() is not None, 30)


def read_line(stream: IO[bytes] | None, timeout: float = 60.0) -> bytes:
    """One line from a child's stdout, or TimeoutError (a lost command would otherwise hang the bench)."""
    assert stream is not None
    if not select.select([stream], [], [], timeout)[0]:
        raise TimeoutError("no output from the child")
    return stream.readline()


def send_retrying(sender: socket.socket, endpoint: Endpoint, payload: bytes, timeout: float = 5.0) -> int:
    """Send one datagram, retrying while the socket is missing or refuses (the Go original's rebind gap);
    return the number of retries."""
    deadline = time.monotonic() + timeout
    retries = 0
    while True:
        try:
            sender.sendto(payload, str(endpoint.socket))
            return retries
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise
            retries += 1
            time.sleep(0.0005)


def running_pid(endpoint: Endpoint, other_than: int | None) -> int | None:
    pid = endpoint.read_pid()
    return pid if endpoint.sentinel.exists() and pid and pid != other_than else None


# A STOP the child does not see within this long was ignored (the Go original can believe it is stopped already).
STOP_IGNORED_AFTER = 10.0


def measure_latency(
    impl: Implementation, rounds: int, ignored: list[str] | None = None
) -> tuple[list[float], list[float]]:
    """STOP-to-SIGTERM and STOP-to-gone latencies, in seconds. A STOP that is ignored ends that containerrun and
    the rounds go on with a new one; `ignored` gets a line for each."""
    to_term: list[float] = []
    to_gone: list[float] = []
    while len(to_term) < rounds:
        why = _latency_rounds(impl, rounds - len(to_term), to_term, to_gone)
        if why:
            if ignored is None:
                raise RuntimeError(why)
            ignored.append(why)
    return to_term, to_gone


def _latency_rounds(impl: Implementation, rounds: int, to_term: list[float], to_gone: list[float]) -> str:
    """Up to `rounds` STOP/START rounds on one containerrun; why it stopped early, or ''."""
    with tempfile.TemporaryDirectory(prefix="crb", dir="/tmp") as tmp:
        proc, endpoint, _ = start(impl, Path(tmp), [sys.executable, "-c", TERM_REPORTER])
        assert proc.stdout is not None
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        previous: int | None = None
        try:
            for done in range(rounds):
                assert read_line(proc.stdout) == b"ready\n"  # its SIGTERM handler is set
                wait_for(lambda before=previous: running_pid(endpoint, before) is not None)  # type: ignore[misc]
                pid = running_pid(endpoint, previous)
                assert pid is not None
                pidfd = os.pidfd_open(pid)
                before = listening(impl, proc, endpoint)
                sent = time.monotonic()
                send_retrying(sender, endpoint, b"STOP")
                readable = select.select([pidfd], [], [], STOP_IGNORED_AFTER)[0]
                gone = time.monotonic()
                os.close(pidfd)
                if not readable:
                    return f"STOP ignored after {done} rounds: the main process (pid {pid}) was not signalled"
                term = float(read_line(proc.stdout))
                to_term.append(term - sent)
                to_gone.append(gone - sent)
                previous = pid
                relistening(impl, proc, endpoint, before)
                wait_for(lambda: not endpoint.sentinel.exists())
                before = listening(impl, proc, endpoint)
                send_retrying(sender, endpoint, b"START")
                relistening(impl, proc, endpoint, before)
            return ""
        finally:
            sender.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for leftover in marked_pids(Path(tmp)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(leftover, signal.SIGKILL)


def measure_burst(impl: Implementation, burst: int) -> dict[str, float]:
    """Send `burst` QUITs as fast as a blocking sender can; count failed sends and unread datagrams."""
    with tempfile.TemporaryDirectory(prefix="crb", dir="/tmp") as tmp:
        ready = Path(tmp) / "ready"
        proc, endpoint, log = start(impl, Path(tmp), ["sh", "-c", QUIT_IGNORER.format(ready=ready)], debug=impl.rebinds)
        failed = 0
        try:
            wait_for(ready.exists)  # SIGQUIT is ignored from here on
            began = time.monotonic()
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
                for _ in range(burst):
                    try:
                        sender.sendto(b"QUIT", str(endpoint.socket))
                    except OSError:
                        failed += 1
            sent_in = time.monotonic() - began

            def received() -> int:
                return log.read_text(errors="replace").count(impl.quit_received)

            # Until all that was sent is read, or nothing more comes for 2 s (the Go original loses datagrams).
            last, last_change = -1, time.monotonic()
            while received() < burst - failed and time.monotonic() - last_change < 2:
                if (now := received()) != last:
                    last, last_change = now, time.monotonic()
                time.sleep(0.01)
            read_in = time.monotonic() - began
            count = received()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    return {
        "sent": burst,
        "send_failed": failed,
        "received": count,
        "lost": burst - count,
        "lost_silently": burst - failed - count,  # the send succeeded, the datagram was never read
        "send_seconds": sent_in,
        "all_read_seconds": read_in,
    }


# (b): the wrapper shell around a worker that holds a lock and takes 0.5 s to let go after SIGTERM.
# Its trap is set before it says `start`, so a STOP that follows `start` always finds it.
WORKER = (
    "trap 'sleep 0.5; rmdir {lock}; exit 0' TERM\n"
    "mkdir {lock} 2>/dev/null || {{ echo collision >> {record}; exit 1; }}\n"
    "echo start >> {record}\n"
    "while :; do sleep 0.05; done\n"
)


def start_after_stop_trial(impl: Implementation, lingering: bool) -> tuple[str, float | None, int]:
    """One STOP + START at once; the outcome, seconds from START to a new main process, and send retries."""
    with tempfile.TemporaryDirectory(prefix="crb", dir="/tmp") as tmp:
        base = Path(tmp)
        record = base / "record"
        if lingering:
            worker = base / "worker.sh"
            worker.write_text(WORKER.format(lock=base / "lock", record=record))
            command = ["sh", "-c", f'sh {worker} & wait "$!"']
        else:
            command = ["sleep", "100000"]
        proc, endpoint, _ = start(impl, base, command, stdout=subprocess.DEVNULL)
        retries = 0
        try:
            wait_for(lambda: running_pid(endpoint, None) is not None, timeout=30)
            if lingering:
                wait_for(lambda: record.exists(), timeout=30)
            first = running_pid(endpoint, None)
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
                # The Go original writes its sentinel before it binds its first socket, and START goes as soon as
                # it listens again after STOP.
                before = listening(impl, proc, endpoint)
                retries += send_retrying(sender, endpoint, b"STOP")
                relistening(impl, proc, endpoint, before)
                began = time.monotonic()
                retries += send_retrying(sender, endpoint, b"START")
            # The outcome shows within the stop timeout (ours 5 s here) plus the linger.
            deadline = time.monotonic() + 8
            restarted_at: float | None = None
            while time.monotonic() < deadline and proc.poll() is None:
                if restarted_at is None and running_pid(endpoint, first) is not None:
                    restarted_at = time.monotonic()
                if restarted_at is not None and (not lingering or "start" in lines_of(record)[1:]):
                    break
                time.sleep(0.002)
            time.sleep(0.3)  # a collision or an exit that follows the start shows within this
            if proc.poll() is not None:
                outcome = f"containerrun exited {proc.returncode}"
            elif lingering and "collision" in lines_of(record):
                outcome = "collision"
            elif restarted_at is None and children(proc.pid):
                # A new main process runs, but the old one's exit removed the new one's sentinel and pid file.
                outcome = "restarted without sentinel"
            elif restarted_at is None:
                outcome = "stayed stopped"
            else:
                outcome = "restarted"
            return outcome, None if restarted_at is None else restarted_at - began, retries
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            # What the Go original leaves behind (it signals only the main process): everything it started.
            for pid in marked_pids(base):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    """Live child processes of a process."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != b"Z":
                found.append(int(entry.name))
    return found


def marked_pids(base: Path) -> set[int]:
    """Live processes started by the bench for this base directory: their environment names it."""
    return pids_with_env(f"CONTAINERRUN_BASE_DIR={base}")


def lines_of(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def measure_start_after_stop(impl: Implementation, trials: int) -> dict[str, object]:
    """Outcomes of STOP + START at once, for a main process that dies at once and for a lingering worker."""
    out: dict[str, object] = {}
    for name, lingering in (("sleep", False), ("lingering_worker", True)):
        outcomes: dict[str, int] = {}
        delays: list[float] = []
        retries = 0
        for _ in range(trials):
            outcome, delay, tried = start_after_stop_trial(impl, lingering)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
            retries += tried
            if delay is not None and outcome == "restarted":
                delays.append(delay)
        out[name] = {
            "trials": trials,
            "outcomes": outcomes,
            "send_retries": retries,
            "start_to_new_main_ms_p50": percentile(delays, 50) * 1e3 if delays else None,
        }
    return out


def measure(impl: Implementation, rounds: int, burst: int, trials: int) -> dict[str, Any]:
    """Every figure for one implementation."""
    ignored: list[str] = []
    to_term, to_gone = measure_latency(impl, rounds, ignored)
    return {
        "implementation": impl.name,
        "rounds": rounds,
        "stops_ignored": ignored,
        "stop_to_sigterm_ms": {
            "p50": percentile(to_term, 50) * 1e3,
            "p99": percentile(to_term, 99) * 1e3,
            "max": max(to_term) * 1e3,
        },
        "stop_to_gone_ms": {
            "p50": percentile(to_gone, 50) * 1e3,
            "p99": percentile(to_gone, 99) * 1e3,
            "max": max(to_gone) * 1e3,
            "mean": statistics.fmean(to_gone) * 1e3,
        },
        "burst": measure_burst(impl, burst),
        "start_right_after_stop": measure_start_after_stop(impl, trials),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200, help="STOP/START rounds for the latency")
    parser.add_argument("--burst", type=int, default=10_000, help="datagrams in the burst")
    parser.add_argument("--trials", type=int, default=20, help="STOP + START trials per kind of main process")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "containerrun.json")
    args = parser.parse_args()
    go, why_not = go_original()
    implementations = [*IMPLEMENTATIONS, *([go] if go else [])]
    if go is None:
        print(f"the Go original is not measured: {why_not}", file=sys.stderr)
    results = [measure(impl, args.rounds, args.burst, args.trials) for impl in implementations]
    header = (
        f"{'implementation':<15}{'STOP->TERM p50':>15}{'p99':>9}{'STOP->gone p50':>16}{'p99':>9}"
        f"{'burst sent':>12}{'lost':>7}{'silently':>10}{'read in':>10}{'STOPs ignored':>15}"
    )
    print(header)
    for r in results:
        term, gone, burst = r["stop_to_sigterm_ms"], r["stop_to_gone_ms"], r["burst"]
        print(
            f"{r['implementation']:<15}{term['p50']:>13.2f}ms{term['p99']:>7.2f}ms{gone['p50']:>14.2f}ms"
            f"{gone['p99']:>7.2f}ms{burst['sent']:>12}{burst['lost']:>7}{burst['lost_silently']:>10}"
            f"{burst['all_read_seconds']:>9.2f}s{len(r['stops_ignored']):>15}"
        )
    print()
    print(f"{'START right after STOP':<40}{'outcomes':<60}{'START->new main p50':>20}")
    for r in results:
        for kind, figures in r["start_right_after_stop"].items():
            outcomes = ", ".join(f"{n} {what}" for what, n in sorted(figures["outcomes"].items()))
            p50 = figures["start_to_new_main_ms_p50"]
            label = f"{r['implementation']} / {kind}"
            print(f"{label:<40}{outcomes:<60}{'-' if p50 is None else f'{p50:.1f} ms':>20}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "go_original": "measured" if go else f"not measured: {why_not}",
        "results": results,
    }
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"recorded in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
