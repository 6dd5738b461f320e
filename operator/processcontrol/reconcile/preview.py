"""A preview (`spec.preview: true`): what a suspension would do in each pod it targets, from one look per pod that
sends nothing and writes no ledger.

To the pod workers a preview is a resume (SuspensionInfo.holding): it takes no hold, and one patched from live to
preview gives back what it held. The looking is here instead, owned by the suspension's status daemon: one look
per pod, generation and container restart count (a restart may change what runs), bounded by the exec transport's
concurrency; its findings are status.preview. A pod is looked at only once its worker has answered the preview
(nothing held, verified, or failed): a look while a hold is being given back would see what is about to change.
The container, the filters and the probe reading are the pod worker's own (targets.exec_container, pods.look,
probes.PodProbes)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from processcontrol.api import PodState
from processcontrol.api.models import (
    MAX_MISSING,
    MAX_POD_PROCESSES,
    MAX_PREVIEW_PODS,
    MAX_PROBE_CONFLICTS,
    MAX_PROBE_DESCRIPTION,
    PreviewPod,
    PreviewStatus,
    ProbePolicy,
    ProcessSuspensionSpec,
)
from processcontrol.api.reasons import FailureReason
from processcontrol.api.timestamps import format_time
from processcontrol.bounded import bounded
from processcontrol.exceptions import PodFailure
from processcontrol.ledger import process_key
from processcontrol.podexec.script import ScriptReport
from processcontrol.podexec.transport import PodExecutor
from processcontrol.reconcile.plan import MESSAGE_LIMIT, Mode, PodRecord
from processcontrol.reconcile.pods import is_stale, look, names, rejected_failure, sender_missing
from processcontrol.targets import PodInfo, exec_container, spec_matches_pod

Pair = tuple[str, str]
# (pod uid, its restart count, the suspension's generation): a look answers exactly this.
LookKey = tuple[str, int, int | None]


def key_of(pod: PodInfo, generation: int | None) -> LookKey:
    """What a look of this pod must answer to be current."""
    return pod.uid, pod.restarts, generation


def given_back(records: Mapping[str, PodRecord], generation: int | None) -> set[str]:
    """The pods whose worker has answered this generation's request to hold nothing: verified, or failed (then
    the look says why too)."""
    return {
        name
        for name, record in records.items()
        if record.generation == generation
        and record.mode is Mode.RESUME
        and record.state in (PodState.RESUMED, PodState.FAILED)
    }


def _keys(pairs: Iterable[Pair]) -> list[str]:
    return [process_key(job, process) for job, process in sorted(pairs)][:MAX_POD_PROCESSES]


def found(spec: ProcessSuspensionSpec, pod: PodInfo, container: str, report: ScriptReport) -> PreviewPod:
    """What the suspension would do in the pod, from its look: the probes policy applied to the live sockets as the
    first hold applies it (holding.Holding._first_hold), stale sockets and filter names no socket has."""
    live = [(s.job, s.process) for s in report.sockets if not is_stale(s)]
    running = {(s.job, s.process) for s in report.sockets if not is_stale(s) and s.running}
    stale = [(s.job, s.process) for s in report.sockets if is_stale(s)]
    conflicts = [probe.describe() for probe in pod.probes.conflicts(live)]
    missing = [f"job {job}" for job in spec.jobs if all(s.job != job for s in report.sockets)]
    missing += [f"process {process}" for process in spec.processes if all(s.process != process for s in report.sockets)]
    reason, notes = "", []
    if conflicts and spec.probes is ProbePolicy.REFUSE:
        skipped, acting = live, []
        reason = FailureReason.PROBE_CONFLICT
        notes.append(f"nothing stopped (probes: Refuse): stopped processes would fail {'; '.join(conflicts)}")
    else:
        skipped = pod.probes.probed(live) if spec.probes is ProbePolicy.SKIP else []
        acting = [pair for pair in live if pair not in skipped]
    stop = [pair for pair in acting if pair in running]
    keep = [pair for pair in acting if pair not in running]
    if acting:
        notes.insert(0, f"would stop {len(stop)}" + (f", keep {len(keep)} stopped" if keep else ""))
    if skipped and spec.probes is ProbePolicy.SKIP:
        notes.append(f"would leave running (probes: Skip): {names(skipped)}")
    if conflicts and spec.probes is ProbePolicy.WARN:
        notes.append("stopped anyway (probes: Warn): the kubelet restarts these containers")
    if stale:
        notes.append(f"stale sockets (no containerrun): {names(stale)}")
    if not report.sockets:
        reason = FailureReason.NO_SOCKETS
        notes.append("no containerrun sockets" + (f" ({', '.join(missing)})" if missing else ""))
    elif (no_sender := sender_missing(report, container)) is not None:
        # The pod worker takes no hold it could never give back: nothing here would be stopped.
        reason, notes = no_sender.reason, [f"{no_sender.message}: would stop nothing of {len(live)} processes"]
        stop, keep = [], []
    elif (rejected := rejected_failure(report, "; ".join(notes) or "nothing else")) is not None:
        reason, notes = rejected.reason, [rejected.message]
    return PreviewPod(
        name=pod.name,
        uid=pod.uid,
        container=container,
        reason=reason,
        message=bounded("; ".join(notes), MESSAGE_LIMIT) if notes else "",
        stop=_keys(stop),
        keep_stopped=_keys(keep),
        skip=_keys(skipped),
        stale=_keys(stale),
        missing=missing[:MAX_MISSING],
        probe_conflicts=[bounded(c, MAX_PROBE_DESCRIPTION) for c in conflicts[:MAX_PROBE_CONFLICTS]],
    )


def failed(pod: PodInfo, container: str | None, failure: PodFailure) -> PreviewPod:
    """A pod the look could not get into, or whose look said nothing usable."""
    return PreviewPod(
        name=pod.name,
        uid=pod.uid,
        container=container,
        reason=failure.reason,
        message=bounded(failure.message, MESSAGE_LIMIT),
    )


def not_running(pod: PodInfo) -> PreviewPod:
    """A pod that matches but cannot be exec'ed into (and that a suspension would not act in until it runs)."""
    why = "being deleted" if pod.terminating else f"phase {pod.phase or 'unknown'}, not Running"
    return PreviewPod(name=pod.name, uid=pod.uid, reason=FailureReason.POD_NOT_RUNNING, message=why)


