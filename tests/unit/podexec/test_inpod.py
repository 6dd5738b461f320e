"""The in-pod script run with real shells and real tools against real unix datagram sockets."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from harness.testing import missing
from processcontrol.podexec.script import Action, ScriptReport, SocketReport

from .conftest import (
    Listener,
    Pod,
    answering,
    converse,
    make_stale_socket,
    run_script,
    script_argv,
    tool_path,
    toolbox,
)

ALL_SHELLS = ["sh", "dash", "bash-posix"]
SEND_TOOLS = ["ncat", "nc", "socat", "python3", "perl"]

FAKE_PROCESSCONTROL = """#!{python}
# Stand-in for `processcontrol send CMD [--] SOCKET...`: records argv, sends, says `refused` like the real one.
import socket, sys
with open({log!r}, "a") as log:
    log.write(repr(sys.argv[1:]) + "\\n")
args = [a for a in sys.argv[1:] if a != "--"]
assert args[0] == "send", args
code = 0
for path in args[2:]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        s.sendto(args[1].encode() + b"\\n", path)
        print("sent    ", path)
    except ConnectionRefusedError:
        print("refused ", path + ": connection refused (stale socket: no containerrun is listening)")
        code = 1
sys.exit(code)
"""


def by_name(sockets: list[SocketReport]) -> dict[tuple[str, str], SocketReport]:
    return {(s.job, s.process): s for s in sockets}


def fake_processcontrol(directory: Path) -> Path:
    python = tool_path("python3")
    directory.mkdir(parents=True, exist_ok=True)
    exe = directory / "processcontrol"
    exe.write_text(FAKE_PROCESSCONTROL.format(python=python, log=str(directory / "calls.log")))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


@pytest.mark.parametrize("shell", ALL_SHELLS)
@pytest.mark.parametrize("action", ["STOP", "START"])
def test_command_reaches_every_socket(pod: Pod, tmp_path: Path, shell: str, action: str) -> None:
    a = pod.listen("pxc-mysql", "galera-agent")
    b = pod.listen("pxc-mysql", "mysql")
    c = pod.listen("cloud_controller_ng", "cloud_controller_ng")
    pod.pid_file("pxc-mysql", "mysql", "1234\n")
    run = run_script(pod.base, action, path=toolbox(tmp_path / "bin", ["ncat"]), shell=shell)
    assert run.returncode == 0, run.stderr
    report = run.report
    assert report.tool == "ncat"
    assert report.error is None
    assert len(report.sockets) == 3
    for listener in (a, b, c):
        assert listener.wait_for(1) == [f"{action}\n".encode()]
    sockets = by_name(report.sockets)
    assert {s.result for s in sockets.values()} == {"sent"}
    assert sockets["pxc-mysql", "mysql"].pid == 1234
    assert sockets["pxc-mysql", "galera-agent"].pid is None
    assert sockets["cloud_controller_ng", "cloud_controller_ng"].job == "cloud_controller_ng"


def live_and_stale(
    pod: Pod, tmp_path: Path, tool: str, action: str
) -> tuple[Listener, dict[tuple[str, str], SocketReport]]:
    """`job/live` listening and `job/stale` left behind, the script run with `tool` as its only sender: the live
    socket's listener and the report by socket."""
    live = pod.listen("job", "live")
    make_stale_socket(pod.base, "job", "stale")
    run = run_script(pod.base, action, path=toolbox(tmp_path / "bin", [tool]))
    assert run.returncode == 0, run.stderr
    assert run.report.tool == tool
    return live, by_name(run.report.sockets)


@pytest.mark.parametrize("tool", SEND_TOOLS)
def test_each_tool_sends_and_reports_refusal(pod: Pod, tmp_path: Path, tool: str) -> None:
    live, sockets = live_and_stale(pod, tmp_path, tool, "STOP")
    assert live.wait_for(1) == [b"STOP\n"]
    assert sockets["job", "live"].result == "sent"
    assert sockets["job", "stale"].result == "refused"


@pytest.mark.parametrize("tool", SEND_TOOLS)
def test_each_tool_status_probes_without_sending(pod: Pod, tmp_path: Path, tool: str) -> None:
    live, sockets = live_and_stale(pod, tmp_path, tool, "STATUS")
    assert sockets["job", "live"].result == "probed"
    assert sockets["job", "live"].running is True
    assert sockets["job", "stale"].result == "stale"
    assert sockets["job", "stale"].running is False
    # The script has exited: anything it sent is queued at the socket already.
    assert live.received_so_far() == []  # a probe is a connect(), never a datagram


