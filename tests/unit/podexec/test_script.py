"""The command line that runs the in-pod script and the parser of its output."""

from __future__ import annotations

import pytest

from processcontrol.exceptions import ProcessControlError, ScriptOutputError
from processcontrol.podexec.script import (
    SCRIPT,
    Action,
    ScriptReport,
    SocketReport,
    build_command,
    parse_output,
)


def test_script_is_the_packaged_file() -> None:
    assert SCRIPT.startswith("# processcontrol in-pod script")
    assert "PCTL1" in SCRIPT


def test_build_command_passes_values_as_arguments() -> None:
    command = build_command(Action.STOP, ["pxc-mysql", "$(id)"], ["galera-agent"])
    assert command == ["sh", "-c", SCRIPT, "processcontrol", "STOP", "pxc-mysql,$(id)", "galera-agent"]
    assert all(type(part) is str for part in command)


def test_build_command_empty_filters_mean_all() -> None:
    assert build_command(Action.STATUS, [], [])[-3:] == ["STATUS", "", ""]


def test_parse_full_output() -> None:
    out = (
        "PCTL1\ttool\tnc\n"
        "PCTL1\tsocket\tpxc-mysql\tgalera-agent\tsent\t1\t4242\n"
        "PCTL1\tsocket\tpxc-mysql\tmysql\trefused\t0\t-\n"
        "PCTL1\tsocket\tcloud_controller_ng\tcloud_controller_ng\tfailed\t0\t17\r\n"
    )
    assert parse_output(out) == ScriptReport(
        tool="nc",
        # Sorted by job and process, whatever order the parallel sends answered in.
        sockets=[
            SocketReport(
                job="cloud_controller_ng", process="cloud_controller_ng", result="failed", running=False, pid=17
            ),
            SocketReport(job="pxc-mysql", process="galera-agent", result="sent", running=True, pid=4242),
            SocketReport(job="pxc-mysql", process="mysql", result="refused", running=False, pid=None),
        ],
    )


def test_parse_status_and_tool_none() -> None:
    out = "PCTL1\ttool\tnone\nPCTL1\tsocket\tj\tp\tprobed\t1\t-\nPCTL1\tsocket\tj\tq\tstale\t0\t-\n"
    report = parse_output(out)
    assert report.tool is None
    assert [s.result for s in report.sockets] == ["probed", "stale"]


def test_parse_zero_sockets() -> None:
    assert parse_output("PCTL1\ttool\tncat\n") == ScriptReport(sockets=[], tool="ncat")


@pytest.mark.parametrize(
    ("out", "error", "detail"),
    [
        (
            "PCTL1\terror\tno-sender-tool\tprocesscontrol,ncat,nc,socat,python3,perl\n",
            "no-sender-tool",
            "processcontrol,ncat,nc,socat,python3,perl",
        ),
        ("PCTL1\terror\tno-base-dir\t/var/vcap/data\n", "no-base-dir", "/var/vcap/data"),
    ],
)
def test_parse_errors(out: str, error: str, detail: str) -> None:
    report = parse_output(out)
    assert report.error == error
    assert report.error_detail == detail
    assert report.sockets == []
    assert report.tool is None


def test_unknown_and_malformed_lines_are_skipped() -> None:
    out = "\n".join(
        [
            'Defaulted container "x" out of: x, logs',
            "PCTL2\tsocket\tj\tp\tsent\t1\t-",
            "PCTL1\tfuture-kind\twhatever",
            "PCTL1\tsocket\tj\tp\tsent\t1",  # too few fields
            "PCTL1\tsocket\tj\tp\tsent\t1\t-\textra",  # too many
            "PCTL1\tsocket\tj\tp\texploded\t1\t-",  # unknown result
            "PCTL1\tsocket\tj\tp\tsent\tyes\t-",  # bad running
            "PCTL1\tsocket\tj\tp\tsent\t1\t-5",  # bad pid
            "PCTL1\terror\tsomething-new\tx",
            "PCTL1\tsocket\tj\tgood\tsent\t0\t-",
        ]
    )
    report = parse_output(out)
    assert report.sockets == [SocketReport(job="j", process="good", result="sent", running=False, pid=None)]
    assert report.tool is None
    assert report.error is None


@pytest.mark.parametrize("out", ["", "\n", "sh: 1: syntax error\n", "PCTL1\n", "PCTL1\tsocket\tbroken\n"])
def test_nothing_parseable_raises(out: str) -> None:
    with pytest.raises(ScriptOutputError):
        parse_output(out)
    assert issubclass(ScriptOutputError, ProcessControlError)
