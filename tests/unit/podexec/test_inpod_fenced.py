"""The fenced protocol with real shells and real containerrun processes: the script looks, then sends only on a
go-ahead line on its stdin that names reported sockets and comes within its window; anything else sends nothing,
and a stream nobody answers ends by itself, leaving nothing behind."""

from __future__ import annotations

import os
import stat
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from processcontrol.exceptions import ScriptOutputError
from processcontrol.podexec.script import Action, Idle, go_ahead, parse_output

from .conftest import (
    Containerrun,
    Pod,
    Run,
    Session,
    answering,
    converse,
    run_script,
    script_argv,
    toolbox,
)

Start = Callable[[str, str], Containerrun]
ALL_SHELLS = ["sh", "dash", "bash-posix"]
MARKER = "PROCESSCONTROL_TEST_MARKER"
IDLE_END = "PCTL1\tidle\t{}\nPCTL1\tend\t0\n"


def bin_dir(directory: Path, *, sleep: bool = True) -> Path:
    """perl (the sender) and, as images have it, `sleep` (the watchdog's)."""
    toolbox(directory, ["perl"])
    if sleep:
        (directory / "sleep").symlink_to("/bin/sleep")
    return directory


def env_for(pod: Pod, path: Path, marker: str | None = None, **extra: str) -> dict[str, str]:
    env = {"PATH": str(path), "CONTAINERRUN_BASE_DIR": str(pod.base), **extra}
    if marker is not None:
        env[MARKER] = marker
    return env


def survivors(marker: str, settle_s: float = 2.0) -> list[str]:
    """Live processes whose environment carries `marker`: what is left of a script run with it (anything it
    started inherits it). Zombies have no environment left and are not counted: they are gone, only not yet
    reaped by whoever inherited them. Polled up to `settle_s`: a process on its way out gets that long."""
    needle = f"{MARKER}={marker}".encode()
    deadline = time.monotonic() + settle_s
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if needle not in (entry / "environ").read_bytes().split(b"\0"):
                    continue
                found.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:100])
            except OSError:  # gone meanwhile, or not ours to read
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def assert_untouched(runner: Containerrun, pid: int | None, for_s: float = 0.3) -> None:
    """Nothing was sent: containerrun still runs its process, the same one, for a while yet (a STOP just sent
    would take the sentinel away within milliseconds)."""
    assert pid is not None
    deadline = time.monotonic() + for_s
    while True:
        assert runner.proc.poll() is None
        assert runner.sentinel.exists(), f"{runner.job}/{runner.process} was stopped"
        assert runner.pid() == pid
        os.kill(pid, 0)  # the supervised process itself is alive
        if time.monotonic() > deadline:
            return
        time.sleep(0.02)


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_without_a_go_ahead_nothing_is_sent(pod: Pod, containerruns: Start, tmp_path: Path, shell: str) -> None:
    """stdin at EOF (an exec without a dialogue, a stream closed before any line): the look, then nothing."""
    runner = containerruns("j", "a")
    listener = pod.listen("j", "listener")
    pid = runner.pid()
    path = bin_dir(tmp_path / "bin")
    at_eof = run_script(pod.base, "STATUS", path=path, shell=shell)  # stdin is /dev/null
    with Session(script_argv(shell=shell), env_for(pod, path)) as session:
        session.close_stdin()  # a pipe closed without a line
        closed = session.finish(30)
    for run in (at_eof, closed):
        assert run.returncode == 0, run.stderr
        assert run.stdout.endswith("PCTL1\tready\t2\n" + IDLE_END.format("eof")), run.stdout
        outcome = run.outcome
        assert (outcome.idle, outcome.action, outcome.seq, outcome.acted) == (Idle.EOF, None, None, None)
        assert {(s.job, s.process, s.result, s.running) for s in outcome.look.sockets} == {
            ("j", "a", "probed", True),
            ("j", "listener", "probed", True),
        }
    assert listener.received_so_far() == []
    assert_untouched(runner, pid)


