"""One exec of the in-pod script into a pod, with its failures turned into a reason a person can act on."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from processcontrol.api import ProcessState, ProcessStatus
from processcontrol.api.models import BOSH_NAME_MAX, BOSH_NAME_PATTERN
from processcontrol.api.reasons import FailureReason
from processcontrol.bounded import bounded
from processcontrol.exceptions import ExecError, ExecForbidden, ExecTimeout, PodFailure, PodGone, ScriptOutputError
from processcontrol.ledger import Observed
from processcontrol.podexec.script import (
    READY,
    SEND_GRACE_S,
    Action,
    Outcome,
    ScriptError,
    ScriptReport,
    SocketReport,
    SocketResult,
    build_command,
    go_ahead,
    parse_output,
)
from processcontrol.podexec.transport import Dialogue, PodExecutor
from processcontrol.reconcile.metrics import GO_AHEADS_LATE, observe_exec
from processcontrol.reconcile.plan import Mode, process_state
from processcontrol.targets import PodInfo

# Failures shown at once: those another try a moment later will not mend, and timeouts (they took long enough
# already). The others are retried quickly, and a pod shows Failed only when they last.
SHOWN_AT_ONCE = frozenset(
    {
        FailureReason.EXEC_FORBIDDEN,
        FailureReason.NO_CONTAINER,
        FailureReason.NO_SENDER_TOOL,
        FailureReason.LEDGER_UNREADABLE,
        FailureReason.LEDGER_TOO_NEW,
        FailureReason.EXEC_TIMEOUT,
        FailureReason.VERIFY_TIMEOUT,
        FailureReason.PROBE_CONFLICT,
        FailureReason.INVALID_SOCKET_NAMES,
    }
)
# What of a failed script's own output a message quotes: the script may be a replaced `sh` that prints what it likes.
DETAIL_LIMIT = 160
# Sockets of a pod whose names are no BOSH names: how many a message names (it counts them all).
REJECTED_SHOWN = 5
_BOSH_NAME = re.compile(BOSH_NAME_PATTERN)


def _error_reason(error: ExecError) -> FailureReason:
    if isinstance(error, ExecForbidden):
        return FailureReason.EXEC_FORBIDDEN
    if isinstance(error, ExecTimeout):
        return FailureReason.EXEC_TIMEOUT
    if isinstance(error, PodGone):
        return FailureReason.POD_GONE
    return FailureReason.EXEC_FAILED


# The tools the script tries, in its order (inpod.sh).
NO_TOOL_TRIED = "perl,python3,processcontrol,ncat,nc,socat"


@dataclass(frozen=True)
class GoAhead:
    """What the operator tells a waiting script to do, decided from ledger write `seq`."""

    action: Action
    seq: int
    pairs: tuple[tuple[str, str], ...]


# Given the look, write the ledger and say what to send (None: nothing).
Decide = Callable[[ScriptReport], Coroutine[Any, Any, GoAhead | None]]


class Fence(Protocol):
    """What a go-ahead must pass besides its ledger write: the leader's term (leader.Leadership)."""

    async def renewed_after(self, monotonic: float) -> bool:
        """A renewal of the term sent after this moment succeeded."""

    def may_send(self) -> bool:
        """The term holds now."""

    def sent(self, quiet_after: float) -> int:
        """A go-ahead was written; its exec may act until then (monotonic), unless it reports first: a token."""

    def reported(self, token: int) -> None:
        """The exec of that go-ahead ended with its report."""


@dataclass(frozen=True)
class Transition:
    """One exec of the script: what it saw, what it was told, and what it did."""

    look: ScriptReport
    sent: GoAhead | None  # the go-ahead written to the exec (None: it was told nothing and sent nothing)
    acted: ScriptReport | None  # what the go-ahead did, per socket it names


class TransitionFailed(PodFailure):
    """An exec failed; `sent` says whether its go-ahead had been written (then it may have acted, or still act,
    until `quiet_after`, monotonic: its window and send grace since its look came)."""

    def __init__(self, failure: PodFailure, sent: GoAhead | None, quiet_after: float = 0.0) -> None:
        super().__init__(failure.reason, failure.message)
        self.sent = sent
        self.quiet_after = quiet_after if sent is not None else 0.0


async def look(
    executor: PodExecutor,
    pod: PodInfo,
    container: str,
    jobs: Sequence[str],
    processes: Sequence[str],
    *,
    only: Sequence[tuple[str, str]] | None = None,
    background: bool = False,
) -> ScriptReport:
    """One exec that only looks (no go-ahead: it sends nothing); raises `PodFailure` with a reason. A `background`
    look waits for an exec slot behind every other exec."""
    command = build_command(jobs, processes, only=only)
    outcome = await _exec(executor, pod, container, command, None, background=background)
    return outcome.look