def test_processcontrol_interpreter_is_preferred_to_per_socket_tools(pod: Pod, tmp_path: Path) -> None:
    """One Python for every socket (its interpreter, -I -S: no imports of ours), not one ncat per socket.

    `processcontrol send` itself is never run: its imports cost ~140 ms, its interpreter alone ~40 ms.
    """
    live = pod.listen("job", "live")
    make_stale_socket(pod.base, "job", "stale")
    bin_dir = toolbox(tmp_path / "bin", ["ncat", "nc", "socat"])
    fake_processcontrol(bin_dir)
    run = run_script(pod.base, "START", path=bin_dir)
    assert run.returncode == 0, run.stderr
    report = run.report
    assert report.tool == "processcontrol-python"
    assert live.wait_for(1) == [b"START\n"]
    sockets = by_name(report.sockets)
    assert sockets["job", "live"].result == "sent"
    assert sockets["job", "stale"].result == "refused"
    assert not (bin_dir / "calls.log").exists()


def test_status_with_only_processcontrol_uses_its_interpreter(pod: Pod, tmp_path: Path) -> None:
    pod.listen("job", "live")
    make_stale_socket(pod.base, "job", "stale")
    bin_dir = tmp_path / "bin"
    fake_processcontrol(bin_dir)
    report = run_script(pod.base, "STATUS", path=bin_dir).report
    assert report.tool == "processcontrol-python"
    sockets = by_name(report.sockets)
    assert sockets["job", "live"].result == "probed"
    assert sockets["job", "stale"].result == "stale"


def test_tool_order(pod: Pod, tmp_path: Path) -> None:
    pod.listen("job", "p")
    # Batch senders (one process for all sockets) first, then the per-socket ones.
    order = ["perl", "python3", "ncat", "nc", "socat"]
    for i, expected in enumerate(order):
        bin_dir = toolbox(tmp_path / f"bin{i}", order[i:])
        assert run_script(pod.base, "STATUS", path=bin_dir).report.tool == expected


def test_nc_without_unix_socket_support_is_skipped(pod: Pod, tmp_path: Path) -> None:
    """A busybox/traditional nc cannot do `-U`: the script must fall through to the next tool, not fail."""
    pod.listen("job", "p")
    bin_dir = toolbox(tmp_path / "bin", ["perl"])
    fake_nc = bin_dir / "nc"
    fake_nc.write_text("#!/bin/sh\necho 'BusyBox v1.36 usage: nc [OPTIONS] HOST PORT' >&2\nexit 1\n")
    fake_nc.chmod(0o755)
    run = run_script(pod.base, "STOP", path=bin_dir)
    assert run.report.tool == "perl"
    assert run.report.sockets[0].result == "sent"


def test_nc_that_is_ncat(pod: Pod, tmp_path: Path) -> None:
    """On RHEL-like images /usr/bin/nc is Ncat: it gets Ncat's flags."""
    live = pod.listen("job", "p")
    ncat = tool_path("ncat")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "nc").symlink_to(ncat)
    run = run_script(pod.base, "STOP", path=bin_dir)
    assert run.report.tool == "nc"
    assert run.report.sockets[0].result == "sent"
    assert live.wait_for(1) == [b"STOP\n"]


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_no_sender_tool(pod: Pod, tmp_path: Path, shell: str) -> None:
    listener = pod.listen("job", "p")
    empty = tmp_path / "empty"
    empty.mkdir()
    run = run_script(pod.base, "STOP", path=empty, shell=shell)
    assert run.returncode == 3
    # The look needs no tool (nothing is probed, the socket is reported as it is); the go-ahead does.
    assert run.stdout == (
        "PCTL1\ttool\tnone\nPCTL1\tsocket\tjob\tp\tprobed\t1\t-\t1\nPCTL1\tready\t1\n"
        "PCTL1\tgo\tSTOP\t1\nPCTL1\terror\tno-sender-tool\tperl,python3,processcontrol,ncat,nc,socat\nPCTL1\tend\t0\n"
    )
    assert run.look.tool is None
    assert run.look.error is None
    report = run.report
    assert report.error == "no-sender-tool"
    assert report.error_detail == "perl,python3,processcontrol,ncat,nc,socat"
    assert report.sockets == []
    assert listener.received_so_far() == []


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_a_go_ahead_naming_nothing_needs_no_sender_tool(pod: Pod, tmp_path: Path, shell: str) -> None:
    """Nothing to send (every socket filtered out, or none named): no tool is missing."""
    listener = pod.listen("job", "p")
    empty = tmp_path / "empty"
    empty.mkdir()
    run = run_script(pod.base, "STOP", path=empty, shell=shell, pairs=[])
    assert run.returncode == 0, run.stderr
    assert run.report == ScriptReport(sockets=[], tool=None)
    assert [(s.job, s.process) for s in run.look.sockets] == [("job", "p")]
    assert listener.received_so_far() == []


