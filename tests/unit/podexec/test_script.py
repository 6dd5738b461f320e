"""The command line that runs the in-pod script and the parser of its output."""

from __future__ import annotations

import pytest

from processcontrol.exceptions import ProcessControlError, ScriptOutputError
from processcontrol.podexec.script import (
    COMPACT_SCRIPT,
    SCRIPT,
    Action,
    ScriptReport,
    SocketReport,
    build_command,
    compact,
    parse_output,
)


def test_script_is_the_packaged_file() -> None:
    assert SCRIPT.startswith("# processcontrol in-pod script")
    assert "PCTL1" in SCRIPT


def test_compact_drops_comments_blank_lines_and_tabs_only() -> None:
    source = "# header\n\nif x; then\n\t# why\n\techo 'a\t#b'\n  keep two spaces\nfi\n"
    assert compact(source) == "if x; then\necho 'a\t#b'\n  keep two spaces\nfi\n"
    assert compact(SCRIPT) == COMPACT_SCRIPT
    assert "\n#" not in COMPACT_SCRIPT
    assert "\n\t" not in COMPACT_SCRIPT


def test_compact_script_is_small() -> None:
    """It rides in the exec URL of every exec (audit logs, proxies' header limits): issue 14 item 3."""
    assert len(COMPACT_SCRIPT.encode()) < 4096
    assert len(SCRIPT) > 2 * len(COMPACT_SCRIPT)  # the comments stay in the source, not on the wire


def test_build_command_passes_values_as_arguments() -> None:
    command = build_command(Action.STOP, ["pxc-mysql", "$(id)"], ["galera-agent"])
    assert command == [
        "sh",
        "-c",
        COMPACT_SCRIPT,
        "processcontrol",
        "STOP",
        "pxc-mysql,$(id)",
        "galera-agent",
        "0",
        "*",
    ]
    assert all(type(part) is str for part in command)


def test_build_command_empty_filters_mean_all() -> None:
    assert build_command(Action.STATUS, [], [])[-5:] == ["STATUS", "", "", "0", "*"]


def test_build_command_only_and_wait() -> None:
    command = build_command(Action.START, ["a"], [], only=[("a", "x"), ("b.1", "y_2-z")], wait_s=2.5)
    assert command[-3:] == ["", "2500", "a/x\nb.1/y_2-z"]
    assert build_command(Action.STOP, [], [], only=[])[-1] == ""
    assert build_command(Action.STOP, [], [], wait_s=0.0004)[-2] == "0"


@pytest.mark.parametrize("pair", [("a/b", "x"), ("", "x"), ("a", "x\ny"), ("a\tb", "x")])
def test_build_command_rejects_names_no_socket_path_reports(pair: tuple[str, str]) -> None:
    with pytest.raises(ValueError, match="cannot select"):
        build_command(Action.STOP, [], [], only=[pair])


def test_build_command_only_carries_any_other_name() -> None:
    hostile = [("$(touch x)", "p"), ("j", "x,y"), ("*", "?"), ("-n", "-e"), ("a b", "'\"&&")]
    assert build_command(Action.START, [], [], only=hostile)[-1].split("\n") == [f"{j}/{p}" for j, p in hostile]


@pytest.mark.parametrize("wait_s", [-1.0, float("nan"), float("inf")])
def test_build_command_rejects_bad_waits(wait_s: float) -> None:
    with pytest.raises(ValueError, match="wait_s"):
        build_command(Action.STOP, [], [], wait_s=wait_s)


def test_parse_full_output() -> None:
    out = (
        "PCTL1\ttool\tnc\n"
        "PCTL1\tsocket\tpxc-mysql\tgalera-agent\tsent\t1\t4242\t1\n"
        "PCTL1\tsocket\tpxc-mysql\tmysql\trefused\t0\t-\t0\n"
        "PCTL1\tsocket\tcloud_controller_ng\tcloud_controller_ng\tfailed\t0\t17\t1\r\n"
        "PCTL1\tend\t3\n"
    )
    assert parse_output(out) == ScriptReport(
        tool="nc",
        # Sorted by job and process, whatever order the script answered in.
        sockets=[
            SocketReport(
                job="cloud_controller_ng",
                process="cloud_controller_ng",
                result="failed",
                running=False,
                pid=17,
                was_running=True,
            ),
            SocketReport(
                job="pxc-mysql", process="galera-agent", result="sent", running=True, pid=4242, was_running=True
            ),
            SocketReport(
                job="pxc-mysql", process="mysql", result="refused", running=False, pid=None, was_running=False
            ),
        ],
    )