INVALID = [
    pytest.param("\n", Idle.EOF, id="empty-line"),
    pytest.param("STOP\t1\tj/p", Idle.EOF, id="no-newline"),  # a truncated line: the stream ended inside it
    pytest.param("QUIT\t1\tj/p\n", Idle.INVALID, id="unknown-action"),
    pytest.param("STATUS\t1\tj/p\n", Idle.INVALID, id="status"),
    pytest.param("stop\t1\tj/p\n", Idle.INVALID, id="lower-case"),
    pytest.param("STOP\tx\tj/p\n", Idle.INVALID, id="seq-not-a-number"),
    pytest.param("STOP\t-1\tj/p\n", Idle.INVALID, id="seq-negative"),
    pytest.param("STOP\t1.5\tj/p\n", Idle.INVALID, id="seq-fraction"),
    pytest.param("STOP\t$(echo 1)\tj/p\n", Idle.INVALID, id="seq-code"),
    pytest.param("STOP\n", Idle.INVALID, id="no-seq"),
    pytest.param("STOP 1 j/p\n", Idle.INVALID, id="spaces-not-tabs"),
    pytest.param("eof\n", Idle.EOF, id="the-word-eof"),
]


@pytest.mark.parametrize("shell", ALL_SHELLS)
@pytest.mark.parametrize(("line", "why"), INVALID)
def test_an_invalid_go_ahead_sends_nothing(pod: Pod, tmp_path: Path, shell: str, line: str, why: Idle) -> None:
    listener = pod.listen("j", "p")
    with Session(script_argv(shell=shell), env_for(pod, bin_dir(tmp_path / "bin"))) as session:
        assert session.wait_ready() is not None
        session.write(line)
        session.close_stdin()
        run = session.finish(30)
    assert run.returncode == 0, run.stderr
    assert run.stdout.endswith("PCTL1\tready\t1\n" + IDLE_END.format(why)), run.stdout
    outcome = run.outcome
    assert (outcome.idle, outcome.action, outcome.acted) == (why, None, None)
    assert listener.received_so_far() == []


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_a_go_ahead_reaches_only_reported_sockets(pod: Pod, tmp_path: Path, shell: str) -> None:
    """The pairs are what to send to among the sockets the look reported: a pair the filters or `only` kept out of
    the look, or one that does not exist, gets nothing."""
    listeners = {pair: pod.listen(*pair) for pair in [("j", "p"), ("j", "q"), ("other", "x")]}
    pairs = [("j", "q"), ("other", "x"), ("nope", "nope"), ("j", "p")]
    path = bin_dir(tmp_path / "bin")
    run = run_script(pod.base, "STOP", ["j"], path=path, shell=shell, only=[("j", "p")], pairs=pairs)
    assert run.returncode == 0, run.stderr
    assert [(s.job, s.process) for s in run.look.sockets] == [("j", "p")]
    assert [(s.job, s.process, s.result) for s in run.report.sockets] == [("j", "p", "sent")]
    assert listeners["j", "p"].wait_for(1) == [b"STOP\n"]
    assert listeners["j", "q"].received_so_far() == []
    assert listeners["other", "x"].received_so_far() == []

    # A go-ahead naming only sockets the look did not report: acted on (the go line), sent to none.
    run = run_script(pod.base, "START", ["j"], path=path, shell=shell, only=[("j", "p")], pairs=pairs[:3])
    assert run.returncode == 0, run.stderr
    assert run.report.sockets == []
    assert run.outcome.action == Action.START
    assert [listener.received_so_far() for listener in listeners.values()] == [[b"STOP\n"], [], []]


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_go_ahead_pairs_are_plain_strings(pod: Pod, tmp_path: Path, shell: str) -> None:
    """A pair is compared as a string: `*/*` names the socket called `*` of the job called `*`, not every socket;
    names that are shell code stay data."""
    names = [("a", "x"), ("*", "*"), ("j", "[p]"), ("j", "p"), ("$(touch pwned)", "`touch pwned`"), ("j", "*")]
    listeners = {pair: pod.listen(*pair) for pair in names}
    named = [("*", "*"), ("j", "[p]"), ("$(touch pwned)", "`touch pwned`"), ("?", "?"), ("a", "?")]
    run = run_script(pod.base, "STOP", path=bin_dir(tmp_path / "bin"), shell=shell, cwd=tmp_path, pairs=named)
    assert run.returncode == 0, run.stderr
    assert {(s.job, s.process) for s in run.report.sockets} == set(named[:3])
    assert {s.result for s in run.report.sockets} == {"sent"}
    for pair, listener in listeners.items():
        assert listener.received_so_far() == ([b"STOP\n"] if pair in named else []), pair
    assert not (tmp_path / "pwned").exists()
    assert not list(pod.base.rglob("pwned"))


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_only_the_named_process_is_acted_on(pod: Pod, containerruns: Start, tmp_path: Path, shell: str) -> None:
    """Two containerrun processes in the look; the go-ahead names one: it stops (waited for in the pod), the other
    keeps running, the same process; then it starts again."""
    a, b = containerruns("j", "a"), containerruns("j", "b")
    pid_b = b.pid()
    path = bin_dir(tmp_path / "bin")
    run = run_script(pod.base, "STOP", path=path, shell=shell, wait_s=10, pairs=[("j", "a")], seq=41)
    assert run.returncode == 0, run.stderr
    looked = [(s.process, s.result, s.running) for s in run.look.sockets]
    assert looked == [("a", "probed", True), ("b", "probed", True)]
    assert [(s.job, s.process, s.result, s.was_running, s.running) for s in run.report.sockets] == [
        ("j", "a", "sent", True, False)
    ]
    assert not a.sentinel.exists()
    assert_untouched(b, pid_b)

    run = run_script(pod.base, "START", path=path, shell=shell, wait_s=10, pairs=[("j", "a")], seq=42)
    assert [(s.process, s.result, s.was_running, s.running) for s in run.report.sockets] == [("a", "sent", False, True)]
    assert a.sentinel.exists()
    assert_untouched(b, pid_b)


