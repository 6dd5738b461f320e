"""Pure planning: what a suspension asks for, which pods need work, and the status that describes it all.

Nothing here does I/O; the loop feeds it observations and writes what it returns.
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from processcontrol.api import (
    MAX_LISTED_PODS,
    Condition,
    PodCounts,
    PodState,
    PodStatus,
    ProcessState,
    ProcessStatus,
    ProcessSuspensionSpec,
    ProcessSuspensionStatus,
)
from processcontrol.api.duration import parse_duration
from processcontrol.api.models import (
    MAX_POD_PROCESSES,
    MAX_PROBE_CONFLICTS,
    MAX_PROBE_DESCRIPTION,
    PreviewStatus,
    ProbePolicy,
)
from processcontrol.api.reasons import FailureReason, Reason
from processcontrol.api.timestamps import format_time, format_time_up, parse_time
from processcontrol.podexec.script import SocketResult
from processcontrol.reconcile import conditions as cond
from processcontrol.reconcile.stages import resuming_levels, stage_status, suspending_levels
from processcontrol.targets import PodInfo

# Well under the 4,096 characters the status schema allows a pod's message.
MESSAGE_LIMIT = 1000


class Mode(StrEnum):
    """What the suspension currently asks of its pods."""

    SUSPEND = "Suspend"
    RESUME = "Resume"


@dataclass(frozen=True)
class Intent:
    """The requested mode and why."""

    mode: Mode
    reason: Reason


@dataclass
class PodRecord:
    """What a pod worker knows of one suspension's effect on its pod: the outcome the status is built from."""

    uid: str
    state: PodState
    mode: Mode
    generation: int | None  # the suspension's generation this outcome answers
    processes: list[ProcessStatus] = field(default_factory=list)
    message: str = ""
    reason: str = ""
    transition_time: datetime | None = None
    targeted: bool = True  # False: the pod left the target set and is only being given back
    probe_conflicts: tuple[str, ...] = ()  # probes.ContainerProbe.describe() of each conflicting probe
    restarts: int = 0  # of the targeted containers since the hold was taken
    restart_loop: str = ""  # set while they loop: which container, how often, the kubelet's reason
    held_since: datetime | None = None  # when the suspension's hold here was first written (its ledger says)
    stage: int | None = None  # of a staged suspension: the pod's level (stages.py)

    @property
    def suspending(self) -> bool:
        """An outcome of suspending."""
        return self.mode is Mode.SUSPEND

    @property
    def failed(self) -> bool:
        """The pod failed."""
        return self.state is PodState.FAILED


def expiry_of(spec: ProcessSuspensionSpec, suspended_at: str | None) -> datetime | None:
    """When the spec's duration runs out: from the first effect (`suspendedAt`). Not the `expiresAt` last written:
    that was for the spec of then, and a duration removed or changed since counts from this request on."""
    if spec.duration is None or suspended_at is None:
        return None
    return parse_time(suspended_at) + parse_duration(spec.duration)


def intent_of(spec: ProcessSuspensionSpec, status: ProcessSuspensionStatus, now: datetime) -> Intent:
    """Suspend, unless `suspend: false`, a preview (which holds nothing: to the pods it is a resume) or the
    duration has run out."""
    if not spec.suspend:
        return Intent(Mode.RESUME, Reason.RESUME_REQUESTED)
    if spec.preview:
        return Intent(Mode.RESUME, Reason.PREVIEW_REQUESTED)
    expiry = expiry_of(spec, status.suspended_at)
    if expiry is not None and now >= expiry:
        return Intent(Mode.RESUME, Reason.EXPIRED)
    return Intent(Mode.SUSPEND, Reason.SUSPEND_REQUESTED)


def reverify_spread(uid: str) -> float:
    """A fixed factor in [0.75, 1.25) per pod, so the pods of a large suspension do not all come due in one
    round: a container restart would otherwise wait behind hundreds of re-checks."""
    return 0.75 + (zlib.crc32(uid.encode()) % 1000) / 2000


def final_state(mode: Mode) -> PodState:
    """The pod state that means done for this mode."""
    return PodState.SUSPENDED if mode is Mode.SUSPEND else PodState.RESUMED


def final_reason(intent: Intent) -> Reason:
    """The Ready reason once the intent is reached: Suspended, Resumed, Expired or Previewed."""
    if intent.reason in (Reason.EXPIRED, Reason.PREVIEW_REQUESTED):
        return Reason.PREVIEWED if intent.reason == Reason.PREVIEW_REQUESTED else Reason.EXPIRED
    return Reason.SUSPENDED if intent.mode is Mode.SUSPEND else Reason.RESUMED