async def look_at(executor: PodExecutor, spec: ProcessSuspensionSpec, pod: PodInfo) -> PreviewPod:
    """One look into the pod (no go-ahead: nothing is sent), and what the suspension would do there."""
    container = exec_container(pod, spec.container)
    if container is None:
        return failed(pod, None, PodFailure(FailureReason.NO_CONTAINER, f"pod has no container {spec.container!r}"))
    try:
        report = await look(executor, pod, container, spec.jobs, spec.processes)
    except PodFailure as failure:
        return failed(pod, container, failure)
    if spec.stages:
        # The look of a staged suspension has no filter (the script takes one, not a list): only what they select.
        selected = [s for s in report.sockets if spec.stage_of(s.job, s.process) is not None]
        report = report.model_copy(update={"sockets": selected})
    return found(spec, pod, container, report)


def _attention(pod: PreviewPod) -> tuple[int, str]:
    """Pods it cannot act in first, then those with probe conflicts, then the rest; by name."""
    return (0 if pod.reason else 1 if pod.probe_conflicts else 2), pod.name


def build_preview(
    generation: int | None,
    matching: Sequence[PodInfo],
    looks: Mapping[str, tuple[LookKey, PreviewPod]],
    looked_at: datetime | None,
) -> PreviewStatus:
    """status.preview: counts over every matching pod whose look is current, and a bounded list of them."""
    current = []
    for pod in matching:
        if not pod.running:
            current.append(not_running(pod))
            continue
        entry = looks.get(pod.name)
        if entry is not None and entry[0] == key_of(pod, generation):
            current.append(entry[1])
    by_reason: dict[str, int] = {}
    for pod_preview in current:
        if pod_preview.reason:
            by_reason[pod_preview.reason] = by_reason.get(pod_preview.reason, 0) + 1
    return PreviewStatus(
        observed_generation=generation,
        looked_at=format_time(looked_at) if looked_at is not None else None,
        targets=len(matching),
        looked=len(current),
        would_stop=sum(len(p.stop) for p in current),
        would_skip=sum(len(p.skip) for p in current),
        probe_conflicts=sum(1 for p in current if p.probe_conflicts),
        cannot=sum(by_reason.values()),
        cannot_by_reason=dict(sorted(by_reason.items())[:32]),
        pods=sorted(current, key=_attention)[:MAX_PREVIEW_PODS],
    )


@dataclass
class _InFlight:
    key: LookKey
    task: asyncio.Task[None]


class Previewer:
    """One suspension's looks: started for each matching running pod without a current one, never two at once for
    a pod; `looked` is called after each (the daemon writes the status again)."""

    def __init__(self, executor: PodExecutor, looked: Callable[[], None]) -> None:
        self.executor = executor
        self.looked = looked
        self.looks: dict[str, tuple[LookKey, PreviewPod]] = {}
        self.in_flight: dict[str, _InFlight] = {}
        self.looked_at: datetime | None = None

    def preview(
        self,
        spec: ProcessSuspensionSpec,
        generation: int | None,
        pods: Iterable[PodInfo],
        records: Mapping[str, PodRecord],
    ) -> PreviewStatus:
        """The preview as far as it goes; looks start for the pods that need one and whose worker has answered
        (`records`, the pod workers' outcomes)."""
        ready = given_back(records, generation)
        matching = sorted((p for p in pods if spec_matches_pod(spec, p.labels)), key=lambda p: p.name)
        names_now = {p.name for p in matching}
        for name in [n for n in self.looks if n not in names_now]:
            del self.looks[name]
        for name in [n for n in self.in_flight if n not in names_now]:
            self.in_flight.pop(name).task.cancel()
        for pod in matching:
            key = key_of(pod, generation)
            if not pod.running or pod.name not in ready or (pod.name in self.looks and self.looks[pod.name][0] == key):
                continue
            flying = self.in_flight.get(pod.name)
            if flying is not None and flying.key == key:
                continue
            if flying is not None:
                flying.task.cancel()  # for an older spec or container: what it finds answers nothing asked now
            task = asyncio.create_task(self._look(spec, pod, key), name=f"preview {pod.namespace}/{pod.name}")
            self.in_flight[pod.name] = _InFlight(key, task)
        return build_preview(generation, matching, self.looks, self.looked_at)

    async def _look(self, spec: ProcessSuspensionSpec, pod: PodInfo, key: LookKey) -> None:
        result = await look_at(self.executor, spec, pod)
        flying = self.in_flight.get(pod.name)
        if flying is None or flying.key != key:
            return
        del self.in_flight[pod.name]
        self.looks[pod.name] = (key, result)
        self.looked_at = datetime.now(UTC)
        self.looked()

    def forget(self) -> None:
        """Not a preview (any more), or the daemon ends: no look goes on, none is kept."""
        for flying in self.in_flight.values():
            flying.task.cancel()
        self.in_flight.clear()
        self.looks.clear()

    def __enter__(self) -> Previewer:
        return self

    def __exit__(self, *_: object) -> None:
        self.forget()
