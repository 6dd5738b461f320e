"""Pure pieces: command parsing, the command line, socket paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from processcontrol.containerrun.cli import parse_config, split_argv
from processcontrol.containerrun.protocol import MAX_DATAGRAM, Command, Endpoint, discover, parse_command


@pytest.mark.parametrize(
    ("payload", "command"),
    [
        (b"STOP", Command.STOP),
        (b"START\n", Command.START),
        (b" \tQUIT\r\n", Command.QUIT),
        (b"stop", None),
        (b"STOP START", None),
        (b"", None),
        (b"\xffSTOP", None),
        (b"STOP" + b" " * MAX_DATAGRAM, None),
    ],
)
def test_parse_command(payload: bytes, command: Command | None) -> None:
    assert parse_command(payload) is command


def test_flag_values_may_start_with_a_dash_as_in_the_go_original() -> None:
    flags, command = split_argv(
        ["--job-name", "j", "--post-start-arg", "-v", "--post-start-arg=--x", "--debug", "--", "cmd", "--job-name"]
    )
    assert flags == ["--job-name=j", "--post-start-arg=-v", "--post-start-arg=--x", "--debug"]
    assert command == ["cmd", "--job-name"]


def test_parse_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONTAINERRUN_BASE_DIR", "/base")
    config, debug = parse_config(
        [
            "--job-name=cloud_controller_ng",
            "--process-name=cloud_controller_ng",
            "--post-start-name=/ps",
            "--post-start-arg",
            "-a",
            "--post-start-condition-name=/cond",
            "--post-start-condition-arg=1",
            "--post-start-condition-arg=2",
            "--stop-timeout=1.5",
            "--",
            "run",
            "-x",
        ]
    )
    assert config.endpoint.socket == Path("/base/data/cloud_controller_ng/cloud_controller_ng_containerrun.sock")
    assert config.command == ["run", "-x"]
    assert config.post_start == ["/ps", "-a"]
    assert config.post_start_condition == ["/cond", "1", "2"]
    assert config.stop_timeout == 1.5
    assert not debug


@pytest.mark.parametrize(
    "argv",
    [
        ["--job-name=j", "--process-name=p"],  # no command
        ["--process-name=p", "--", "x"],  # no job
        ["--job-name=../x", "--process-name=p", "--", "x"],
        ["--job-name=j", "--process-name=p", "--stop-timeout=-1", "--", "x"],
    ],
)
def test_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_config(argv)
    assert exit_.value.code == 2


def test_endpoint_files_and_discovery(tmp_path: Path) -> None:
    endpoint = Endpoint(tmp_path, "job_a", "proc_1")
    assert endpoint.sentinel == tmp_path / "data/job_a/proc_1_containerrun.running"
    assert endpoint.pidfile == tmp_path / "sys/run/bpm/job_a/proc_1.pid"
    assert Endpoint.from_socket(endpoint.socket) == endpoint
    endpoint.socket.parent.mkdir(parents=True)
    endpoint.socket.touch()
    (tmp_path / "data/job_a/other.sock").touch()
    assert discover(tmp_path) == [endpoint]
    assert discover(tmp_path, jobs=["x"]) == []
    assert discover(tmp_path, processes=["proc_1"]) == [endpoint]
