"""Suspend, resume and verify one pod: the exec rounds behind a PodRecord.

Each function runs the in-pod script, polls its status mode until the processes are verified (or a deadline
passes), and returns the pod's new record. Errors become a Failed record with a reason; nothing raises.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from processcontrol.api import PodState, ProcessStatus, ProcessSuspensionSpec
from processcontrol.exceptions import ExecError, ExecForbidden, ExecTimeout, PodGone, ScriptOutputError
from processcontrol.podexec.script import Action, ScriptReport, build_command, parse_output
from processcontrol.podexec.transport import PodExecutor
from processcontrol.reconcile.metrics import observe_exec
from processcontrol.reconcile.plan import Mode, OtherSuspension, PodRecord, process_state, sockets_to_start
from processcontrol.reconcile.settings import OperatorSettings
from processcontrol.reconcile.targets import PodInfo, exec_container

ProgressFn = Callable[[PodRecord], None]


@dataclass(frozen=True)
class PodWork:
    """Everything one pod's exec round needs."""

    executor: PodExecutor
    settings: OperatorSettings
    spec: ProcessSuspensionSpec
    pod: PodInfo
    progress: ProgressFn


class _Failure(Exception):
    """A pod cannot reach the requested state: reason and message for its record."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _error_reason(error: ExecError) -> str:
    if isinstance(error, ExecForbidden):
        return "ExecForbidden"
    if isinstance(error, ExecTimeout):
        return "ExecTimeout"
    if isinstance(error, PodGone):
        return "PodGone"
    return "ExecFailed"


async def _run(
    work: PodWork, container: str, action: Action, jobs: Sequence[str], processes: Sequence[str]
) -> ScriptReport:
    """One exec of the in-pod script; failures become _Failure with a reason a person can act on."""
    command = build_command(action, jobs, processes)
    try:
        result = await work.executor.run(work.pod.namespace, work.pod.name, container, command)
    except ExecError as error:
        observe_exec(0.0, ok=False, reason=_error_reason(error))
        raise _Failure(_error_reason(error), str(error)) from error
    observe_exec(result.duration_s, ok=True)
    try:
        report = parse_output(result.stdout)
    except ScriptOutputError as error:
        detail = (result.stderr or result.stdout).strip()[-300:]
        raise _Failure("ScriptFailed", f"the in-pod script failed (exit {result.returncode}): {detail}") from error
    if report.error == "no-sender-tool":
        raise _Failure(
            "NoSenderTool", f"no tool to send datagrams in container {container}; tried {report.error_detail}"
        )
    if report.error == "no-base-dir":
        raise _Failure("NoSockets", f"no containerrun data directory {report.error_detail} in container {container}")
    return report


def _processes(mode: Mode, report: ScriptReport, settled: bool) -> list[ProcessStatus]:
    return [
        ProcessStatus(
            job=s.job,
            process=s.process,
            state=process_state(mode, s.result, s.running, settled),
            pid=s.pid if s.running else None,
        )
        for s in report.sockets
    ]


def _count(processes: int) -> str:
    return f"{processes} process" if processes == 1 else f"{processes} processes"


def _describe_filters(spec: ProcessSuspensionSpec) -> str:
    parts = [
        f"jobs={','.join(spec.jobs)}" if spec.jobs else "",
        f"processes={','.join(spec.processes)}" if spec.processes else "",
    ]
    shown = " ".join(p for p in parts if p)
    return f" matching {shown}" if shown else ""


def _record(
    work: PodWork, mode: Mode, state: PodState, processes: list[ProcessStatus], message: str, reason: str = ""
) -> PodRecord:
    return PodRecord(
        uid=work.pod.uid,
        state=state,
        mode=mode,
        processes=processes,
        message=message,
        reason=reason,
        restarts=work.pod.restarts,
        checked_at=time.monotonic(),
        transition_time=datetime.now(UTC),
    )


async def _verify(
    work: PodWork,
    container: str,
    mode: Mode,
    report: ScriptReport,
    jobs: Sequence[str],
    processes: Sequence[str],
    pending: Callable[[ScriptReport], list[str]],
) -> ScriptReport:
    """Poll the status mode until `pending(report)` is empty or the deadline passes; report progress meanwhile."""
    deadline = time.monotonic() + work.settings.verify_timeout_s
    delay = work.settings.verify_interval_s
    while pending(report) and time.monotonic() < deadline:
        transient = PodState.SUSPENDING if mode is Mode.SUSPEND else PodState.RESUMING
        work.progress(
            _record(
                work,
                mode,
                transient,
                _processes(mode, report, settled=False),
                f"waiting for {', '.join(pending(report))}",
            )
        )
        await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 2.0)
        report = await _run(work, container, Action.STATUS, jobs, processes)
    return report


async def suspend_pod(work: PodWork) -> PodRecord:
    """Send STOP to the pod's selected sockets and verify every process is gone."""
    mode = Mode.SUSPEND
    try:
        container = exec_container(work.pod, work.spec.container)
        if container is None:
            raise _Failure("NoContainer", f"pod has no container {work.spec.container!r}")
        report = await _run(work, container, Action.STOP, work.spec.jobs, work.spec.processes)
        if not report.sockets:
            raise _Failure(
                "NoSockets", f"no containerrun sockets{_describe_filters(work.spec)} in container {container}"
            )

        def still_running(r: ScriptReport) -> list[str]:
            return [f"{s.job}/{s.process}" for s in r.sockets if s.running and s.result not in ("refused", "stale")]

        report = await _verify(work, container, mode, report, work.spec.jobs, work.spec.processes, still_running)
        running = still_running(report)
        if running:
            raise _Failure(
                "VerifyTimeout",
                f"still running {work.settings.verify_timeout_s:g}s after STOP: {', '.join(running)}",
            )
    except _Failure as failure:
        return _record(work, mode, PodState.FAILED, [], failure.message, failure.reason)
    stale = [f"{s.job}/{s.process}" for s in report.sockets if s.result in ("refused", "stale")]
    message = f"{_count(len(report.sockets))} stopped" + (
        f"; stale sockets (no containerrun): {', '.join(stale)}" if stale else ""
    )
    return _record(work, mode, PodState.SUSPENDED, _processes(mode, report, settled=True), message)