def _pod_status(pod_name: str, record: PodRecord) -> PodStatus:
    # Exec errors can quote long API answers; the status keeps their start (the events and log have the rest).
    message = record.message[:MESSAGE_LIMIT]
    # What a pod reports (an entry per socket its container has, probes quoting its commands) is cut to the status
    # schema's limits here: no pod can make a status the model refuses (the status daemon failed on every write).
    processes = record.processes
    if len(processes) > MAX_POD_PROCESSES:
        # Those that need attention first (running while suspended, stale), then by name.
        processes = sorted(processes, key=lambda p: (p.state is ProcessState.STOPPED, p.job, p.process))
        processes = processes[:MAX_POD_PROCESSES]
        note = f"{MAX_POD_PROCESSES} of {len(record.processes)} processes listed"
        message = f"{note}; {message}"[:MESSAGE_LIMIT] if message else note
    return PodStatus(
        name=pod_name[:253],
        uid=record.uid[:64],
        state=record.state,
        message=message,
        last_transition_time=format_time(record.transition_time) if record.transition_time else None,
        processes=processes,
        probe_conflicts=[_cut(c, MAX_PROBE_DESCRIPTION) for c in record.probe_conflicts[:MAX_PROBE_CONFLICTS]],
        restarts=record.restarts,
    )


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _current(record: PodRecord | None, generation: int | None, intent: Intent) -> bool:
    """An outcome that answers this generation's request (an older one says nothing about it)."""
    return record is not None and record.generation == generation and record.mode is intent.mode


def _attention(state: PodState) -> int:
    """Sort key: failed first, then in progress, then done."""
    return {PodState.FAILED: 0, PodState.SUSPENDING: 1, PodState.RESUMING: 1}.get(state, 2)


