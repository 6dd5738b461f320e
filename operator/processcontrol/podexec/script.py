"""The in-pod script: the command line that runs it, and the parser of what it prints.

The script (`inpod.sh`, shipped as package data) is sent with exec as `sh -c SCRIPT processcontrol JOBS PROCESSES
WAIT_MS WINDOW_MS ONLY`: it reports what it sees, then waits for its go-ahead (`go_ahead`) on stdin. Spec values
travel only as positional arguments and that line, so they never become shell code. Its output format is
documented at the top of `inpod.sh`; `parse_output` is the only reader of it.

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

from processcontrol.bounded import bounded
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


# What a report may hold, whoever wrote it (a replaced `sh` or perl in the image writes what it likes): more sockets
# than a pod could mean is a broken report; a pid beyond Linux's PID_MAX_LIMIT is no pid; counts and seqs are short
# ASCII numbers (`str.isdigit` takes `²`, which `int` refuses, and `int` refuses more than 4,300 digits).
MAX_SOCKETS = 4096
PID_MAX = 1 << 22
DETAIL_LIMIT = 200
_NUMBER = re.compile(r"[0-9]{1,9}")
_SEQ = re.compile(r"[0-9]{1,20}")  # a ledger write counter: any the operator can write fits
_TOOL = re.compile(r"[A-Za-z0-9._-]{1,32}")

_RESULTS: frozenset[str] = frozenset(SocketResult)
_ERRORS: frozenset[str] = frozenset(ScriptError)


class Action(StrEnum):
    """What a go-ahead tells the script to send."""

    STOP = "STOP"
    START = "START"


class Idle(StrEnum):
    """Why the script sent nothing (its `idle` line): no go-ahead, one after the window, or a malformed one."""

    EOF = "eof"
    WINDOW = "window"
    INVALID = "invalid"


class SocketReport(BaseModel):
    """One containerrun socket as the script saw it.

    `running` is the sentinel at the end (after the send and the in-pod wait); `was_running` is the sentinel
    before anything was sent (in the look the two are the same reading).
    """

    job: str
    process: str
    result: SocketResult
    running: bool
    pid: int | None
    was_running: bool


class ScriptReport(BaseModel):
    """One part of the script's report: the look (before any go-ahead), or what a go-ahead did."""

    sockets: list[SocketReport]
    tool: str | None
    error: ScriptError | None = None
    error_detail: str = ""  # printable, at most DETAIL_LIMIT characters
    # Sockets left out by the operator's check of their names (pods.bosh_names_only): how many, and a few of them.
    rejected: int = 0
    rejected_names: list[str] = []


class Outcome(BaseModel):
    """Everything one run of the script reported: the look, and what it did with its go-ahead."""

    look: ScriptReport
    action: Action | None = None  # the go-ahead it acted on, None when it sent nothing
    seq: int | None = None
    acted: ScriptReport | None = None
    idle: Idle | None = None


# The line that ends the look: the script now waits for its go-ahead.
READY = f"{PREFIX}\tready\t"
# A script sends nothing later than this after its go-ahead arrived (inpod.sh's F): an exec whose outcome is unknown
# (its go-ahead written, no report) can have no effect once window + grace have passed since its look came. Long
# enough for a slow sender to start (a loaded or throttled container), short enough to wait out after a failure.
SEND_GRACE_S = 10.0


def build_command(
    jobs: Sequence[str],
    processes: Sequence[str],
    *,
    only: Sequence[tuple[str, str]] | None = None,
    wait_s: float = 0.0,
    window_s: float = 0.0,
) -> list[str]:
    """Return the exec command that runs the script.

    Empty `jobs`/`processes` mean all. `only`, when given, restricts the look to these (job, process) pairs
    (still filtered by `jobs`/`processes`); an empty `only` looks at nothing. `wait_s`: how long the script waits
    in the pod after a STOP/START for the sentinels to reach the target. `window_s`: how long after its start a
    go-ahead still counts (an exec without one sends nothing).
    """
    for name, value in (("wait_s", wait_s), ("window_s", window_s)):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
    selected = "*" if only is None else "\n".join(_pair(job, process) for job, process in only)
    return [
        "sh",
        "-c",
        COMPACT_SCRIPT,
        SCRIPT_NAME,
        ",".join(jobs),
        ",".join(processes),
        str(round(wait_s * 1000)),
        str(round(window_s * 1000)),
        selected,
    ]


def _pair(job: str, process: str) -> str:
    if UNSELECTABLE.search(job) or UNSELECTABLE.search(process):
        raise ValueError(f"cannot select {job!r}/{process!r}: empty, or with '/', a tab or a newline")
    return f"{job}/{process}"


def go_ahead(action: Action, seq: int, pairs: Sequence[tuple[str, str]]) -> str:
    """The line that tells a waiting script to send `action` to these sockets, decided from ledger write `seq`."""
    if seq < 0:
        raise ValueError(f"seq must be >= 0, not {seq}")
    return "\t".join([str(action), str(seq), *(_pair(job, process) for job, process in pairs)]) + "\n"


