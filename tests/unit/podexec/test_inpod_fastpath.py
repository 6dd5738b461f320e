"""Issue 14's fast path and issue 13's robustness, with real sockets: the in-pod wait, `only`, the Go original's
rebind gap, the terminator line, and the compact form against the readable source."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.testing import missing
from processcontrol.podexec.script import SCRIPT, Action, Idle, Outcome, ScriptReport

from .conftest import (
    PROCESSCONTROL,
    WINDOW_S,
    Containerrun,
    Listener,
    Pod,
    make_stale_socket,
    run_script,
    tool_path,
    toolbox,
)

Start = Callable[[str, str], Containerrun]
ALL_TOOLS = ["processcontrol", "perl", "python3", "ncat", "nc", "socat"]


def bin_dir_for(tool: str, directory: Path, extra: tuple[str, ...] = ()) -> Path:
    """PATH with one sender tool (plus `sleep`, which images have) and nothing else."""
    if tool == "processcontrol":
        if not os.access(PROCESSCONTROL, os.X_OK):
            missing("processcontrol is not installed")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "processcontrol").symlink_to(PROCESSCONTROL)
    else:
        toolbox(directory, [tool])
    for name in extra:
        (directory / name).symlink_to(f"/bin/{name}")
    return directory


def run(
    pod: Pod,
    action: Action | str,
    path: Path,
    *,
    script: str | None = None,
    shell: str = "sh",
    only: list[tuple[str, str]] | None = None,
    wait_s: float = 0.0,
    jobs: tuple[str, ...] = (),
) -> ScriptReport:
    """One exec: STOP/START with the go-ahead for every socket the look reported (the report of the send), or
    STATUS (no go-ahead: the look)."""
    done = run_script(pod.base, str(action), jobs, path=path, shell=shell, only=only, wait_s=wait_s, script=script)
    assert done.returncode == 0, done.stderr
    return done.report


def outcome(
    pod: Pod,
    action: Action | str,
    path: Path,
    *,
    script: str | None = None,
    shell: str = "sh",
    only: list[tuple[str, str]] | None = None,
    wait_s: float = 0.0,
) -> Outcome:
    """Like `run`, the whole outcome: the look and what was done with the go-ahead."""
    done = run_script(pod.base, str(action), path=path, shell=shell, only=only, wait_s=wait_s, script=script)
    assert done.returncode == 0, done.stderr
    assert done.report is not None  # the property checks that the go-ahead was acted on as written
    return done.outcome


def states(report: ScriptReport) -> dict[tuple[str, str], tuple[str, bool, bool]]:
    return {(s.job, s.process): (s.result, s.was_running, s.running) for s in report.sockets}


@pytest.mark.parametrize("tool", ALL_TOOLS)
def test_stop_and_start_with_wait_report_the_final_state_in_one_exec(
    pod: Pod, containerruns: Start, tmp_path: Path, tool: str
) -> None:
    """Issue 14 item 1: the report of the STOP exec itself says stopped; no STATUS poll needed."""
    runners = [containerruns("pxc-mysql", "mysql"), containerruns("pxc-mysql", "galera-agent")]
    make_stale_socket(pod.base, "gone", "crashed")
    path = bin_dir_for(tool, tmp_path / "bin", ("sleep",))
    report = run(pod, Action.STOP, path, wait_s=10)
    assert states(report) == {
        ("pxc-mysql", "mysql"): ("sent", True, False),
        ("pxc-mysql", "galera-agent"): ("sent", True, False),
        ("gone", "crashed"): ("refused", False, False),
    }
    for runner in runners:
        assert not runner.sentinel.exists()
    report = run(pod, Action.START, path, wait_s=10, only=[("pxc-mysql", "mysql")])
    assert states(report) == {("pxc-mysql", "mysql"): ("sent", False, True)}
    assert runners[0].sentinel.exists()
    assert report.sockets[0].pid == runners[0].pid() is not None
    assert not runners[1].sentinel.exists()


@pytest.mark.parametrize("tool", ALL_TOOLS)
def test_status_probes_only_stopped_sockets(pod: Pod, containerruns: Start, tmp_path: Path, tool: str) -> None:
    containerruns("job", "live")
    stopped = containerruns("job", "stopped")
    make_stale_socket(pod.base, "job", "stale")
    path = bin_dir_for(tool, tmp_path / "bin", ("sleep",))
    run(pod, Action.STOP, path, only=[("job", "stopped")], wait_s=10)
    assert not stopped.sentinel.exists()
    report = run(pod, "STATUS", path)
    assert states(report) == {
        ("job", "live"): ("probed", True, True),
        ("job", "stopped"): ("probed", False, False),
        ("job", "stale"): ("stale", False, False),
    }


def test_wait_is_bounded(pod: Pod, tmp_path: Path) -> None:
    """A process that does not stop: the script gives up after wait_s and says it still runs."""
    listener = pod.listen("job", "stubborn")
    listener.sentinel.touch()
    keep = threading.Event()

    def keep_sentinel() -> None:  # the fake listener removes it on STOP; put it back at once, all the time
        while not keep.is_set():
            listener.sentinel.touch()
            time.sleep(0.001)

    thread = threading.Thread(target=keep_sentinel, daemon=True)
    thread.start()
    try:
        began = time.monotonic()
        report = run(pod, Action.STOP, bin_dir_for("perl", tmp_path / "bin", ("sleep",)), wait_s=0.3)
        elapsed = time.monotonic() - began
    finally:
        keep.set()
        thread.join()
    assert states(report) == {("job", "stubborn"): ("sent", True, True)}
    assert elapsed < 30  # bounded at all (the bound's precision is the bench's business)


def test_wait_without_fractional_sleep_never_sleeps_a_second(pod: Pod, tmp_path: Path) -> None:
    """An image whose `sleep` takes whole seconds only: the wait spins on /proc/uptime instead of `sleep 1`."""
    listener = DelayedStop(pod.base, "job", "slow", delay=0.3)
    listener.start()
    pod.listeners[("job", "slow")] = listener
    path = bin_dir_for("python3", tmp_path / "bin")
    log = tmp_path / "sleep.log"
    fake = path / "sleep"
    fake.write_text(f'#!/bin/sh\necho "$*" >>{log}\ncase $1 in *[!0-9]*) exit 1 ;; esac\nexec /bin/sleep "$1"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    report = run(pod, Action.STOP, path, wait_s=10)
    assert states(report) == {("job", "slow"): ("sent", True, False)}
    # The one check whether fractions work; never a whole second for a nap. The watchdog's sleep (the window's,
    # whole seconds; killed once the go-ahead is in) logs too, unless it is killed before its first line.
    naps = log.read_text().split()
    watchdog = str(int(WINDOW_S) + 1)
    assert [n for n in naps if n != watchdog] == [".001"]
    assert naps.count(watchdog) <= 1


class DelayedStop(Listener):
    """A containerrun stand-in that takes `delay` seconds to stop (removes the sentinel late)."""

    def __init__(self, base: Path, job: str, process: str, delay: float) -> None:
        super().__init__(base, job, process)
        self.delay = delay

    def on_command(self, command: bytes) -> None:
        if command == b"STOP":
            threading.Timer(self.delay, lambda: self.sentinel.unlink(missing_ok=True)).start()


@pytest.mark.parametrize("tool", ["perl", "python3", "ncat", "nc", "socat"])
def test_rebind_gap_is_retried(pod: Pod, tmp_path: Path, tool: str) -> None:
    """Issue 13 item 4: the Go original unlinks and rebinds after each datagram. A socket that refuses (stale
    file) and is bound again 40 ms later must be `sent`, not `refused`."""
    path = make_stale_socket(pod.base, "job", "rebinding")
    (pod.base / "data" / "job" / "rebinding_containerrun.running").touch()
    got: list[bytes] = []

    def rebind() -> None:
        time.sleep(0.04)
        path.unlink()
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.bind(str(path))
            s.settimeout(5)
            got.append(s.recv(100))

    thread = threading.Thread(target=rebind, daemon=True)
    thread.start()
    report = run(pod, Action.STOP, bin_dir_for(tool, tmp_path / "bin", ("sleep",)))
    thread.join(6)
    assert states(report) == {("job", "rebinding"): ("sent", True, True)}
    assert got == [b"STOP\n"]


def test_a_really_stale_socket_is_refused_within_a_short_bound(pod: Pod, tmp_path: Path) -> None:
    make_stale_socket(pod.base, "job", "stale")
    began = time.monotonic()
    report = run(pod, Action.STOP, bin_dir_for("perl", tmp_path / "bin", ("sleep",)))
    assert states(report) == {("job", "stale"): ("refused", False, False)}
    assert time.monotonic() - began < 10  # retried, yet bounded


@pytest.mark.parametrize(
    ("only", "expected"),
    [
        (None, {("a", "x"), ("a", "y"), ("b", "x")}),
        ([], set()),
        ([("a", "y")], {("a", "y")}),
        ([("a", "y"), ("b", "x"), ("c", "z")], {("a", "y"), ("b", "x")}),
    ],
)
def test_only_selects_pairs(
    pod: Pod, tmp_path: Path, only: list[tuple[str, str]] | None, expected: set[tuple[str, str]]
) -> None:
    for job, process in (("a", "x"), ("a", "y"), ("b", "x")):
        pod.listen(job, process)
    report = run(pod, Action.STOP, bin_dir_for("perl", tmp_path / "bin"), only=only)
    assert {(s.job, s.process) for s in report.sockets} == expected
    for (job, process), listener in pod.listeners.items():
        wanted = (job, process) in expected
        assert listener.wait_for(1, timeout=5 if wanted else 0.1) == ([b"STOP\n"] if wanted else [])


def test_only_is_still_filtered(pod: Pod, tmp_path: Path) -> None:
    for job, process in (("a", "x"), ("b", "x")):
        pod.listen(job, process)
    report = run(pod, "STATUS", bin_dir_for("perl", tmp_path / "bin"), only=[("a", "x"), ("b", "x")], jobs=("b",))
    assert [(s.job, s.process) for s in report.sockets] == [("b", "x")]


def test_batch_sender_is_one_process_for_all_sockets(pod: Pod, tmp_path: Path) -> None:
    """Issue 14 item 2: 12 sockets, one perl; a counting wrapper around perl sees exactly one start."""
    perl = tool_path("perl")
    listeners = [pod.listen("job", f"p{i}") for i in range(12)]
    path = tmp_path / "bin"
    path.mkdir()
    log = tmp_path / "perl.log"
    wrapper = path / "perl"
    wrapper.write_text(f'#!/bin/sh\necho run >>{log}\nexec {perl} "$@"\n')
    wrapper.chmod(0o755)
    report = run(pod, Action.STOP, path)
    assert {s.result for s in report.sockets} == {"sent"}
    assert len(report.sockets) == 12
    assert log.read_text().splitlines() == ["run"]
    for listener in listeners:
        assert listener.wait_for(1) == [b"STOP\n"]


def test_per_socket_senders_are_capped_at_8(pod: Pod, tmp_path: Path) -> None:
    """Without a batch sender, one ncat per socket, never more than 8 at once."""
    python = tool_path("python3")
    listeners = [pod.listen("job", f"p{i:02}") for i in range(20)]
    path = tmp_path / "bin"
    path.mkdir()
    gate = tmp_path / "gate"
    gate.mkdir()
    started = tmp_path / "started"
    started.mkdir()
    fake = path / "ncat"
    # Registers itself, then holds until the rest of its batch of 8 has started (the last batch: until all 20 have),
    # records how many run, then sends. Under a cap of 8 each batch meets at 8; under a lower cap a batch never
    # fills (the deadline fails the test); with no cap, later senders find more than 8 running.
    fake.write_text(
        f"""#!{python}