def build_status(
    spec: ProcessSuspensionSpec,
    generation: int | None,
    intent: Intent,
    targets: Sequence[PodInfo],
    records: Mapping[str, PodRecord],
    previous: ProcessSuspensionStatus,
    now: datetime,
    preview: PreviewStatus | None = None,
    run_began: datetime | None = None,
) -> ProcessSuspensionStatus:
    """The whole status from the pod workers' outcomes: counts, a bounded list of pods, times and conditions.

    A pod counts as done only with an outcome for this very generation: after a spec change, the previous
    round's results never make the new request look carried out. A preview (`preview`, what its looks found) is
    Ready once its pods hold nothing of it and every target was looked at for this generation. `run_began`: when
    this run of `suspend: true` began as the operator saw it (it saw the run before end); `suspendedAt` is never
    earlier."""
    goal = final_state(intent.mode)
    transient = PodState.SUSPENDING if intent.mode is Mode.SUSPEND else PodState.RESUMING
    # Every target is counted, but only MAX_LISTED_PODS are listed: the models are built for those alone (at
    # 10,000 pods, building one per pod at every write was a third of the operator's time).
    # (attention, name, uid, its current outcome or None: not heard from for this request)
    candidates: list[tuple[int, str, str, PodRecord | None]] = []
    done = failed = 0
    by_reason: dict[str, int] = {}
    first_failed: tuple[str, PodRecord] | None = None
    conflicted: list[tuple[str, PodRecord]] = []
    looping: list[tuple[str, PodRecord]] = []
    for pod in targets:
        record = records.get(pod.name)
        if record is not None and record.mode is Mode.SUSPEND and intent.mode is Mode.SUSPEND:
            # Known from an earlier generation too: the probes do not change with the spec.
            if record.probe_conflicts:
                conflicted.append((pod.name, record))
            if record.restart_loop:
                looping.append((pod.name, record))
        if _current(record, generation, intent) and record is not None:
            candidates.append((_attention(record.state), pod.name, pod.uid, record))
            if record.state is goal:
                done += 1
            elif record.state is PodState.FAILED:
                failed += 1
                first_failed = first_failed or (pod.name, record)
                reason = record.reason or FailureReason.POD_FAILED
                by_reason[reason] = by_reason.get(reason, 0) + 1
        else:
            candidates.append((_attention(transient), pod.name, pod.uid, None))
    target_names = {p.name for p in targets}
    releasing = [(n, r) for n, r in records.items() if n not in target_names and not r.targeted]
    candidates.extend((_attention(record.state), name, record.uid, record) for name, record in releasing)
    shown = [
        _pod_status(name, record) if record is not None else PodStatus(name=name, uid=uid, state=transient)
        for _, name, uid, record in heapq.nsmallest(MAX_LISTED_PODS, candidates, key=lambda c: (c[0], c[1]))
    ]
    all_done = bool(targets) and done == len(targets)
    previewing = intent.reason == Reason.PREVIEW_REQUESTED
    if previewing:
        # Nothing held is half of it; the looks are the other.
        all_done = all_done and previewed(preview, generation)

    suspended_at = previous.suspended_at
    if intent.mode is Mode.SUSPEND and suspended_at is None:
        # A duration runs from the first effect on any pod: the first hold written, even one never verified. Only
        # outcomes of this request count: a pod not heard from since an earlier run still shows that run's hold.
        first = min(
            (r.held_since for r in records.values() if r.held_since is not None and _current(r, generation, intent)),
            default=None,
        )
        if first is not None and run_began is not None:
            first = max(first, run_began)  # a pod that never gave the run before back still shows its hold
        if first is not None:
            suspended_at = format_time_up(first)
        elif done:
            suspended_at = format_time_up(now)
    if intent.reason in (Reason.RESUME_REQUESTED, Reason.PREVIEW_REQUESTED):
        suspended_at = None
    expiry = expiry_of(spec, suspended_at)
    expires_at = format_time(expiry) if expiry is not None else None

    stall = _stall(targets, failed, first_failed) if not all_done else None
    if looping and stall is None:
        name, record = looping[0]
        more = f" (and {len(looping) - 1} more pods)" if len(looping) > 1 else ""
        stall = Reason.RESTART_LOOP, f"pod {name}: {record.restart_loop}{more}"
    progress = f"{done}/{len(targets)} pods {goal.value.lower()}"
    stage = None
    if spec.stages and not previewing:
        suspending = intent.mode is Mode.SUSPEND
        levels = suspending_levels(records, [p.name for p in targets]) if suspending else resuming_levels(records)
        stage = stage_status(spec.stage_count, suspending, levels)
        if not all_done:
            progress += f", stage {stage.summary}"
    verb = Reason.SUSPENDING if intent.mode is Mode.SUSPEND else Reason.RESUMING
    extra: list[Condition] = []
    if previewing:
        verb = Reason.PREVIEWING
        found = preview_message(preview, generation)
        progress = f"{done}/{len(targets)} pods hold nothing of it; {found}"
        extra.append(
            cond.condition(
                cond.PREVIEWED,
                previewed(preview, generation),
                Reason.PREVIEWED if previewed(preview, generation) else Reason.PREVIEWING,
                found,
            )
        )
    if all_done and not looping:
        ready = cond.condition(cond.READY, True, final_reason(intent), f"{progress}, verified")
    elif stall is not None:
        ready = cond.condition(cond.READY, False, stall[0], stall[1])
    else:
        ready = cond.condition(cond.READY, False, verb, progress)
    suspended = (
        cond.condition(cond.SUSPENDED, True, Reason.SUSPENDED, f"{progress}, verified")
        if intent.mode is Mode.SUSPEND and all_done
        else cond.condition(cond.SUSPENDED, False, intent.reason if intent.mode is Mode.RESUME else verb, progress)
    )
    reconciling = cond.condition(
        cond.RECONCILING, not all_done and stall is None, verb if not all_done else Reason.DONE, progress
    )
    probe_conflict = _probe_condition(spec, conflicted, looping)
    stalled = (
        cond.condition(cond.STALLED, True, stall[0], stall[1])
        if stall
        else cond.condition(cond.STALLED, False, Reason.PROGRESSING)
    )
    return ProcessSuspensionStatus(
        observed_generation=generation,
        conditions=cond.merge_conditions(
            previous.conditions, [ready, suspended, reconciling, stalled, probe_conflict, *extra], generation, now
        ),
        pods=shown,
        counts=PodCounts(
            targets=len(targets),
            done=done,
            in_progress=len(targets) - done - failed,
            failed=failed,
            failed_by_reason=dict(sorted(by_reason.items())),
            releasing=len(releasing),
            probe_conflicts=len(conflicted),
            restart_loops=len(looping),
        ),
        summary=f"{done}/{len(targets)}",
        suspended_at=suspended_at,
        expires_at=expires_at,
        stage=stage,
        preview=preview if previewing else None,
    )