def test_status_without_any_tool_still_reports(pod: Pod, tmp_path: Path) -> None:
    pod.listen("job", "p")
    pod.pid_file("job", "p", "77")
    empty = tmp_path / "empty"
    empty.mkdir()
    run = run_script(pod.base, "STATUS", path=empty)
    assert run.returncode == 0
    report = run.report
    assert report.tool is None
    assert report.sockets == [
        SocketReport(job="job", process="p", result="probed", running=True, pid=77, was_running=True)
    ]


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_missing_base_dir(tmp_path: Path, shell: str) -> None:
    run = run_script(tmp_path / "nothing", "STOP", path=toolbox(tmp_path / "bin", ["ncat"]), shell=shell)
    assert run.returncode == 4
    report = run.report
    assert report.error == "no-base-dir"
    assert report.error_detail == str(tmp_path / "nothing" / "data")


def test_zero_sockets_is_not_an_error(pod: Pod, tmp_path: Path) -> None:
    (pod.base / "data" / "job").mkdir()
    (pod.base / "data" / "job" / "p_containerrun.sock").write_text("not a socket")
    empty = tmp_path / "empty"
    empty.mkdir()
    for path, tool in ((toolbox(tmp_path / "bin", ["ncat"]), "ncat"), (empty, None)):
        run = run_script(pod.base, "STOP", path=path)
        assert run.returncode == 0, run.stderr
        assert run.report.sockets == []
        assert run.report.tool == tool


def test_default_base_dir_is_var_vcap(tmp_path: Path) -> None:
    if os.path.isdir("/var/vcap/data"):
        missing("this machine has a /var/vcap/data")
    run = run_script(tmp_path, "STATUS", path=tmp_path, extra_env={"CONTAINERRUN_BASE_DIR": ""})
    assert run.report.error_detail == "/var/vcap/data"


@pytest.mark.parametrize(
    ("jobs", "processes", "expected"),
    [
        ([], [], {("a", "x"), ("a", "y"), ("b", "x"), ("b", "z")}),
        (["a"], [], {("a", "x"), ("a", "y")}),
        ([], ["x"], {("a", "x"), ("b", "x")}),
        (["a", "b"], ["x", "z"], {("a", "x"), ("b", "x"), ("b", "z")}),
        (["b"], ["y"], set()),
        (["nope"], [], set()),
        (["a*"], [], set()),  # no globbing
        (["[ab]"], [], set()),
        (["."], [], set()),
    ],
)
def test_filters(
    pod: Pod, tmp_path: Path, jobs: list[str], processes: list[str], expected: set[tuple[str, str]]
) -> None:
    for job, process in (("a", "x"), ("a", "y"), ("b", "x"), ("b", "z")):
        pod.listen(job, process)
    bin_dir = toolbox(tmp_path / "bin", ["nc"])
    run = run_script(pod.base, "STOP", jobs, processes, path=bin_dir)
    assert run.returncode == 0, run.stderr
    assert {(s.job, s.process) for s in run.report.sockets} == expected
    for (job, process), listener in pod.listeners.items():
        assert listener.wait_for(1, timeout=5 if (job, process) in expected else 0.1) == (
            [b"STOP\n"] if (job, process) in expected else []
        )


HOSTILE = [
    "$(touch pwned)",
    "`touch pwned`",
    "a;touch pwned",
    "a|touch pwned",
    "a && touch pwned",
    "-rf",
    "--",
    "*",
    "$IFS",
    "'\"",
    "!",
    "(",
    "=",
    "a\\",
]


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_hostile_filter_values_are_never_code(pod: Pod, tmp_path: Path, shell: str) -> None:
    listener = pod.listen("a", "x")
    bin_dir = toolbox(tmp_path / "bin", ["socat"])
    for value in HOSTILE:
        for jobs, processes in (([value], []), ([], [value]), ([value, "a"], [value, "x"])):
            run = run_script(pod.base, "STATUS", jobs, processes, path=bin_dir, shell=shell, cwd=tmp_path)
            assert run.returncode == 0, (value, run.stderr)
            names = {(s.job, s.process) for s in run.report.sockets}
            assert names == ({("a", "x")} if "a" in jobs else set()), value
    assert not (tmp_path / "pwned").exists()
    assert not (pod.base / "data" / "pwned").exists()
    assert listener.received == []