def _number(text: str) -> int | None:
    return int(text) if _NUMBER.fullmatch(text) else None


def _excerpt(raw: str) -> str:
    return repr(bounded(raw, 80))


def _parse_socket(fields: list[str]) -> SocketReport | None:
    if len(fields) != 8:
        return None
    _, _, job, process, result, running, pid, was_running = fields
    if (
        result not in _RESULTS
        or running not in ("0", "1")
        or was_running not in ("0", "1")
        or not (pid == "-" or (pid.isascii() and pid.isdigit()))
    ):
        return None
    # A pid file holds what the container wrote: a number no process can have is no pid, not a broken report.
    number = int(pid) if pid != "-" and len(pid) <= 8 else None
    return SocketReport.model_validate(
        {
            "job": job,
            "process": process,
            "result": result,
            "running": running == "1",
            "pid": number if number is not None and 0 < number <= PID_MAX else None,
            "was_running": was_running == "1",
        }
    )


class _Part:
    """The lines of one part of the report as they are read."""

    def __init__(self) -> None:
        self.sockets: list[SocketReport] = []
        self.tool: str | None = None
        self.error: ScriptError | None = None
        self.error_detail = ""

    def close(self, count: int, line: str) -> ScriptReport:
        if count != len(self.sockets):
            raise ScriptOutputError(
                f"the in-pod script reported {len(self.sockets)} sockets but {_excerpt(line)} says {count}"
            )
        # A stable order keeps status writes and progress lines from changing when nothing else did.
        self.sockets.sort(key=lambda s: (s.job, s.process))
        return ScriptReport(sockets=self.sockets, tool=self.tool, error=self.error, error_detail=self.error_detail)


def parse_output(stdout: str, *, look_only: bool = False) -> Outcome:
    """Parse the script's stdout; unknown lines are skipped.

    Raises `ScriptOutputError` when a part does not end with its terminator line (`ready COUNT` after the look,
    `end COUNT` at the end), or a count disagrees with the socket lines: a truncated report is an error, not a
    shorter list. `look_only`: parse up to the ready line (what the operator decides the go-ahead from).
    """
    part = _Part()
    look: ScriptReport | None = None
    outcome: Outcome | None = None
    action: Action | None = None
    seq: int | None = None
    idle: Idle | None = None
    for raw in stdout.splitlines():
        fields = raw.rstrip("\r").split("\t")
        if len(fields) < 2 or fields[0] != PREFIX:
            continue
        if outcome is not None:
            raise ScriptOutputError(f"the in-pod script printed after its end line: {_excerpt(raw)}")
        kind, count = fields[1], _number(fields[2]) if len(fields) == 3 else None
        if kind == "socket":
            report = _parse_socket(fields)
            if report is None:
                raise ScriptOutputError(f"the in-pod script printed a malformed socket line: {_excerpt(raw)}")
            if len(part.sockets) >= MAX_SOCKETS:
                raise ScriptOutputError(f"the in-pod script reported more than {MAX_SOCKETS} sockets")
            part.sockets.append(report)
        elif kind == "tool" and len(fields) == 3:
            if not _TOOL.fullmatch(fields[2]):
                raise ScriptOutputError(f"the in-pod script named a malformed tool: {_excerpt(raw)}")
            part.tool = None if fields[2] == "none" else fields[2]
        elif kind == "error" and len(fields) >= 3 and fields[2] in _ERRORS:
            part.error = ScriptError(fields[2])
            part.error_detail = bounded("\t".join(fields[3:]), DETAIL_LIMIT)
        elif kind == "ready" and count is not None and look is None:
            look = part.close(count, raw)
            if look_only:
                return Outcome(look=look)
            part = _Part()
        elif (
            kind == "go"
            and look is not None
            and len(fields) == 4
            and fields[2] in _ACTIONS
            and _SEQ.fullmatch(fields[3])
        ):
            action, seq = Action(fields[2]), int(fields[3])
        elif kind == "idle" and len(fields) == 3 and fields[2] in _IDLE:
            idle = Idle(fields[2])
        elif kind == "end" and count is not None:
            ended = part.close(count, raw)
            if look is None and ended.error is None:
                # The watchdog ended the script in its look (slower than its window): what it saw so far is not
                # everything there is, so it is no look at all (read as one, a pod would have no processes).
                raise ScriptOutputError(f"the in-pod script ended before its look was complete ({idle or 'no ready'})")
            if look is None:  # an error before the look (no data directory)
                outcome = Outcome(look=ended)
            elif idle is not None or action is not None:
                outcome = Outcome(look=look, idle=idle, action=action, seq=seq, acted=ended if action else None)
            else:
                raise ScriptOutputError("the in-pod script ended without saying what it did with its go-ahead")
    if outcome is None:
        excerpt = repr(bounded(stdout[-80:], 80)) if stdout else "(empty)"
        raise ScriptOutputError(f"the in-pod script's report has no end line (truncated?): {excerpt}")
    return outcome


_ACTIONS: frozenset[str] = frozenset(Action)
_IDLE: frozenset[str] = frozenset(Idle)
