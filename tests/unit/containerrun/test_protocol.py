"""Black-box protocol tests: real containerrun, real children, real sockets, one fixture of implementations."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from .conftest import (
    Containerrun,
    Implementation,
    Recording,
    Start,
    gone,
    lines,
    send_datagram,
    wait_for,
    wait_recorder,
)

SLEEP = ["sleep", "1000"]


def test_start_creates_socket_sentinel_and_pidfile(start: Start) -> None:
    run = start(SLEEP)
    pid = run.wait_running()
    assert run.sock.is_socket()
    assert run.endpoint.sentinel.exists()
    assert run.endpoint.read_pid() == pid
    assert run.descendants() == {pid}


def test_stop_when_running_terminates_and_stays_up(recording: Recording) -> None:
    run, record, pid = recording
    run.send("STOP")
    run.wait_stopped(pid)
    assert lines(record) == ["start", "term"]
    assert not run.endpoint.pidfile.exists()
    run.wait_no_descendants()
    assert run.alive()
    assert run.sock.is_socket()


def test_start_when_stopped_starts_again(recording: Recording) -> None:
    run, record, first = recording
    run.send("STOP")
    run.wait_stopped(first)
    run.send("START")
    second = run.wait_running(other_than=first)
    wait_recorder(record, 2)
    assert second != first
    assert lines(record) == ["start", "term", "start"]
    assert run.endpoint.read_pid() == second


def test_quit_signals_and_keeps_running(recording: Recording) -> None:
    run, record, pid = recording
    run.send("QUIT")
    wait_for(lambda: "quit" in lines(record), "SIGQUIT to reach the child")
    assert run.endpoint.sentinel.exists()
    assert not gone(pid)
    assert run.endpoint.read_pid() == pid


def test_quit_when_stopped_changes_nothing(recording: Recording) -> None:
    run, record, pid = recording
    run.send("STOP")
    run.wait_stopped(pid)
    run.send("QUIT")
    run.send("START")  # processed after QUIT: the socket is one ordered queue
    run.wait_running(other_than=pid)
    wait_recorder(record, 2)
    assert lines(record) == ["start", "term", "start"]


def test_repeated_start_is_a_noop(recording: Recording) -> None:
    run, record, pid = recording
    for _ in range(3):
        run.send("START")
    run.send("QUIT")  # an observable command behind the STARTs proves they were read
    wait_for(lambda: "quit" in lines(record), "the QUIT behind the STARTs")
    assert lines(record) == ["start", "quit"]
    assert run.endpoint.read_pid() == pid


def test_repeated_stop_is_a_noop(recording: Recording) -> None:
    run, record, pid = recording
    for _ in range(3):
        run.send("STOP")
    run.wait_stopped(pid)
    run.send("STOP")
    run.send("START")
    second = run.wait_running(other_than=pid)
    wait_recorder(record, 2)
    assert lines(record) == ["start", "term", "start"]
    assert run.descendants() >= {second}


GARBAGE = [
    b"stop",
    b"Stop",
    b"start",
    b"quit",
    b"STOPP",
    b"STO",
    b"",
    b"   ",
    b"STOP START",
    b"S T O P",
    b"STOP\x00",
    b"\xffSTOP",
    b"\xc3\x28",
    "STOP".encode("utf-16"),
]


def test_garbage_and_lowercase_are_ignored(recording: Recording) -> None:
    run, record, pid = recording
    for payload in GARBAGE:
        run.send(payload)
    run.send("QUIT")
    wait_for(lambda: "quit" in lines(record), "the QUIT behind the garbage")
    assert lines(record) == ["start", "quit"]
    assert run.endpoint.read_pid() == pid
    run.send(" \t STOP\r\n")  # surrounding whitespace is trimmed
    run.wait_stopped(pid)


@pytest.mark.ours_only
def test_oversized_datagram_is_ignored(recording: Recording) -> None:
    """The Go original reads 256 bytes and trims them, so `STOP` and 1000 spaces would stop it."""
    run, record, pid = recording
    run.send(b"STOP" + b" " * 1000)
    run.send(b"START" + b"\n" * 300)
    run.send("QUIT")
    wait_for(lambda: "quit" in lines(record), "the QUIT behind the oversized datagrams")
    assert lines(record) == ["start", "quit"]
    assert run.endpoint.read_pid() == pid


@pytest.mark.ours_only
def test_term_ignoring_child_is_killed_after_stop_timeout(start: Start, base_dir: Path) -> None:
    """Ours has --stop-timeout; the Go original's is 20 s, fixed (the same behaviour, slower to test)."""
    ready = base_dir / "ready"
    run = start(["sh", "-c", f"trap '' TERM; touch {ready}; exec sleep 1000"], stop_timeout=1)
    pid = run.wait_running()
    wait_for(ready.exists, "the child to ignore SIGTERM")
    run.send("STOP")
    wait_for(lambda: "received STOP" in run.log(), "STOP to be read")
    run.wait_stopped(pid)
    run.wait_no_descendants()
    assert "stop timeout of 1s passed: SIGKILL to 1 process group(s)" in run.log()