@pytest.mark.parametrize("shell", ALL_SHELLS)
def test_hostile_names_on_disk_are_never_code(pod: Pod, tmp_path: Path, shell: str) -> None:
    names = ["$(touch pwned)", "`touch pwned`", "a;touch pwned", "-rf", "--", "*", "a b", "x$IFS"]
    listeners = [pod.listen(name, name) for name in names]
    bin_dir = toolbox(tmp_path / "bin", ["nc"])
    run = run_script(pod.base, "STOP", path=bin_dir, shell=shell, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert {(s.job, s.process) for s in run.report.sockets} == {(n, n) for n in names}
    assert {s.result for s in run.report.sockets} == {"sent"}
    for listener in listeners:
        assert listener.wait_for(1) == [b"STOP\n"]
    run = run_script(pod.base, "START", ["-rf"], ["-rf"], path=bin_dir, shell=shell, cwd=tmp_path)
    assert [(s.job, s.process) for s in run.report.sockets] == [("-rf", "-rf")]
    assert not (tmp_path / "pwned").exists()
    assert not list(pod.base.rglob("pwned"))


@pytest.mark.parametrize("tool", SEND_TOOLS)
def test_names_with_address_syntax_of_a_tool_are_plain_paths(pod: Pod, tmp_path: Path, tool: str) -> None:
    # socat parses ':' ',' '!!' quotes, brackets and backslashes in its address argument (found by the e2e
    # hostile-input scenario: a socket named with a quote was `failed` with socat and `sent` with every other tool).
    names = ["a:b", "c,d", "q'uote", 'd"q', "b\\s", "x!!y", "(p)[q]{r}", "s p"]
    listeners = [pod.listen(name, name) for name in names]
    bin_dir = toolbox(tmp_path / "bin", [tool])
    run = run_script(pod.base, "STATUS", path=bin_dir)
    assert {s.result for s in run.report.sockets} == {"probed"}, run.stdout + run.stderr
    run = run_script(pod.base, "STOP", path=bin_dir)
    assert {(s.job, s.process): s.result for s in run.report.sockets} == {(n, n): "sent" for n in names}, run.stderr
    for listener in listeners:
        assert listener.wait_for(1) == [b"STOP\n"], listener.job


def test_names_with_tabs_or_newlines_are_skipped(pod: Pod, tmp_path: Path) -> None:
    pod.listen("ok", "p")
    pod.listen("bad\tjob", "p")
    pod.listen("job", "bad\nproc")
    run = run_script(pod.base, "STATUS", path=toolbox(tmp_path / "bin", ["nc"]))
    assert [(s.job, s.process) for s in run.report.sockets] == [("ok", "p")]


@pytest.mark.parametrize(
    ("content", "pid"),
    [("1234\n", 1234), ("  99 \r\n", 99), ("42", 42), ("", None), ("abc\n", None), ("12 34\n", None)],
)
def test_pid_file(pod: Pod, tmp_path: Path, content: str, pid: int | None) -> None:
    pod.listen("job", "p")
    pod.pid_file("job", "p", content)
    run = run_script(pod.base, "STATUS", path=tmp_path)
    assert run.report.sockets[0].pid == pid


def test_running_reflects_sentinel_after_send(pod: Pod, tmp_path: Path) -> None:
    """The fake listener removes the sentinel on STOP; the running flag is read after the send."""
    a = pod.listen("job", "p")
    bin_dir = toolbox(tmp_path / "bin", ["python3"])
    run_script(pod.base, "STOP", path=bin_dir)
    a.wait_for(1)
    report = run_script(pod.base, "STATUS", path=bin_dir).report
    assert report.sockets[0].running is False
    run_script(pod.base, "START", path=bin_dir)
    a.wait_for(2)
    assert run_script(pod.base, "STATUS", path=bin_dir).report.sockets[0].running is True


@pytest.mark.parametrize(("wait_ms", "window_ms"), [("x", "5000"), ("-1", "5000"), ("0", "1.5"), ("", "")])
def test_bad_numbers_are_a_usage_error(pod: Pod, tmp_path: Path, wait_ms: str, window_ms: str) -> None:
    listener = pod.listen("job", "p")
    argv = script_argv()
    argv[-3:-1] = [wait_ms, window_ms]  # ... JOBS PROCESSES WAIT_MS WINDOW_MS ONLY
    env = {"PATH": str(toolbox(tmp_path / "bin", ["perl"])), "CONTAINERRUN_BASE_DIR": str(pod.base)}
    done = subprocess.run(argv, env=env, input=b"STOP\t1\tjob/p\n", capture_output=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stdout == b""
    assert b"usage" in done.stderr
    assert listener.received_so_far() == []


@pytest.mark.parametrize("tool", SEND_TOOLS)
def test_many_sockets(pod: Pod, tmp_path: Path, tool: str) -> None:
    listeners = [pod.listen("job", f"p{i}") for i in range(12)]
    run = run_script(pod.base, "STOP", path=toolbox(tmp_path / "bin", [tool]))
    assert run.returncode == 0, run.stderr
    assert len(run.report.sockets) == 12
    assert {s.result for s in run.report.sockets} == {"sent"}
    for listener in listeners:
        assert listener.wait_for(1) == [b"STOP\n"]


BARRIER_NCAT = """#!{python}
# Fake ncat: registers itself, then waits until every socket's sender is running at the same time.
import os, socket, sys, time
os.close(os.open(os.path.join({gate!r}, str(os.getpid())), os.O_CREAT | os.O_WRONLY))
deadline = time.monotonic() + 20
while len(os.listdir({gate!r})) < {count}:
    if time.monotonic() > deadline:
        sys.exit("not parallel")
    time.sleep(0.01)
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(sys.stdin.buffer.read(), sys.argv[-1])
"""


def test_sockets_are_sent_in_parallel(pod: Pod, tmp_path: Path) -> None:
    """Each socket gets its own background job: a sender that only proceeds once all are running succeeds."""
    python = tool_path("python3")
    count = 8
    listeners = [pod.listen("job", f"p{i}") for i in range(count)]
    gate = tmp_path / "gate"
    gate.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ncat"
    fake.write_text(BARRIER_NCAT.format(python=python, gate=str(gate), count=count))
    fake.chmod(0o755)
    run = run_script(pod.base, "STOP", path=bin_dir)
    assert run.returncode == 0, run.stderr
    assert {s.result for s in run.report.sockets} == {"sent"}, run.stdout
    for listener in listeners:
        assert listener.wait_for(1) == [b"STOP\n"]


def test_read_only_tmp_skips_ncat_and_nc(tmp_path: Path) -> None:
    """ncat and OpenBSD nc bind a reply socket in /tmp: with a read-only /tmp the script must pick another tool."""
    unshare, mount = shutil.which("unshare"), shutil.which("mount")
    if unshare is None or mount is None:
        missing("needs unshare and mount")
    read_only_tmp = [unshare, "-m", "/bin/sh", "-c", f'{mount} -t tmpfs -o ro tmpfs /tmp && exec "$@"', "unshare"]
    probe = subprocess.run([*read_only_tmp, "/bin/sh", "-c", "! [ -w /tmp ]"], capture_output=True, check=False)
    if probe.returncode != 0:
        missing("cannot mount a read-only /tmp in a private mount namespace here")
    base = Path(tempfile.mkdtemp(prefix="pc-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None))
    pod = Pod(base / "vcap")
    try:
        live = pod.listen("job", "p")
        bin_dir = toolbox(Path(tempfile.mkdtemp(dir=base)), ["ncat", "nc", "perl"])
        command = [*read_only_tmp, *script_argv(shell="sh")]
        env = {"PATH": str(bin_dir), "CONTAINERRUN_BASE_DIR": str(pod.base)}

        done = converse(command, env, answering(Action.STOP))
        assert done.returncode == 0, done.stderr
        report = done.report
        assert report.tool == "perl"
        assert [s.result for s in report.sockets] == ["sent"]
        assert live.wait_for(1) == [b"STOP\n"]

        (bin_dir / "perl").unlink()
        done = converse(command, env, answering(Action.STOP))
        assert done.returncode == 3
        assert done.report.error == "no-sender-tool"
        assert "/tmp is not writable" in done.stderr
    finally:
        pod.close()
        shutil.rmtree(base, ignore_errors=True)
