"""`processcontrol send` and `processcontrol status`: the client side of the containerrun socket protocol.

Imports nothing heavy (no kopf, no kubernetes client, pydantic only for `-o json`): it runs inside pods.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from processcontrol.containerrun.protocol import (
    Command,
    Endpoint,
    SendResult,
    SocketState,
    command_names,
    default_base_dir,
    discover,
    probe,
    send,
)


def add_commands(subparsers: Any) -> None:
    """Add `send` and `status` to the `processcontrol` parser."""
    send_parser = subparsers.add_parser(
        "send",
        help="send STOP, START or QUIT to containerrun sockets",
        description=(
            "Send a command to containerrun sockets at once and report, per socket, sent, refused (stale: "
            "nobody listens) or missing. Name sockets, or select them under BASE/data with --all, --job and "
            "--process. Exit status: 0 when every send succeeded, 1 when some failed, 2 on usage errors."
        ),
    )
    send_parser.add_argument("action", choices=command_names(), metavar="{STOP,START,QUIT}")
    send_parser.add_argument("sockets", nargs="*", type=Path, metavar="SOCKET", help="socket paths")
    send_parser.add_argument("--all", action="store_true", help="every socket under BASE/data")
    send_parser.add_argument(
        "--job", action="append", default=[], metavar="JOB", help="only sockets of this job (repeatable)"
    )
    send_parser.add_argument(
        "--process", action="append", default=[], metavar="PROCESS", help="only this process (repeatable)"
    )
    _add_base_dir(send_parser)
    send_parser.set_defaults(handler=run_send, parser=send_parser)

    status_parser = subparsers.add_parser(
        "status",
        help="show every containerrun socket and its state",
        description=(
            "List every containerrun socket under BASE/data with its job, process, state and pid. "
            "running: the socket answers and the .running sentinel exists; stopped: the socket answers, "
            "no sentinel; stale: the socket refuses (containerrun is gone); unknown: it cannot be told."
        ),
    )
    _add_base_dir(status_parser)
    status_parser.add_argument("-o", "--output", choices=("table", "json"), default="table")
    status_parser.set_defaults(handler=run_status)


def _add_base_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--base-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="where data/ is (default: $CONTAINERRUN_BASE_DIR, else /var/vcap)",
    )


def run_send(args: argparse.Namespace) -> int:
    """Send one command to the chosen sockets; print one line per socket."""
    parser: argparse.ArgumentParser = args.parser
    selecting = args.all or args.job or args.process
    if args.sockets and selecting:
        parser.error("name sockets or select them with --all/--job/--process, not both")
    if not args.sockets and not selecting:
        parser.error("name sockets, or select them with --all, --job or --process")
    base_dir: Path = args.base_dir or default_base_dir()
    command = Command(args.action)
    failed = 0
    if args.sockets:
        targets: list[Path] = args.sockets
    else:
        endpoints = discover(base_dir, args.job, args.process)
        targets = [endpoint.socket for endpoint in endpoints]
        for kind, wanted, have in (
            ("job", args.job, {e.job for e in endpoints}),
            ("process", args.process, {e.process for e in endpoints}),
        ):
            for name in wanted:
                if name not in have:
                    print(f"missing  no socket for {kind} {name!r} under {base_dir / 'data'}")
                    failed += 1
        if not targets and not failed:
            print(f"missing  no containerrun sockets under {base_dir / 'data'}")
            failed += 1
    for path in targets:
        result, why = send(path, command)
        print(f"{result.value:<8} {path}" + (f": {why}" if why else ""))
        failed += result is not SendResult.SENT
    sys.stdout.flush()
    return 1 if failed else 0


def run_status(args: argparse.Namespace) -> int:
    """Print every socket with its job, process, state and pid."""
    base_dir: Path = args.base_dir or default_base_dir()
    rows = [(endpoint, probe(endpoint)) for endpoint in discover(base_dir)]
    if args.output == "json":
        from processcontrol.containerrun.models import SocketStatus  # pydantic: only when asked for

        print(
            "["
            + ",".join(
                SocketStatus(
                    job=e.job,
                    process=e.process,
                    state=state,
                    pid=_pid(e, state),
                    socket=os.fspath(e.socket),
                ).model_dump_json()
                for e, state in rows
            )
            + "]"
        )
        return 0
    table = [("JOB", "PROCESS", "STATE", "PID", "SOCKET")]
    for e, state in rows:
        pid = _pid(e, state)
        table.append((e.job, e.process, state.value, "-" if pid is None else str(pid), os.fspath(e.socket)))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    for row in table:
        print("  ".join([*(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), row[-1]]))
    if not rows:
        print(f"no containerrun sockets under {base_dir / 'data'}", file=sys.stderr)
    return 0


def _pid(endpoint: Endpoint, state: SocketState) -> int | None:
    """The main process's pid, when it runs."""
    return endpoint.read_pid() if state is SocketState.RUNNING else None