def test_start_during_a_stop_waits_for_the_old_process(start: Start, base_dir: Path) -> None:
    """Ours: START while a stop is under way starts the new main process only once the old one is gone (here
    SIGKILLed at the stop timeout, since it ignores SIGTERM). The Go original SIGKILLs the old main process at
    once and starts the new one, then reads the old one's death as the new one's failure and exits 1."""
    ready = base_dir / "ready"
    # The first run ignores SIGTERM; later ones do not, so that the test ends quickly.
    script = f"[ -e {ready} ] && exec sleep 1000; trap '' TERM; touch {ready}; exec sleep 1000"
    run = start(["sh", "-c", script], stop_timeout=2)
    pid = run.wait_running()
    wait_for(ready.exists, "the child to ignore SIGTERM")
    run.send("STOP")  # the child ignores SIGTERM: it outlives STOP until the stop timeout
    run.send("START")
    if run.impl.ours:
        wait_for(lambda: "received START" in run.log(), "START to be read")
        assert not gone(pid)  # START did not kill it...
        second = run.wait_running(other_than=pid)
        assert gone(pid)  # ...the stop timeout did, and only then did the new one start
        log = run.log()
        assert "waiting for 1 old process group(s) to be gone before starting" in log
        assert log.index("stop timeout of 2s passed") < log.index(f"started the main process (pid {second})")
    else:
        assert run.wait_exit() == 1
        assert "signal: killed" in run.log()


@pytest.mark.ours_only
def test_grandchildren_are_stopped(start: Start) -> None:
    """Ours signals the main process's whole process group; the Go original signals the main process only, so
    what it started in the background outlives STOP (and SIGTERM)."""
    run = start(["sh", "-c", "sleep 1000 & sleep 1000; wait"])
    pid = run.wait_running()
    wait_for(lambda: len(run.descendants()) == 3, "sh and its two sleeps")
    run.send("STOP")
    run.wait_stopped(pid)
    run.wait_no_descendants()
    run.send("START")
    run.wait_running(other_than=pid)
    wait_for(lambda: len(run.descendants()) == 3, "sh and its two sleeps again")


def test_post_start_waits_for_its_condition_and_is_stopped_and_restarted(start: Start, base_dir: Path) -> None:
    attempts, flag, post = base_dir / "attempts", base_dir / "flag", base_dir / "post-start"
    run = start(
        SLEEP,
        extra=[
            "--post-start-name=sh",
            "--post-start-arg=-c",
            f"--post-start-arg=echo ran >> {post}; exec sleep 1000",
            "--post-start-condition-name=sh",
            "--post-start-condition-arg=-c",
            f"--post-start-condition-arg=echo attempt >> {attempts}; test -e {flag}",
        ],
    )
    pid = run.wait_running()
    wait_for(lambda: lines(attempts), "a first condition attempt")
    assert not post.exists(), "the post-start ran before its condition held"
    flag.touch()
    wait_for(lambda: lines(post) == ["ran"], "the post-start, once the condition holds", timeout=60)
    assert len(lines(attempts)) >= 2
    wait_for(lambda: len(run.descendants()) == 2, "the main process and the post-start")
    run.send("STOP")  # the post-start is registered: STOP reaches it too
    run.wait_stopped(pid)
    run.wait_no_descendants()
    run.send("START")  # and it runs again on every START
    run.wait_running(other_than=pid)
    wait_for(lambda: lines(post) == ["ran", "ran"], "the post-start to run again", timeout=60)