async def transition(
    executor: PodExecutor,
    pod: PodInfo,
    container: str,
    jobs: Sequence[str],
    processes: Sequence[str],
    decide: Decide,
    *,
    fence: Fence,
    wait_s: float,
    window_s: float,
    only: Sequence[tuple[str, str]] | None = None,
) -> Transition:
    """One exec per transition: the script looks, `decide` writes the ledger and names the go-ahead, the script
    sends it and waits in the pod, then reports. The go-ahead also waits for a renewal of the leader's term sent
    after the look came (asked for at once, alongside the ledger write), and is written only while the term holds:
    a replica that lost its term, or was paused past it, sends nothing. Raises `TransitionFailed` (with what was
    sent) when it gives no usable report."""
    sent: list[GoAhead] = []
    tokens: list[int] = []
    refused: list[PodFailure] = []
    # The script started before its look came, so it sends nothing after this (its window and grace).
    quiet_after = time.monotonic() + window_s + SEND_GRACE_S

    async def answer(stdout: str) -> str | None:
        nonlocal quiet_after
        quiet_after = time.monotonic() + window_s + SEND_GRACE_S
        try:
            seen = bosh_names_only(parse_output(stdout, look_only=True).look)
        except ScriptOutputError as error:
            refused.append(PodFailure(FailureReason.SCRIPT_FAILED, f"the in-pod script's look: {error}"))
            return None
        # The renewal goes out now, so that it and the ledger write take one round trip between them.
        renewed = asyncio.ensure_future(fence.renewed_after(time.monotonic()))
        try:
            _raise_script_error(seen, container)
            # Checked before anything is written: a hold this image could never give back is never taken.
            no_sender = sender_missing(seen, container)
            if no_sender is not None:
                raise no_sender
            go = await decide(seen)
            if go is None:
                return None
            if not await renewed or not fence.may_send():
                raise PodFailure(FailureReason.EXEC_FAILED, "this replica no longer leads: nothing was sent")
        except PodFailure as failure:
            refused.append(failure)
            return None
        finally:
            renewed.cancel()
        sent.append(go)
        tokens.append(fence.sent(quiet_after))
        return go_ahead(go.action, go.seq, go.pairs)

    command = build_command(jobs, processes, only=only, wait_s=wait_s, window_s=window_s)
    try:
        outcome = await _exec(executor, pod, container, command, Dialogue(READY, answer))
    except PodFailure as failure:
        go = sent[0] if sent else None
        raise TransitionFailed(refused[0] if refused else failure, go, quiet_after) from failure
    for token in tokens:
        fence.reported(token)  # the exec is over: what it was told is done, or will never be
    if refused:
        raise TransitionFailed(refused[0], None)
    go = sent[0] if sent else None
    if go is not None and outcome.action is None:
        # Told, but it sent nothing: the go-ahead came after its window (a slow ledger write).
        GO_AHEADS_LATE.inc()
        raise TransitionFailed(
            PodFailure(FailureReason.EXEC_TIMEOUT, f"the go-ahead came too late ({outcome.idle}): nothing was sent"),
            None,
        )
    if go is not None and (outcome.action, outcome.seq) != (go.action, go.seq):
        raise TransitionFailed(
            PodFailure(FailureReason.SCRIPT_FAILED, f"the in-pod script acted on {outcome.action} {outcome.seq}"),
            go,
            quiet_after,
        )
    return Transition(look=outcome.look, sent=go, acted=outcome.acted)


async def _exec(
    executor: PodExecutor,
    pod: PodInfo,
    container: str,
    command: list[str],
    dialogue: Dialogue | None,
    *,
    background: bool = False,
) -> Outcome:
    try:
        result = await executor.run(pod.namespace, pod.name, container, command, dialogue, background=background)
    except ExecError as error:
        observe_exec(0.0, ok=False, reason=_error_reason(error))
        raise PodFailure(_error_reason(error), str(error)) from error
    observe_exec(result.duration_s, ok=True)
    try:
        outcome = parse_output(result.stdout)
    except ScriptOutputError as error:
        # The end of what it printed says why, usually: short, and printable only.
        detail = bounded((result.stderr or result.stdout).strip()[-DETAIL_LIMIT:], DETAIL_LIMIT)
        cause = bounded(str(error), DETAIL_LIMIT)
        raise PodFailure(
            FailureReason.SCRIPT_FAILED, f"the in-pod script failed (exit {result.returncode}): {detail} ({cause})"
        ) from error
    outcome = outcome.model_copy(
        update={
            "look": bosh_names_only(outcome.look),
            "acted": bosh_names_only(outcome.acted) if outcome.acted is not None else None,
        }
    )
    _raise_script_error(outcome.look, container)
    if outcome.acted is not None:
        _raise_script_error(outcome.acted, container)
    return outcome