def test_parse_status_and_tool_none() -> None:
    out = (
        "PCTL1\ttool\tnone\nPCTL1\tsocket\tj\tp\tprobed\t1\t-\t1\nPCTL1\tsocket\tj\tq\tstale\t0\t-\t0\nPCTL1\tend\t2\n"
    )
    report = parse_output(out)
    assert report.tool is None
    assert [s.result for s in report.sockets] == ["probed", "stale"]


def test_parse_zero_sockets() -> None:
    assert parse_output("PCTL1\ttool\tncat\nPCTL1\tend\t0\n") == ScriptReport(sockets=[], tool="ncat")


@pytest.mark.parametrize(
    ("out", "error", "detail"),
    [
        (
            "PCTL1\terror\tno-sender-tool\tperl,python3,processcontrol,ncat,nc,socat\nPCTL1\tend\t0\n",
            "no-sender-tool",
            "perl,python3,processcontrol,ncat,nc,socat",
        ),
        ("PCTL1\terror\tno-base-dir\t/var/vcap/data\nPCTL1\tend\t0\n", "no-base-dir", "/var/vcap/data"),
    ],
)
def test_parse_errors(out: str, error: str, detail: str) -> None:
    report = parse_output(out)
    assert report.error == error
    assert report.error_detail == detail
    assert report.sockets == []
    assert report.tool is None


def test_unknown_lines_are_skipped() -> None:
    out = "\n".join(
        [
            'Defaulted container "x" out of: x, logs',
            "PCTL2\tsocket\tj\tp\tsent\t1\t-\t1",
            "PCTL1\tfuture-kind\twhatever",
            "PCTL1\terror\tsomething-new\tx",
            "PCTL1\tsocket\tj\tgood\tsent\t0\t-\t1",
            "PCTL1\tend\t1",
        ]
    )
    report = parse_output(out)
    assert report.sockets == [
        SocketReport(job="j", process="good", result="sent", running=False, pid=None, was_running=True)
    ]
    assert report.tool is None
    assert report.error is None


@pytest.mark.parametrize(
    "line",
    [
        "PCTL1\tsocket\tj\tp\tsent\t1\t-",  # too few fields
        "PCTL1\tsocket\tj\tp\tsent\t1\t-\t1\textra",  # too many
        "PCTL1\tsocket\tj\tp\texploded\t1\t-\t1",  # unknown result
        "PCTL1\tsocket\tj\tp\tsent\tyes\t-\t1",  # bad running
        "PCTL1\tsocket\tj\tp\tsent\t1\t-5\t1",  # bad pid
        "PCTL1\tsocket\tj\tp\tsent\t1\t-\t2",  # bad was-running
    ],
)
def test_a_malformed_socket_line_is_an_error(line: str) -> None:
    """A socket line of our own prefix that we cannot read is a broken report, not a socket to leave out."""
    with pytest.raises(ScriptOutputError, match="malformed"):
        parse_output(f"PCTL1\ttool\tperl\n{line}\nPCTL1\tend\t1\n")


@pytest.mark.parametrize(
    "out",
    [
        "",
        "\n",
        "sh: 1: syntax error\n",
        "PCTL1\n",
        "PCTL1\tsocket\tbroken\n",
        # Truncated: the sockets are fine but the end line never came (issue 13 item 4).
        "PCTL1\ttool\tperl\nPCTL1\tsocket\tj\tp\tsent\t1\t-\t1\n",
        "PCTL1\ttool\tperl\nPCTL1\tsocket\tj\tp\tsent\t1\t-\t1\nPCTL1\ten",
        # The end line disagrees with what came before it.
        "PCTL1\ttool\tperl\nPCTL1\tsocket\tj\tp\tsent\t1\t-\t1\nPCTL1\tend\t2\n",
        "PCTL1\ttool\tperl\nPCTL1\tend\t0\nPCTL1\tsocket\tj\tp\tsent\t1\t-\t1\n",
        "PCTL1\terror\tno-base-dir\t/var/vcap/data\n",
    ],
)
def test_incomplete_reports_raise(out: str) -> None:
    with pytest.raises(ScriptOutputError):
        parse_output(out)
    assert issubclass(ScriptOutputError, ProcessControlError)