def previewed(preview: PreviewStatus | None, generation: int | None) -> bool:
    """Every pod the preview targets was looked at for this generation."""
    return preview is not None and preview.observed_generation == generation and preview.looked == preview.targets


def preview_message(preview: PreviewStatus | None, generation: int | None) -> str:
    """What the looks found, in one sentence: `would stop 5 processes in 2 of 3 pods; ...`."""
    if preview is None or preview.observed_generation != generation:
        return "looking at the target pods"
    if not preview.targets:
        return "no pod matches the target"
    found = [f"{_many(preview.targets, 'pod')}: would stop {_many(preview.would_stop, 'process')}"]
    if preview.would_skip:
        found.append(f"would leave {preview.would_skip} running for their probes")
    if preview.probe_conflicts:
        found.append(f"probe conflicts in {_many(preview.probe_conflicts, 'pod')}")
    if preview.cannot:
        reasons = ", ".join(f"{reason}: {n}" for reason, n in preview.cannot_by_reason.items())
        found.append(f"cannot act fully in {_many(preview.cannot, 'pod')} ({reasons})")
    if preview.looked < preview.targets:
        found.append(f"{preview.looked}/{preview.targets} pods looked at so far")
    return "; ".join(found)


def _many(n: int, word: str) -> str:
    """`1 pod`, `2 pods`, `2 processes`."""
    return f"{n} {word}" if n == 1 else f"{n} {word}{'es' if word.endswith('s') else 's'}"


# The ProbeConflict reason per policy, while no container loops.
_PROBE_REASONS = {
    ProbePolicy.WARN: Reason.PROBES_WILL_FAIL,
    ProbePolicy.SKIP: Reason.PROBED_PROCESSES_SKIPPED,
    ProbePolicy.REFUSE: Reason.REFUSED,
}


def _probe_condition(
    spec: ProcessSuspensionSpec, conflicted: Sequence[tuple[str, PodRecord]], looping: Sequence[tuple[str, PodRecord]]
) -> Condition:
    """ProbeConflict: which probes of which pods, what the policy does about them, and any restart loop."""
    if not conflicted:
        return cond.condition(
            cond.PROBE_CONFLICT, False, Reason.NO_CONFLICT, "no targeted container has a probe that fails"
        )
    probes = sorted({probe for _, record in conflicted for probe in record.probe_conflicts})
    pods = [name for name, _ in conflicted]
    shown = ", ".join(pods[:5]) + (f" and {len(pods) - 5} more" if len(pods) > 5 else "")
    listed = "; ".join(probes[:10]) + ("; ..." if len(probes) > 10 else "")
    doing = {
        ProbePolicy.WARN: "stopped anyway: the kubelet restarts these containers and the operator stops them again",
        ProbePolicy.SKIP: "their processes are left running",
        ProbePolicy.REFUSE: "nothing stopped in these pods until probes is changed",
    }[spec.probes]
    pods_word = "1 pod" if len(pods) == 1 else f"{len(pods)} pods"
    message = f"{pods_word} ({shown}) have {listed}; {doing} (probes: {spec.probes.value})"
    if looping:
        name, record = looping[0]
        return cond.condition(
            cond.PROBE_CONFLICT, True, Reason.RESTART_LOOP, f"pod {name}: {record.restart_loop}; {message}"
        )
    return cond.condition(cond.PROBE_CONFLICT, True, _PROBE_REASONS[spec.probes], message[: MESSAGE_LIMIT * 4])


def _stall(
    targets: Sequence[PodInfo], failed: int, first_failed: tuple[str, PodRecord] | None
) -> tuple[str, str] | None:
    if not targets:
        return Reason.NO_MATCHING_PODS, "no running pod matches the target"
    if first_failed is None:
        return None
    name, record = first_failed
    more = f" (and {failed - 1} more failed pods)" if failed > 1 else ""
    return record.reason or FailureReason.POD_FAILED, f"pod {name}: {record.message[:MESSAGE_LIMIT]}{more}"


def process_state(mode: Mode, result: SocketResult, running: bool, settled: bool) -> ProcessState:
    """A process's state from one in-pod report; `settled` means the verification deadline has passed."""
    if result in (SocketResult.REFUSED, SocketResult.STALE):
        return ProcessState.STALE
    if result == SocketResult.FAILED:
        return ProcessState.UNKNOWN
    if mode is Mode.SUSPEND:
        if not running:
            return ProcessState.STOPPED
        return ProcessState.RUNNING if settled else ProcessState.STOPPING
    return ProcessState.RUNNING if running else ProcessState.STOPPED
