"""One exec of the in-pod script into a pod, with its failures turned into a reason a person can act on."""

from __future__ import annotations

from collections.abc import Sequence

from processcontrol.api import ProcessStatus
from processcontrol.api.reasons import FailureReason
from processcontrol.exceptions import ExecError, ExecForbidden, ExecTimeout, PodFailure, PodGone, ScriptOutputError
from processcontrol.podexec.script import (
    Action,
    ScriptError,
    ScriptReport,
    SocketReport,
    SocketResult,
    build_command,
    parse_output,
)
from processcontrol.podexec.transport import PodExecutor
from processcontrol.reconcile.ledger import Observed
from processcontrol.reconcile.metrics import observe_exec
from processcontrol.reconcile.plan import Mode, process_state
from processcontrol.reconcile.targets import PodInfo

# Failures shown at once: those another try a moment later will not mend, and timeouts (they took long enough
# already). The others are retried quickly, and a pod shows Failed only when they last.
SHOWN_AT_ONCE = frozenset(
    {
        FailureReason.EXEC_FORBIDDEN,
        FailureReason.NO_CONTAINER,
        FailureReason.NO_SENDER_TOOL,
        FailureReason.LEDGER_UNREADABLE,
        FailureReason.EXEC_TIMEOUT,
        FailureReason.VERIFY_TIMEOUT,
        FailureReason.PROBE_CONFLICT,
    }
)


def _error_reason(error: ExecError) -> FailureReason:
    if isinstance(error, ExecForbidden):
        return FailureReason.EXEC_FORBIDDEN
    if isinstance(error, ExecTimeout):
        return FailureReason.EXEC_TIMEOUT
    if isinstance(error, PodGone):
        return FailureReason.POD_GONE
    return FailureReason.EXEC_FAILED


async def run_script(
    executor: PodExecutor,
    pod: PodInfo,
    container: str,
    action: Action,
    jobs: Sequence[str],
    processes: Sequence[str],
    *,
    only: Sequence[tuple[str, str]] | None = None,
    wait_s: float = 0.0,
) -> ScriptReport:
    """One exec of the in-pod script (see `build_command` for `only` and `wait_s`); raises `PodFailure` with a
    reason when it gives no usable report."""
    command = build_command(action, jobs, processes, only=only, wait_s=wait_s)
    try:
        result = await executor.run(pod.namespace, pod.name, container, command)
    except ExecError as error:
        observe_exec(0.0, ok=False, reason=_error_reason(error))
        raise PodFailure(_error_reason(error), str(error)) from error
    observe_exec(result.duration_s, ok=True)
    try:
        report = parse_output(result.stdout)
    except ScriptOutputError as error:
        detail = (result.stderr or result.stdout).strip()[-300:]
        raise PodFailure(
            FailureReason.SCRIPT_FAILED, f"the in-pod script failed (exit {result.returncode}): {detail}"
        ) from error
    if report.error == ScriptError.NO_SENDER_TOOL:
        raise PodFailure(
            FailureReason.NO_SENDER_TOOL,
            f"no tool to send datagrams in container {container}; tried {report.error_detail}",
        )
    if report.error == ScriptError.NO_BASE_DIR:
        raise PodFailure(
            FailureReason.NO_SOCKETS, f"no containerrun data directory {report.error_detail} in container {container}"
        )
    return report


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


def count(processes: int) -> str:
    """`1 process`, `2 processes`."""
    return f"{processes} process" if processes == 1 else f"{processes} processes"


def names(pairs: Sequence[tuple[str, str]]) -> str:
    """`job/process, job/process`."""
    return ", ".join(f"{job}/{process}" for job, process in pairs)
