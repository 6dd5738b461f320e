"""Pure planning: what a suspension asks for, which pods need work, and the status that describes it all.

Nothing here does I/O; the loop feeds it observations and writes what it returns.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from processcontrol.api import (
    PodState,
    PodStatus,
    ProcessState,
    ProcessStatus,
    ProcessSuspensionSpec,
    ProcessSuspensionStatus,
)
from processcontrol.api.duration import parse_duration
from processcontrol.reconcile import conditions as cond
from processcontrol.reconcile.targets import PodInfo, socket_selected, spec_matches_pod

# How long a pod that left the target set stays listed as Gone, so a reader sees where it went.
GONE_RETENTION = timedelta(minutes=5)


class Mode(StrEnum):
    """What the suspension currently asks of its pods."""

    SUSPEND = "Suspend"
    RESUME = "Resume"


@dataclass(frozen=True)
class Intent:
    """The requested mode and why."""

    mode: Mode
    reason: str


@dataclass
class PodRecord:
    """The operator's latest knowledge of one target pod, kept in memory by the suspension's loop."""

    uid: str
    state: PodState
    mode: Mode
    processes: list[ProcessStatus] = field(default_factory=list)
    message: str = ""
    reason: str = ""
    restarts: int = 0
    checked_at: float | None = None  # monotonic time of the last completed exec round
    transition_time: datetime | None = None


@dataclass(frozen=True)
class OtherSuspension:
    """Another suspension in the same namespace, as the overlap rules need it."""

    name: str
    spec: ProcessSuspensionSpec
    holding: bool  # it currently wants its processes stopped

    def holds(self, pod: PodInfo, job: str, process: str) -> bool:
        """Whether it keeps this process of this pod stopped."""
        return self.holding and spec_matches_pod(self.spec, pod.labels) and socket_selected(self.spec, job, process)


def intent_of(spec: ProcessSuspensionSpec, status: ProcessSuspensionStatus, now: datetime) -> Intent:
    """Suspend, unless `suspend: false` or the duration has run out."""
    if not spec.suspend:
        return Intent(Mode.RESUME, "ResumeRequested")
    if status.expires_at is not None and now >= cond.parse_time(status.expires_at):
        return Intent(Mode.RESUME, "Expired")
    return Intent(Mode.SUSPEND, "SuspendRequested")


def needs_work(
    record: PodRecord | None, pod: PodInfo, mode: Mode, monotonic_now: float, reverify_s: float, retry_s: float
) -> bool:
    """Whether a pod must be exec'ed into now: new, restarted, switched mode, unsettled or due for a check."""
    if record is None or record.uid != pod.uid or record.mode != mode or record.restarts != pod.restarts:
        return True
    wait = seconds_until_due(record, mode, monotonic_now, reverify_s, retry_s)
    return wait is not None and wait <= 0


def seconds_until_due(
    record: PodRecord, mode: Mode, monotonic_now: float, reverify_s: float, retry_s: float
) -> float | None:
    """How long until this pod is checked again (None: only when something changes)."""
    if record.checked_at is None:
        return 0.0
    if record.state is PodState.FAILED:
        return record.checked_at + retry_s - monotonic_now
    if record.state is final_state(mode):
        # A resumed pod stays resumed by itself; a suspended one is undone by any container restart.
        if mode is Mode.RESUME:
            return None
        return record.checked_at + reverify_s * reverify_spread(record.uid) - monotonic_now
    return 0.0


def reverify_spread(uid: str) -> float:
    """A fixed factor in [0.75, 1.25) per pod, so the pods of a large suspension do not all come due in one
    round: a container restart would otherwise wait behind hundreds of re-checks."""
    return 0.75 + (zlib.crc32(uid.encode()) % 1000) / 2000


def final_state(mode: Mode) -> PodState:
    """The pod state that means done for this mode."""
    return PodState.SUSPENDED if mode is Mode.SUSPEND else PodState.RESUMED


def sockets_to_start(
    pod: PodInfo, spec: ProcessSuspensionSpec, known: Iterable[ProcessStatus], others: Sequence[OtherSuspension]
) -> list[tuple[str, str]] | None:
    """The (job, process) pairs to START, or None when the spec's own filters can be used as they are.

    A process another suspension still holds stays stopped: it is resumed only when the last one lets go.
    """
    if not any(o.holding and spec_matches_pod(o.spec, pod.labels) for o in others):
        return None
    return [
        (p.job, p.process)
        for p in known
        if socket_selected(spec, p.job, p.process) and not any(o.holds(pod, p.job, p.process) for o in others)
    ]


def held_by_others(pod: PodInfo, others: Sequence[OtherSuspension]) -> bool:
    """Whether another suspension keeps some process of this pod stopped (so its label stays)."""
    return any(o.holding and spec_matches_pod(o.spec, pod.labels) for o in others)