@pytest.mark.parametrize("shell", ALL_SHELLS)
@pytest.mark.parametrize(("action", "seq"), [(Action.START, 0), (Action.STOP, 2**64)])
def test_the_go_line_echoes_the_go_ahead(pod: Pod, tmp_path: Path, shell: str, action: Action, seq: int) -> None:
    """First after the look: `go ACTION SEQ` as written, a seq of any size (it is compared as digits, never
    computed with)."""
    listener = pod.listen("j", "p")
    run = run_script(pod.base, str(action), path=bin_dir(tmp_path / "bin"), shell=shell, seq=seq)
    assert f"PCTL1\tready\t1\nPCTL1\tgo\t{action}\t{seq}\nPCTL1\ttool\tperl\n" in run.stdout, run.stdout
    assert (run.outcome.action, run.outcome.seq) == (action, seq)
    assert listener.wait_for(1) == [f"{action}\n".encode()]


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_only_one_line_is_read(pod: Pod, tmp_path: Path, shell: str) -> None:
    """One go-ahead per exec: a second line is never read (here both are in the pipe before the look is done)."""
    listener = pod.listen("j", "p")
    env = env_for(pod, bin_dir(tmp_path / "bin"))
    with Session(script_argv(shell=shell), env) as session:
        session.write(go_ahead(Action.STOP, 1, [("j", "p")]) + go_ahead(Action.START, 2, [("j", "p")]))
        session.close_stdin()
        run = session.finish(30)
    assert run.returncode == 0, run.stderr
    assert (run.outcome.action, run.outcome.seq) == (Action.STOP, 1)
    assert listener.received_so_far() == [b"STOP\n"]


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_a_go_ahead_after_the_window_sends_nothing(pod: Pod, containerruns: Start, tmp_path: Path, shell: str) -> None:
    """Written 1.4 s after the start with a 1 s window: the script's own check says `window` (the watchdog would
    only end it at 2 s) and nothing is sent; the process keeps running."""
    runner = containerruns("j", "p")
    listener = pod.listen("j", "listener")
    pid = runner.pid()
    with Session(script_argv(shell=shell, window_s=1.0), env_for(pod, bin_dir(tmp_path / "bin"))) as session:
        assert session.wait_ready() is not None
        time.sleep(max(0.0, session.started + 1.4 - time.monotonic()))
        session.write(go_ahead(Action.STOP, 1, [("j", "p"), ("j", "listener")]))
        written = time.monotonic() - session.started
        session.close_stdin()
        run = session.finish(30)
    assert run.stdout.endswith("PCTL1\tready\t2\n" + IDLE_END.format("window")), run.stdout
    assert (run.outcome.idle, run.outcome.action, run.outcome.acted) == (Idle.WINDOW, None, None)
    if written < 1.9:  # else the watchdog may have been first (a slow machine): the same outcome, killed
        assert run.returncode == 0, run.stderr
    assert listener.received_so_far() == []
    assert_untouched(runner, pid)


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_an_unanswered_stream_ends_by_itself(pod: Pod, containerruns: Start, tmp_path: Path, shell: str) -> None:
    """stdin stays open and no line comes (an operator that died, a dialogue that hangs): the watchdog ends the
    script once the window is over (rounded up to whole seconds, + 1), saying so, sends nothing, and nothing of
    the script is left: no sh, no watchdog, no `sleep`."""
    runner = containerruns("j", "p")
    pid = runner.pid()
    marker = uuid.uuid4().hex
    window_s = 1.0
    env = env_for(pod, bin_dir(tmp_path / "bin"), marker)
    with Session(script_argv(shell=shell, window_s=window_s), env) as session:
        assert session.wait_ready() is not None
        assert survivors(marker, settle_s=0), "the script and its watchdog run meanwhile"
        run = session.finish(window_s + 10)
        took = time.monotonic() - session.started
        left = survivors(marker)
        assert session.proc.stdin is not None and not session.proc.stdin.closed  # never closed by us
    assert took < window_s + 2, took
    assert run.returncode == -9  # killed by its watchdog
    assert run.stdout.endswith("PCTL1\tready\t1\n" + IDLE_END.format("window")), run.stdout
    assert (run.outcome.idle, run.outcome.action) == (Idle.WINDOW, None)
    assert left == []
    assert_untouched(runner, pid)


