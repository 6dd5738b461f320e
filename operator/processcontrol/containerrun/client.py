"""`processcontrol send` and `processcontrol status`: the client side of the containerrun socket protocol.

The standard library only: these run inside pods (their arguments are in `processcontrol.cli`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TypedDict

from processcontrol.containerrun.protocol import (
    Command,
    Endpoint,
    SendResult,
    SocketState,
    default_base_dir,
    discover,
    probe,
    send,
)


class SocketStatus(TypedDict):
    """One row of `processcontrol status -o json`: a containerrun socket and what it says about its process."""

    job: str
    process: str
    state: str  # a SocketState value: running, stopped, stale or unknown
    pid: int | None
    socket: str


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
        statuses = [
            SocketStatus(
                job=e.job, process=e.process, state=state.value, pid=_pid(e, state), socket=os.fspath(e.socket)
            )
            for e, state in rows
        ]
        print(json.dumps(statuses, ensure_ascii=False, separators=(",", ":")))
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
