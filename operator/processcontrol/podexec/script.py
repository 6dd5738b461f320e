"""The in-pod script: the command line that runs it, and the parser of what it prints.

The script (`inpod.sh`, shipped as package data) is sent with exec as `sh -c SCRIPT processcontrol ACTION JOBS
PROCESSES`. Spec values travel only as positional arguments, so they never become shell code. Its output format
is documented at the top of `inpod.sh`; `parse_output` is the only reader of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from importlib import resources
from typing import Literal, get_args

from pydantic import BaseModel

from processcontrol.exceptions import ScriptOutputError

SCRIPT: str = resources.files("processcontrol.podexec").joinpath("inpod.sh").read_text(encoding="utf-8")

PREFIX = "PCTL1"
# What the script names as $0; it shows up in `ps` inside the pod and in the script's own messages.
SCRIPT_NAME = "processcontrol"

SocketResult = Literal["sent", "refused", "failed", "probed", "stale"]
ScriptErrorKind = Literal["no-sender-tool", "no-base-dir"]
_RESULTS: frozenset[str] = frozenset(get_args(SocketResult))
_ERRORS: frozenset[str] = frozenset(get_args(ScriptErrorKind))


class Action(StrEnum):
    """What the script does with each socket."""

    STOP = "STOP"
    START = "START"
    STATUS = "STATUS"


class SocketReport(BaseModel):
    """One containerrun socket as the script saw it."""

    job: str
    process: str
    result: SocketResult
    running: bool
    pid: int | None


class ScriptReport(BaseModel):
    """Everything one run of the script reported."""

    sockets: list[SocketReport]
    tool: str | None
    error: ScriptErrorKind | None = None
    error_detail: str = ""


def build_command(action: Action, jobs: Sequence[str], processes: Sequence[str]) -> list[str]:
    """Return the exec command that runs the script; empty `jobs`/`processes` mean all."""
    return ["sh", "-c", SCRIPT, SCRIPT_NAME, str(action), ",".join(jobs), ",".join(processes)]


def _parse_socket(fields: list[str]) -> SocketReport | None:
    if len(fields) != 7:
        return None
    _, _, job, process, result, running, pid = fields
    if result not in _RESULTS or running not in ("0", "1") or not (pid == "-" or pid.isdigit()):
        return None
    return SocketReport.model_validate(
        {
            "job": job,
            "process": process,
            "result": result,
            "running": running == "1",
            "pid": None if pid == "-" else int(pid),
        }
    )


def parse_output(stdout: str) -> ScriptReport:
    """Parse the script's stdout; unknown lines are skipped, nothing parseable raises `ScriptOutputError`."""
    sockets: list[SocketReport] = []
    tool: str | None = None
    error: ScriptErrorKind | None = None
    error_detail = ""
    understood = False
    for raw in stdout.splitlines():
        fields = raw.rstrip("\r").split("\t")
        if len(fields) < 2 or fields[0] != PREFIX:
            continue
        kind = fields[1]
        if kind == "socket":
            report = _parse_socket(fields)
            if report is not None:
                sockets.append(report)
                understood = True
        elif kind == "tool" and len(fields) == 3:
            tool = None if fields[2] == "none" else fields[2]
            understood = True
        elif kind == "error" and len(fields) >= 3 and fields[2] in _ERRORS:
            error = "no-sender-tool" if fields[2] == "no-sender-tool" else "no-base-dir"
            error_detail = "\t".join(fields[3:])
            understood = True
    if not understood:
        excerpt = stdout[:200] if stdout else "(empty)"
        raise ScriptOutputError(f"the in-pod script printed no {PREFIX} lines: {excerpt!r}")
    # The script answers in whatever order its parallel sends finish; a stable order keeps status writes
    # and progress lines from changing when nothing else did.
    sockets.sort(key=lambda s: (s.job, s.process))
    return ScriptReport(sockets=sockets, tool=tool, error=error, error_detail=error_detail)