def test_post_start_without_condition_and_a_missing_post_start(start: Start, base_dir: Path) -> None:
    post = base_dir / "post-start"
    run = start(
        SLEEP,
        job="with",
        extra=["--post-start-name", "sh", "--post-start-arg", "-c", "--post-start-arg", f"echo ran >> {post}"],
    )
    run.wait_running()
    wait_for(lambda: lines(post) == ["ran"], "the post-start")
    missing = start(SLEEP, job="without", extra=["--post-start-name", str(base_dir / "no-such-post-start")])
    missing.wait_running()
    assert missing.alive()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_stops_children_and_exits_0(recording: Recording, signum: signal.Signals) -> None:
    run, record, _ = recording
    run.proc.send_signal(signum)
    assert run.wait_exit() == 0
    assert lines(record) == ["start", "term"]
    run.wait_no_descendants()
    assert not run.endpoint.sentinel.exists()


def test_sigterm_when_stopped_exits_0(start: Start) -> None:
    run = start(SLEEP)
    pid = run.wait_running()
    run.send("STOP")
    run.wait_stopped(pid)
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait_exit() == 0


def test_sigquit_is_forwarded(recording: Recording) -> None:
    run, record, _ = recording
    run.proc.send_signal(signal.SIGQUIT)
    wait_for(lambda: "quit" in lines(record), "SIGQUIT to be forwarded")
    assert run.alive()


def test_child_exit_0_stays_up_stopped(start: Start, base_dir: Path) -> None:
    record, go = base_dir / "record", base_dir / "go"
    # It exits 0 only once told to, so that its exit cannot overtake containerrun's own bookkeeping.
    run = start(["sh", "-c", f"echo ran >> {record}; until [ -e {go} ]; do sleep 0.01; done"])
    pid = run.wait_running()
    go.touch()
    run.wait_stopped(pid)
    run.send("START")  # still listening, and START runs it again
    wait_for(lambda: lines(record) == ["ran", "ran"], "the main process to run again")
    assert run.alive()


def test_child_exit_nonzero_makes_containerrun_exit_nonzero(start: Start, base_dir: Path) -> None:
    record = base_dir / "record"
    run = start(["sh", "-c", f"echo ran >> {record}; sleep 0.2; exit 3"])
    code = run.wait_exit()
    assert code != 0
    if run.impl.ours:
        assert code == 3  # ours passes the child's status on
    assert lines(record) == ["ran"]


@pytest.mark.ours_only
def test_child_killed_by_signal_exits_128_plus_signal(start: Start) -> None:
    """The Go original exits 1 whatever the main process's status (test_child_exit_nonzero_...)."""
    run = start(SLEEP)
    pid = run.wait_running()
    signal_number = signal.SIGUSR1
    os.kill(pid, signal_number)
    assert run.wait_exit() == 128 + signal_number


@pytest.mark.ours_only
def test_unstartable_command_exits_127(impl: Implementation, base_dir: Path) -> None:
    """The Go original exits 1."""
    run = Containerrun(impl, base_dir, "job", "proc", [str(base_dir / "no-such-command")])
    try:
        assert run.wait_exit() == 127
        assert "cannot start the main process" in run.log()
        assert not run.sock.exists()
    finally:
        run.close()


def test_stale_socket_at_start_is_replaced(base_dir: Path, start: Start) -> None:
    stale = base_dir / "data" / "job" / "proc_containerrun.sock"
    stale.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(stale))  # closed without unlinking: a stale socket, as after a crash
    with pytest.raises(ConnectionRefusedError):
        send_datagram(stale, "STOP")
    run = start(SLEEP)
    pid = run.wait_running()
    run.send("STOP")
    run.wait_stopped(pid)


@pytest.mark.ours_only
def test_socket_and_files_are_removed_at_exit(start: Start) -> None:
    """The Go original leaves its socket file behind: a sender then sees it refuse (stale)."""
    run = start(SLEEP)
    run.wait_running()
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait_exit() == 0
    assert not run.sock.exists()
    assert not run.endpoint.sentinel.exists()
    assert not run.endpoint.pidfile.exists()


