"""containerrun benchmark: STOP-to-SIGTERM and STOP-to-child-gone latency, and datagrams lost in a burst.

    .venv/bin/python bench/containerrun_bench.py [--rounds 200] [--burst 10000] [--json bench/results/containerrun.json]

Latency: the bench sends one STOP datagram and measures, on the shared monotonic clock, when the child
(a small Python program) receives SIGTERM and when it is gone (a pidfd becomes readable), then sends
START and waits for the next child; p50/p99 over the rounds. Burst: BURST QUIT datagrams from a blocking
sender to a child that ignores SIGQUIT; lost = sends that failed + datagrams the log does not show as
received. Only our containerrun can be built here; IMPLEMENTATIONS takes another one when it can.
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

from processcontrol.containerrun.protocol import Endpoint


@dataclass(frozen=True)
class Implementation:
    """How to start one implementation, and how its log shows a received QUIT."""

    name: str
    argv: tuple[str, ...]
    extra_flags: tuple[str, ...]
    quit_received: str


IMPLEMENTATIONS = [
    Implementation(
        "ours",
        (sys.executable, "-m", "processcontrol.containerrun"),
        ("--stop-timeout", "5"),
        "received QUIT",
    ),
]

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
    impl: Implementation, base: Path, command: list[str], debug: bool = False
) -> tuple[subprocess.Popen[bytes], Endpoint, Path]:
    endpoint = Endpoint(base, "bench", "proc")
    log = base / "containerrun.log"
    argv = [*impl.argv, "--job-name", "bench", "--process-name", "proc", *impl.extra_flags]
    argv += ["--debug"] if debug else []
    env = {**os.environ, "CONTAINERRUN_BASE_DIR": str(base)}
    with log.open("wb") as log_file:
        proc = subprocess.Popen([*argv, "--", *command], stdout=subprocess.PIPE, stderr=log_file, env=env, cwd=base)
    return proc, endpoint, log


def running_pid(endpoint: Endpoint, other_than: int | None) -> int | None:
    pid = endpoint.read_pid()
    return pid if endpoint.sentinel.exists() and pid and pid != other_than else None


def measure_latency(impl: Implementation, rounds: int) -> tuple[list[float], list[float]]:
    """STOP-to-SIGTERM and STOP-to-gone latencies, in seconds."""
    to_term: list[float] = []
    to_gone: list[float] = []
    with tempfile.TemporaryDirectory(prefix="crb", dir="/tmp") as tmp:
        proc, endpoint, _ = start(impl, Path(tmp), [sys.executable, "-c", TERM_REPORTER])
        assert proc.stdout is not None
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        previous: int | None = None
        try:
            for _ in range(rounds):
                assert proc.stdout.readline() == b"ready\n"  # its SIGTERM handler is set
                wait_for(lambda before=previous: running_pid(endpoint, before) is not None)  # type: ignore[misc]
                pid = running_pid(endpoint, previous)
                assert pid is not None
                pidfd = os.pidfd_open(pid)
                sent = time.monotonic()
                sender.sendto(b"STOP", str(endpoint.socket))
                select.select([pidfd], [], [], 60)
                gone = time.monotonic()
                os.close(pidfd)
                term = float(proc.stdout.readline())
                to_term.append(term - sent)
                to_gone.append(gone - sent)
                previous = pid
                wait_for(lambda: not endpoint.sentinel.exists())
                sender.sendto(b"START", str(endpoint.socket))
        finally:
            sender.close()
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    return to_term, to_gone


def measure_burst(impl: Implementation, burst: int) -> dict[str, float]:
    """Send `burst` QUITs as fast as a blocking sender can; count failed sends and unread datagrams."""
    with tempfile.TemporaryDirectory(prefix="crb", dir="/tmp") as tmp:
        ready = Path(tmp) / "ready"
        proc, endpoint, log = start(impl, Path(tmp), ["sh", "-c", QUIT_IGNORER.format(ready=ready)])
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

            with contextlib.suppress(TimeoutError):
                wait_for(lambda: received() >= burst - failed, timeout=30)
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
        "send_seconds": sent_in,
        "all_read_seconds": read_in,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=200, help="STOP/START rounds for the latency")
    parser.add_argument("--burst", type=int, default=10_000, help="datagrams in the burst")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "containerrun.json")
    args = parser.parse_args()
    results = []
    for impl in IMPLEMENTATIONS:
        to_term, to_gone = measure_latency(impl, args.rounds)
        burst = measure_burst(impl, args.burst)
        results.append(
            {
                "implementation": impl.name,
                "rounds": args.rounds,
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
                "burst": burst,
            }
        )
    header = (
        f"{'implementation':<15}{'STOP->TERM p50':>15}{'p99':>9}{'STOP->gone p50':>16}{'p99':>9}"
        f"{'burst sent':>12}{'lost':>7}{'read in':>10}"
    )
    print(header)
    for r in results:
        term, gone, burst = r["stop_to_sigterm_ms"], r["stop_to_gone_ms"], r["burst"]
        print(
            f"{r['implementation']:<15}{term['p50']:>13.2f}ms{term['p99']:>7.2f}ms{gone['p50']:>14.2f}ms"
            f"{gone['p99']:>7.2f}ms{burst['sent']:>12}{burst['lost']:>7}{burst['all_read_seconds']:>9.2f}s"
        )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
        "results": results,
    }
    args.json.write_text(json.dumps(record, indent=2) + "\n")
    print(f"recorded in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