@pytest.mark.parametrize("shell", ALL_SHELLS)
@pytest.mark.parametrize("line", ["STOP\t1\n", ""], ids=["go-ahead", "eof"])
def test_the_watchdog_goes_with_the_line(pod: Pod, tmp_path: Path, shell: str, line: str) -> None:
    """Once the line (or EOF) is read, the watchdog and its `sleep` are gone: a 30 s window leaves no 31 s sleep in
    the pod for every exec, holding its stdout open (the exec would end only with it). Many runs, each with its
    line in the pipe from the start and a look of a few ms: the line comes while the watchdog is being set up,
    where its sleep used to escape (between fork and exec it still had the watchdog's trap, and took the TERM)."""
    pod.listen("j", "p")
    path = bin_dir(tmp_path / "bin")
    for _ in range(50):
        marker = uuid.uuid4().hex
        with Session(script_argv(shell=shell, window_s=30), env_for(pod, path, marker)) as session:
            session.write(line)
            session.close_stdin()
            run = session.finish(10)  # fails when anything still holds its stdout or stderr
            assert run.returncode == 0, run.stderr
            assert run.stdout.endswith("PCTL1\tend\t0\n"), run.stdout
            assert survivors(marker, settle_s=0.5) == []


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_a_fifo_does_not_block_the_look(pod: Pod, tmp_path: Path, shell: str) -> None:
    """A FIFO where the pid file is (or a link to one), or where a socket would be: the script reads none of
    them (opening a FIFO blocks until a writer comes, here never)."""
    pod.listen("j", "p")
    pod.listen("j", "q")
    pid_dir = pod.base / "sys" / "run" / "bpm" / "j"
    pid_dir.mkdir(parents=True)
    os.mkfifo(pid_dir / "p.pid")
    os.mkfifo(tmp_path / "fifo")
    (pid_dir / "q.pid").symlink_to(tmp_path / "fifo")
    os.mkfifo(pod.base / "data" / "j" / "f_containerrun.sock")
    path = bin_dir(tmp_path / "bin")
    for action in ("STATUS", "STOP"):
        run = run_script(pod.base, action, path=path, shell=shell, timeout=20)
        assert run.returncode == 0, run.stderr
        assert [(s.process, s.pid) for s in run.report.sockets] == [("p", None), ("q", None)]
        assert [(s.process, s.pid) for s in run.look.sockets] == [("p", None), ("q", None)]
    assert stat.S_ISFIFO((pid_dir / "p.pid").stat().st_mode)


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_variables_of_the_container_environment_stay_out(pod: Pod, tmp_path: Path, shell: str) -> None:
    """exec runs the script with the container's environment: a variable there named like one of the script's
    own (here every one it uses) changes nothing."""
    pod.listen("j", "running")
    stopped = pod.listen("j", "stopped")
    path = bin_dir(tmp_path / "bin")

    def runs(env: dict[str, str]) -> list[Run]:
        stopped.sentinel.unlink(missing_ok=True)  # the START of the last round started it
        return [
            run_script(pod.base, action, path=path, shell=shell, wait_s=5, pairs=[("j", "stopped")], extra_env=env)
            for action in ("STATUS", "START")
        ]

    clean = runs({})
    # Shaped like the script's own lists (a socket line after its sentinel flag), and one a name of each it uses.
    junk = f"1{pod.base}/data/j/running_containerrun.sock\n0{pod.base}/data/j/x_containerrun.sock\n"
    names = "a c d E f G g i j k m n o p P pc pl q Q r R s S t u v w x zf _c _e _f _i _l _o _p _r _x"
    dirty = runs({name: junk for name in names.split()})
    assert [r.outcome for r in dirty] == [r.outcome for r in clean]
    assert [r.returncode for r in dirty] == [0, 0]