async def resume_pod(work: PodWork, known: Sequence[ProcessStatus], others: Sequence[OtherSuspension]) -> PodRecord:
    """Send START to the selected sockets no other suspension holds, and verify they run again."""
    mode = Mode.RESUME
    try:
        container = exec_container(work.pod, work.spec.container)
        if container is None:
            raise _Failure("NoContainer", f"pod has no container {work.spec.container!r}")
        pairs = sockets_to_start(work.pod, work.spec, known, others)
        if pairs is not None and not known:
            # Overlap needs to know the pod's sockets before it can leave the others' processes alone.
            status = await _run(work, container, Action.STATUS, work.spec.jobs, work.spec.processes)
            pairs = sockets_to_start(work.pod, work.spec, _processes(mode, status, settled=True), others)
        if pairs is None:
            report = await _run(work, container, Action.START, work.spec.jobs, work.spec.processes)
        else:
            for job in sorted({job for job, _ in pairs}):
                await _run(work, container, Action.START, [job], [p for j, p in pairs if j == job])
            report = await _run(work, container, Action.STATUS, work.spec.jobs, work.spec.processes)
        wanted = None if pairs is None else set(pairs)

        def not_running(r: ScriptReport) -> list[str]:
            return [
                f"{s.job}/{s.process}"
                for s in r.sockets
                if not s.running
                and s.result not in ("refused", "stale")
                and (wanted is None or (s.job, s.process) in wanted)
            ]

        report = await _verify(work, container, mode, report, work.spec.jobs, work.spec.processes, not_running)
        waiting = not_running(report)
        if waiting:
            raise _Failure(
                "VerifyTimeout", f"not running {work.settings.verify_timeout_s:g}s after START: {', '.join(waiting)}"
            )
    except _Failure as failure:
        return _record(work, mode, PodState.FAILED, [], failure.message, failure.reason)
    held = (
        [] if wanted is None else [f"{s.job}/{s.process}" for s in report.sockets if (s.job, s.process) not in wanted]
    )
    message = f"{_count(len(report.sockets) - len(held))} running" + (
        f"; still held by another suspension: {', '.join(held)}" if held else ""
    )
    return _record(work, mode, PodState.RESUMED, _processes(mode, report, settled=True), message)