@pytest.mark.ours_only
def test_start_right_after_stop_never_crashes(start: Start) -> None:
    """The Go original loses datagrams sent back to back (test_back_to_back_datagrams_are_all_read) and may exit
    on START during a stop (test_start_during_a_stop_waits_for_the_old_process)."""
    run = start(SLEEP)
    pid = run.wait_running()
    for _ in range(50):
        run.send("STOP")
        run.send("START")
    # Each is logged as "received X" (with what it did after a colon, when not the plain case).
    wait_for(lambda: run.log_count("received START") == 50, "all 100 commands to be read")
    assert run.log_count("received STOP") == 50
    assert run.alive(), run.log()
    last = run.wait_running(other_than=pid)
    wait_for(lambda: run.descendants() == {last}, "exactly one main process")


@pytest.mark.ours_only
def test_burst_of_10000_garbage_datagrams_with_one_stop_loses_nothing(start: Start) -> None:
    """The Go original reads one datagram per socket it binds: most of a burst is refused or lost (bench)."""
    run = start(SLEEP, debug=True)
    pid = run.wait_running()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        for i in range(10_000):
            # A blocking sender waits while the receive queue is full; nothing is refused while we listen.
            sock.sendto(b"STOP" if i == 5_000 else b"garbage %d" % i, str(run.sock))
    wait_for(lambda: run.log_count("ignored a datagram") == 9_999, "all 9,999 garbage datagrams to be read")
    assert run.log_count("received STOP") == 1
    run.wait_stopped(pid)


@pytest.mark.ours_only
def test_burst_of_10000_commands_loses_nothing(start: Start, base_dir: Path) -> None:
    """As above: the Go original loses most of a burst."""
    ready = base_dir / "ready"
    run = start(["sh", "-c", f"trap '' QUIT; touch {ready}; exec sleep 1000"])
    pid = run.wait_running()
    wait_for(ready.exists, "the child to ignore SIGQUIT")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        for _ in range(10_000):
            sock.sendto(b"QUIT", str(run.sock))
    wait_for(lambda: run.log_count("received QUIT") == 10_000, "all 10,000 QUITs to be read")
    assert run.endpoint.read_pid() == pid
    assert not gone(pid)


@pytest.mark.ours_only
def test_errand_exits_when_the_main_process_exits_0(start: Start) -> None:
    """--errand is ours (kubecf errands run without containerrun's socket otherwise)."""
    run = start(["sh", "-c", "sleep 0.2"], extra=["--errand"])
    assert run.wait_exit() == 0


@pytest.mark.ours_only
def test_failing_post_start_makes_containerrun_exit_with_its_status(start: Start) -> None:
    """The Go original exits 1 whatever the post-start's status."""
    run = start(SLEEP, extra=["--post-start-name=sh", "--post-start-arg=-c", "--post-start-arg=sleep 0.2; exit 4"])
    assert run.wait_exit() == 4
    run.wait_no_descendants()
    assert "the post-start failed" in run.log()


def test_back_to_back_datagrams_are_all_read(start: Start, base_dir: Path) -> None:
    """Ours reads every datagram from one socket it keeps. The Go original reads one datagram, then closes,
    unlinks and binds its socket again: datagrams sent meanwhile are refused, find no socket, or are lost."""
    ready = base_dir / "ready"
    run = start(["sh", "-c", f"trap '' QUIT; touch {ready}; exec sleep 1000"], debug=True)
    pid = run.wait_running()
    wait_for(ready.exists, "the child to ignore SIGQUIT")
    before = run.socket_inodes()
    refused = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        for _ in range(20):
            try:
                sock.sendto(b"QUIT", str(run.sock))
            except (FileNotFoundError, ConnectionRefusedError):
                refused += 1
    if run.impl.ours:
        assert refused == 0
        wait_for(lambda: run.log_count("received QUIT") == 20, "all 20 QUITs to be read")
        assert run.socket_inodes() == before
    else:
        wait_for(lambda: run.listening_socket() not in (None, *before), "the Go container-run to listen again")
        # Each QUIT it reads is one debug line; what it did not read is gone.
        assert run.log_count("Received QUIT command") + refused < 20
    assert run.endpoint.read_pid() == pid