def final_reason(intent: Intent) -> str:
    """The Ready reason once the intent is reached: Suspended, Resumed or Expired."""
    return "Expired" if intent.reason == "Expired" else final_state(intent.mode).value


def _pod_status(pod_name: str, record: PodRecord) -> PodStatus:
    return PodStatus(
        name=pod_name,
        uid=record.uid,
        state=record.state,
        message=record.message,
        last_transition_time=cond.format_time(record.transition_time) if record.transition_time else None,
        processes=record.processes,
    )


def _stall(targets: Sequence[PodInfo], records: Mapping[str, PodRecord]) -> tuple[str, str] | None:
    if not targets:
        return "NoMatchingPods", "no running pod matches the target"
    failed = [
        (p.name, records[p.name]) for p in targets if p.name in records and records[p.name].state is PodState.FAILED
    ]
    if not failed:
        return None
    name, first = failed[0]
    more = f" (and {len(failed) - 1} more failed pods)" if len(failed) > 1 else ""
    return first.reason or "PodFailed", f"pod {name}: {first.message}{more}"


def build_status(
    spec: ProcessSuspensionSpec,
    generation: int | None,
    intent: Intent,
    targets: Sequence[PodInfo],
    records: Mapping[str, PodRecord],
    previous: ProcessSuspensionStatus,
    now: datetime,
) -> ProcessSuspensionStatus:
    """The whole status from what the loop knows: pods, summary, times and kstatus conditions."""
    goal = final_state(intent.mode)
    pods = [_pod_status(p.name, records[p.name]) for p in targets if p.name in records]
    pending = [
        PodStatus(
            name=p.name, uid=p.uid, state=PodState.SUSPENDING if intent.mode is Mode.SUSPEND else PodState.RESUMING
        )
        for p in targets
        if p.name not in records
    ]
    target_names = {p.name for p in targets}
    gone = [
        old.model_copy(
            update={
                "state": PodState.GONE,
                "message": "the pod no longer exists or is no longer targeted",
                "last_transition_time": old.last_transition_time
                if old.state is PodState.GONE
                else cond.format_time(now),
                "processes": [],
            }
        )
        for old in previous.pods
        if old.name not in target_names
        and (
            old.state is not PodState.GONE
            or (old.last_transition_time and now - cond.parse_time(old.last_transition_time) < GONE_RETENTION)
        )
    ]
    done = sum(1 for p in pods if p.state is goal)
    all_done = bool(targets) and done == len(targets)

    suspended_at = previous.suspended_at
    if intent.mode is Mode.SUSPEND and all_done and suspended_at is None:
        suspended_at = cond.format_time(now)
    if intent.reason == "ResumeRequested":
        suspended_at = None
    expires_at = None
    if suspended_at is not None and spec.duration is not None:
        expires_at = cond.format_time(cond.parse_time(suspended_at) + parse_duration(spec.duration))

    stall = _stall(targets, records) if not all_done else None
    progress = f"{done}/{len(targets)} pods {goal.value.lower()}"
    verb = "Suspending" if intent.mode is Mode.SUSPEND else "Resuming"
    if all_done:
        ready = cond.condition(cond.READY, True, final_reason(intent), f"{progress}, verified")
    elif stall is not None:
        ready = cond.condition(cond.READY, False, stall[0], stall[1])
    else:
        ready = cond.condition(cond.READY, False, verb, progress)
    suspended = (
        cond.condition(cond.SUSPENDED, True, "Suspended", f"{progress}, verified")
        if intent.mode is Mode.SUSPEND and all_done
        else cond.condition(cond.SUSPENDED, False, intent.reason if intent.mode is Mode.RESUME else verb, progress)
    )
    reconciling = cond.condition(
        cond.RECONCILING, not all_done and stall is None, verb if not all_done else "Done", progress
    )
    stalled = (
        cond.condition(cond.STALLED, True, stall[0], stall[1])
        if stall
        else cond.condition(cond.STALLED, False, "Progressing")
    )
    return ProcessSuspensionStatus(
        observed_generation=generation,
        conditions=cond.merge_conditions(
            previous.conditions, [ready, suspended, reconciling, stalled], generation, now
        ),
        pods=pods + pending + gone,
        summary=f"{done}/{len(targets)}",
        suspended_at=suspended_at,
        expires_at=expires_at,
    )


def process_state(mode: Mode, result: str, running: bool, settled: bool) -> ProcessState:
    """A process's state from one in-pod report; `settled` means the verification deadline has passed."""
    if result in ("refused", "stale"):
        return ProcessState.STALE
    if result == "failed":
        return ProcessState.UNKNOWN
    if mode is Mode.SUSPEND:
        if not running:
            return ProcessState.STOPPED
        return ProcessState.RUNNING if settled else ProcessState.STOPPING
    return ProcessState.RUNNING if running else ProcessState.STOPPED