import os, socket, sys, time
me = os.path.join({str(gate)!r}, str(os.getpid()))
open(me, "w").close()
open(os.path.join({str(started)!r}, str(os.getpid())), "w").close()
batch_end = min(20, -(-len(os.listdir({str(started)!r})) // 8) * 8)
deadline = time.monotonic() + 20
while len(os.listdir({str(started)!r})) < batch_end:
    if time.monotonic() > deadline:
        sys.exit("a batch of 8 senders never ran at once")
    time.sleep(0.005)
with open({str(tmp_path / "peaks")!r}, "a") as f:
    f.write(str(len(os.listdir({str(gate)!r}))) + "\\n")
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(sys.stdin.buffer.read(), sys.argv[-1])
os.unlink(me)
"""
    )
    fake.chmod(0o755)
    report = run(pod, Action.STOP, path)
    assert report.tool == "ncat"
    assert {s.result for s in report.sockets} == {"sent"}
    peaks = [int(x) for x in (tmp_path / "peaks").read_text().split()]
    assert len(peaks) == 20
    assert max(peaks) == 8, peaks
    for listener in listeners:
        assert listener.wait_for(1) == [b"STOP\n"]


@pytest.mark.parametrize(("tool", "shell"), [(tool, "dash") for tool in ALL_TOOLS] + [("perl", "bash-posix")])
def test_compact_form_behaves_like_the_readable_source(
    pod: Pod, containerruns: Start, tmp_path: Path, tool: str, shell: str
) -> None:
    """Issue 14 item 3: what is sent is generated from inpod.sh; both forms give the same looks and reports."""
    runners = [containerruns("j1", "a"), containerruns("j1", "b"), containerruns("j2", "a")]
    make_stale_socket(pod.base, "j2", "stale")
    path = bin_dir_for(tool, tmp_path / "bin", ("sleep",))
    steps: list[tuple[str, float, list[tuple[str, str]] | None]] = [
        ("STATUS", 0, None),
        ("STOP", 10, [("j1", "a"), ("j2", "a"), ("j2", "stale")]),
        ("STATUS", 0, None),
        ("START", 10, None),
    ]

    def without_pids(report: ScriptReport) -> ScriptReport:
        # pids differ between the two rounds (START starts a new child): compare whether there is one
        return report.model_copy(
            update={"sockets": [s.model_copy(update={"pid": s.pid is not None}) for s in report.sockets]}
        )

    seen: dict[str, list[Outcome]] = {"compact": [], "readable": []}
    for form in ("compact", "readable"):
        for action, wait_s, only in steps:
            got = outcome(
                pod, action, path, script=None if form == "compact" else SCRIPT, shell=shell, only=only, wait_s=wait_s
            )
            update = {"look": without_pids(got.look), "acted": got.acted and without_pids(got.acted)}
            seen[form].append(got.model_copy(update=update))
    assert seen["compact"] == seen["readable"]
    assert [len(o.look.sockets) for o in seen["compact"]] == [4, 3, 4, 4]
    assert [o.acted and len(o.acted.sockets) for o in seen["compact"]] == [None, 3, None, 4]
    assert [o.idle for o in seen["compact"]] == [Idle.EOF, None, Idle.EOF, None]
    for runner in runners:
        assert runner.sentinel.exists()


@pytest.mark.parametrize("tool", ["perl", "socat"])
def test_only_selects_sockets_whose_names_are_shell_code_or_patterns(pod: Pod, tmp_path: Path, tool: str) -> None:
    """A release gives back what the ledger names: any name a socket path can hold must be selectable, as a plain
    string (a `*` selects only the socket called `*`)."""
    names = [("$(touch x)", "p"), ("j", "x,y"), ("*", "?"), ("-n", "-e"), ("a b", "'\"&&")]
    listeners = {pair: pod.listen(*pair) for pair in [*names, ("j", "other")]}
    path = bin_dir_for(tool, tmp_path / "bin", ("sleep",))
    report = run(pod, Action.STOP, path, only=[*names[:3], ("-n", "-e")])
    assert {(s.job, s.process) for s in report.sockets} == {*names[:3], ("-n", "-e")}
    for pair in [*names[:3], ("-n", "-e")]:
        assert listeners[pair].wait_for(1) == [b"STOP\n"], pair
    assert listeners[("j", "other")].received == [] and listeners[("a b", "'\"&&")].received == []
    assert not list(Path.cwd().glob("x")) and not (pod.base / "x").exists()