def test_a_go_ahead_after_the_window_sends_nothing_without_sleep(pod: Pod, tmp_path: Path) -> None:
    """An image without `sleep` has no watchdog (it says so on stderr), but the window holds: the script checks
    the line's time itself (/proc/uptime)."""
    listener = pod.listen("j", "p")
    env = env_for(pod, bin_dir(tmp_path / "bin", sleep=False))
    with Session(script_argv(shell="dash", window_s=0.5), env) as session:
        assert session.wait_ready() is not None
        time.sleep(max(0.0, session.started + 0.9 - time.monotonic()))
        session.write(go_ahead(Action.STOP, 1, [("j", "p")]))
        session.close_stdin()
        run = session.finish(30)
    assert run.returncode == 0, run.stderr
    assert run.outcome.idle == Idle.WINDOW
    assert listener.received_so_far() == []


SLOW_PROBER = """#!/bin/sh
exec sleep 5 </dev/null >/dev/null 2>&1
"""


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_a_look_slower_than_its_window_is_no_look(pod: Pod, tmp_path: Path, shell: str) -> None:
    """A look that hangs (its prober, here, for a stopped socket): the watchdog ends the script at the window's end,
    before the ready line; what it printed by then is an error, not a look with no sockets."""
    stopped = pod.listen("j", "p")
    stopped.sentinel.unlink()  # so the look probes it
    path = tmp_path / "bin"
    path.mkdir()
    (path / "perl").write_text(SLOW_PROBER)
    (path / "perl").chmod(0o755)
    (path / "sleep").symlink_to("/bin/sleep")
    run = converse(script_argv(shell=shell, window_s=1.0), env_for(pod, path), answering(Action.STOP), timeout=20)
    assert run.go is None  # never asked: no ready line
    assert run.returncode == -9
    assert run.stdout == "PCTL1\ttool\tperl\n" + IDLE_END.format("window"), run.stdout
    with pytest.raises(ScriptOutputError, match="before its look was complete"):
        parse_output(run.stdout)
    assert stopped.received_so_far() == []