def bosh_names_only(report: ScriptReport) -> ScriptReport:
    """The report without sockets whose job or process is no BOSH name (`pxc-mysql/_containerrun.sock`, a name
    with a space or a `$`): the operator never records, stops or starts them, and says so (`rejected_failure`).
    Every name it acts on then fits the ledger, the status and a go-ahead line."""
    kept = [s for s in report.sockets if _bosh(s.job) and _bosh(s.process)]
    if len(kept) == len(report.sockets):
        return report
    bad = [f"{s.job}/{s.process}" for s in report.sockets if not (_bosh(s.job) and _bosh(s.process))]
    shown = [repr(bounded(name, 64)) for name in bad[:REJECTED_SHOWN]]
    return report.model_copy(update={"sockets": kept, "rejected": report.rejected + len(bad), "rejected_names": shown})


def _bosh(name: str) -> bool:
    return len(name) <= BOSH_NAME_MAX and _BOSH_NAME.fullmatch(name) is not None


def rejected_failure(report: ScriptReport, done: str) -> PodFailure | None:
    """The pod's failure when its report left sockets out for their names; `done` says what was done with the
    others (which are held and given back as in any pod)."""
    if not report.rejected:
        return None
    more = (
        f" and {report.rejected - len(report.rejected_names)} more"
        if report.rejected > len(report.rejected_names)
        else ""
    )
    return PodFailure(
        FailureReason.INVALID_SOCKET_NAMES,
        f"{done}; left alone {report.rejected} sockets whose job or process is no BOSH name "
        f"([A-Za-z0-9][A-Za-z0-9._-]*, at most {BOSH_NAME_MAX}): {', '.join(report.rejected_names)}{more}",
    )


def sender_missing(look: ScriptReport, container: str) -> PodFailure | None:
    """The failure of a look that found sockets but no tool to send them a STOP or START with."""
    if look.tool is None and look.sockets:
        return PodFailure(
            FailureReason.NO_SENDER_TOOL, f"no tool to send datagrams in container {container}; tried {NO_TOOL_TRIED}"
        )
    return None


def _raise_script_error(report: ScriptReport, container: str) -> None:
    if report.error == ScriptError.NO_SENDER_TOOL:
        raise PodFailure(
            FailureReason.NO_SENDER_TOOL,
            f"no tool to send datagrams in container {container}; tried {bounded(report.error_detail, DETAIL_LIMIT)}",
        )
    if report.error == ScriptError.NO_BASE_DIR:
        raise PodFailure(
            FailureReason.NO_SOCKETS,
            f"no containerrun data directory {bounded(report.error_detail, DETAIL_LIMIT)} in container {container}",
        )


def is_stale(socket: SocketReport) -> bool:
    """No containerrun answers on this socket: nothing there holds a process stopped or can start it."""
    return socket.result in (SocketResult.REFUSED, SocketResult.STALE)


def observed(sockets: Sequence[SocketReport]) -> list[Observed]:
    """What a STATUS report says of each live socket, for the ledger."""
    return [Observed(s.job, s.process, s.running) for s in sockets if not is_stale(s)]


def process_statuses(mode: Mode, sockets: Sequence[SocketReport], settled: bool) -> list[ProcessStatus]:
    """The status's view of each socket."""
    return [
        ProcessStatus(
            job=s.job,
            process=s.process,
            state=process_state(mode, s.result, s.running, settled),
            pid=s.pid if s.running else None,
        )
        for s in sockets
    ]


def statuses(pairs: Sequence[tuple[str, str]], state: ProcessState) -> list[ProcessStatus]:
    """The status's view of these processes, all in one state."""
    return [ProcessStatus(job=job, process=process, state=state) for job, process in pairs]


def count(processes: int) -> str:
    """`1 process`, `2 processes`."""
    return f"{processes} process" if processes == 1 else f"{processes} processes"


def names(pairs: Sequence[tuple[str, str]]) -> str:
    """`job/process, job/process`."""
    return ", ".join(f"{job}/{process}" for job, process in pairs)
