"""The in-pod script: the command line that runs it, and the parser of what it prints.

The script (`inpod.sh`, shipped as package data) is sent with exec as `sh -c SCRIPT processcontrol ACTION JOBS
PROCESSES WAIT_MS ONLY`. Spec values travel only as positional arguments, so they never become shell code. Its
output format is documented at the top of `inpod.sh`; `parse_output` is the only reader of it.

What is sent is `COMPACT_SCRIPT`, the readable source without comment lines, blank lines and indentation: it
rides in the exec URL of every exec (and so in API-server audit logs and under proxies' header limits), where
the readable form would be ~15 KB URL-encoded.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from enum import StrEnum
from importlib import resources

from pydantic import BaseModel

from processcontrol.exceptions import ScriptOutputError

SCRIPT: str = resources.files("processcontrol.podexec").joinpath("inpod.sh").read_text(encoding="utf-8")


def compact(source: str) -> str:
    """`source` without comment lines, blank lines and leading tabs (inpod.sh indents code with tabs only).

    Only whole lines go, so nothing inside a line changes meaning; inpod.sh keeps its data (here-documents, the
    embedded programs) free of lines that start with a tab or `#` so this is safe for them too.
    """
    kept = []
    for line in source.splitlines():
        code = line.lstrip("\t")
        if code and not code.startswith("#"):
            kept.append(code)
    return "\n".join(kept) + "\n"


COMPACT_SCRIPT: str = compact(SCRIPT)

PREFIX = "PCTL1"
# What the script names as $0; it shows up in `ps` inside the pod and in the script's own messages.
SCRIPT_NAME = "processcontrol"
# `only` carries JOB/PROCESS pairs one a line. Any name a socket path can hold fits (a path component has no
# '/'), except names with a tab or a newline, which the script never reports and so nobody can ask for.
UNSELECTABLE = re.compile(r"[/\t\n]|^$")


class SocketResult(StrEnum):
    """What the script did with one socket (the `RESULT` field of its socket lines, see inpod.sh)."""

    SENT = "sent"
    REFUSED = "refused"  # nobody listens: a stale socket, no containerrun behind it
    FAILED = "failed"  # the send failed for another reason
    PROBED = "probed"  # STATUS: the socket does not refuse (or its sentinel says running; nothing is sent)
    STALE = "stale"  # STATUS: the socket refuses a connection


class ScriptError(StrEnum):
    """Why the script could not look at any socket (its `error` line)."""

    NO_SENDER_TOOL = "no-sender-tool"
    NO_BASE_DIR = "no-base-dir"


_RESULTS: frozenset[str] = frozenset(SocketResult)
_ERRORS: frozenset[str] = frozenset(ScriptError)


class Action(StrEnum):
    """What the script does with each socket."""

    STOP = "STOP"
    START = "START"
    STATUS = "STATUS"


class SocketReport(BaseModel):
    """One containerrun socket as the script saw it.

    `running` is the sentinel at the end of the exec (after the send and the in-pod wait); `was_running` is the
    sentinel before anything was sent (for STATUS the two are the same reading).
    """

    job: str
    process: str
    result: SocketResult
    running: bool
    pid: int | None
    was_running: bool


class ScriptReport(BaseModel):
    """Everything one run of the script reported."""

    sockets: list[SocketReport]
    tool: str | None
    error: ScriptError | None = None
    error_detail: str = ""


def build_command(
    action: Action,
    jobs: Sequence[str],
    processes: Sequence[str],
    *,
    only: Sequence[tuple[str, str]] | None = None,
    wait_s: float = 0.0,
) -> list[str]:
    """Return the exec command that runs the script.

    Empty `jobs`/`processes` mean all. `only`, when given, restricts the action to these (job, process) pairs
    (still filtered by `jobs`/`processes`); an empty `only` acts on nothing. `wait_s` (STOP/START): how long the
    script waits in the pod for the sentinels to reach the target before it reports.
    """
    if not math.isfinite(wait_s) or wait_s < 0:
        raise ValueError(f"wait_s must be a finite number >= 0, not {wait_s!r}")
    if only is None:
        selected = "*"
    else:
        for job, process in only:
            if UNSELECTABLE.search(job) or UNSELECTABLE.search(process):
                raise ValueError(f"cannot select {job!r}/{process!r}: empty, or with '/', a tab or a newline")
        selected = "\n".join(f"{job}/{process}" for job, process in only)
    wait_ms = round(wait_s * 1000)
    return [
        "sh",
        "-c",
        COMPACT_SCRIPT,
        SCRIPT_NAME,
        str(action),
        ",".join(jobs),
        ",".join(processes),
        str(wait_ms),
        selected,
    ]


def _parse_socket(fields: list[str]) -> SocketReport | None:
    if len(fields) != 8:
        return None
    _, _, job, process, result, running, pid, was_running = fields
    if (
        result not in _RESULTS
        or running not in ("0", "1")
        or was_running not in ("0", "1")
        or not (pid == "-" or pid.isdigit())
    ):
        return None
    return SocketReport.model_validate(
        {
            "job": job,
            "process": process,
            "result": result,
            "running": running == "1",
            "pid": None if pid == "-" else int(pid),
            "was_running": was_running == "1",
        }
    )


def parse_output(stdout: str) -> ScriptReport:
    """Parse the script's stdout; unknown lines are skipped.

    Raises `ScriptOutputError` when the report does not end with its terminator line (`PCTL1 end COUNT`), or its
    count disagrees with the socket lines: a truncated report is an error, not a shorter list.
    """
    sockets: list[SocketReport] = []
    tool: str | None = None
    error: ScriptError | None = None
    error_detail = ""
    end: int | None = None
    for raw in stdout.splitlines():
        fields = raw.rstrip("\r").split("\t")
        if len(fields) < 2 or fields[0] != PREFIX:
            continue
        if end is not None:
            raise ScriptOutputError(f"the in-pod script printed after its end line: {raw[:200]!r}")
        kind = fields[1]
        if kind == "socket":
            report = _parse_socket(fields)
            if report is None:
                raise ScriptOutputError(f"the in-pod script printed a malformed socket line: {raw[:200]!r}")
            sockets.append(report)
        elif kind == "tool" and len(fields) == 3:
            tool = None if fields[2] == "none" else fields[2]
        elif kind == "error" and len(fields) >= 3 and fields[2] in _ERRORS:
            error = ScriptError(fields[2])
            error_detail = "\t".join(fields[3:])
        elif kind == "end" and len(fields) == 3 and fields[2].isdigit():
            end = int(fields[2])
    if end is None:
        excerpt = stdout[-200:] if stdout else "(empty)"
        raise ScriptOutputError(f"the in-pod script's report has no end line (truncated?): {excerpt!r}")
    if end != len(sockets):
        raise ScriptOutputError(f"the in-pod script reported {len(sockets)} sockets but its end line says {end}")
    # A stable order keeps status writes and progress lines from changing when nothing else did.
    sockets.sort(key=lambda s: (s.job, s.process))
    return ScriptReport(sockets=sockets, tool=tool, error=error, error_detail=error_detail)
