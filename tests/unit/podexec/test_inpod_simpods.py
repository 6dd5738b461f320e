"""The scale harness's simulated containerrun (harness.simpods) against our real one: the in-pod script, run the
same way against both, must see the same thing at every step, and leave the same files behind."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from processcontrol.podexec.script import ScriptReport

from .conftest import Containerrun, make_stale_socket, run_script, toolbox

ENDPOINTS = [("pxc-mysql", "mysql"), ("pxc-mysql", "galera-agent")]
Seen = list[tuple[str, str, str, bool, bool, bool]]


class Simulated:
    """`python -m harness.simpods serve` over the endpoints of one base dir."""

    def __init__(self, base: Path, endpoints: list[tuple[str, str]]) -> None:
        spec = base.parent / "endpoints.jsonl"
        spec.write_text("".join(json.dumps({"base": str(base), "job": j, "process": p}) + "\n" for j, p in endpoints))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "harness.simpods", "serve", str(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("serving 2 endpoints"), line

    def close(self) -> str:
        self.proc.terminate()
        out, _ = self.proc.communicate(timeout=20)
        return out


@pytest.fixture
def bases() -> Iterator[tuple[Path, Path]]:
    root = Path(tempfile.mkdtemp(prefix="pc-"))
    real, sim = root / "r" / "vcap", root / "s" / "vcap"
    for base in (real, sim):
        (base / "data").mkdir(parents=True)
    try:
        yield real, sim
    finally:
        shutil.rmtree(root, ignore_errors=True)


def seen(report: ScriptReport) -> Seen:
    """What the operator reads of a report; the pid as there / not there (the numbers differ by design)."""
    return sorted((s.job, s.process, s.result, s.running, s.pid is not None, s.was_running) for s in report.sockets)


def files(base: Path) -> list[tuple[str, bool, bool]]:
    data, run = base / "data", base / "sys" / "run" / "bpm"
    return [
        (f"{j}/{p}", (data / j / f"{p}_containerrun.running").exists(), (run / j / f"{p}.pid").exists())
        for j, p in ENDPOINTS
    ]


def step(base: Path, bin_dir: Path, action: str, processes: list[str]) -> tuple[Seen, Seen, list[object]]:
    run = run_script(base, action, [], processes, path=bin_dir, wait_s=5.0)
    assert run.returncode == 0, run.stderr
    outcome = run.outcome
    acted = seen(outcome.acted) if outcome.acted is not None else []
    return seen(outcome.look), acted, list(files(base))


def test_simulated_containerrun_looks_like_the_real_one(bases: tuple[Path, Path], tmp_path: Path) -> None:
    real_base, sim_base = bases
    bin_dir = toolbox(tmp_path / "bin", ["perl"])
    reals = [Containerrun(real_base, j, p) for j, p in ENDPOINTS]
    sim = Simulated(sim_base, ENDPOINTS)
    for base in bases:
        make_stale_socket(base, "gone", "crashed")
    script = [
        ("STATUS", []),
        ("STOP", []),
        ("STOP", []),  # a repeated STOP: a no-op
        ("STATUS", []),
        ("START", ["mysql"]),
        ("STATUS", []),
        ("START", []),
        ("START", []),
        ("STATUS", []),
    ]
    real_steps = []
    try:
        for action, processes in script:
            got = [step(base, bin_dir, action, processes) for base in bases]
            assert got[1] == got[0], f"{action} {processes}: simulated {got[1]} != real {got[0]}"
            real_steps.append(got[0])
    finally:
        for r in reals:
            r.close()
        out = sim.close()
    # Something was compared: the first STOP stopped both processes, the START of one started only it.
    assert ("pxc-mysql", "mysql", "sent", False, False, True) in real_steps[1][1]
    assert real_steps[5][2] == [("pxc-mysql/mysql", True, True), ("pxc-mysql/galera-agent", False, False)]
    assert "commands received" in out
    # On exit, as containerrun: no sentinel, pid file or socket of ours is left (the stale one is not ours).
    left = sorted(p.name for p in (sim_base / "data").glob("*/*"))
    assert left == ["crashed_containerrun.sock"]
    assert (sim_base / "jobs" / "bpm" / "bin" / "bpm").exists() == (real_base / "jobs" / "bpm" / "bin" / "bpm").exists()


def test_stop_then_start_at_once_ends_running(bases: tuple[Path, Path], tmp_path: Path) -> None:
    """A START right behind a STOP (before the process has gone) waits for it, then starts it, as containerrun."""
    _, sim_base = bases
    sim = Simulated(sim_base, ENDPOINTS)
    sock = sim_base / "data" / "pxc-mysql" / "mysql_containerrun.sock"
    sentinel = sock.with_name("mysql_containerrun.running")
    pid_file = sim_base / "sys" / "run" / "bpm" / "pxc-mysql" / "mysql.pid"
    first_pid = pid_file.read_text()

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"STOP\n", str(sock))
            s.sendto(b"  START  ", str(sock))
            s.sendto(b"stop", str(sock))  # not a command: ignored
        deadline = time.monotonic() + 10
        while not (pid_file.exists() and pid_file.read_text() != first_pid):
            assert time.monotonic() < deadline, "never started again"
            time.sleep(0.01)
        assert sentinel.exists()
    finally:
        sim.close()
    assert not sentinel.exists() and not pid_file.exists() and not sock.exists()
