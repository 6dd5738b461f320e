"""One ProcessSuspension's life: the loop that keeps it true, and the release on deletion.

The loop is a kopf daemon: it wakes on changes of its object or of matching pods (handlers.py sets its wake-up
event) and on its own deadlines (re-verification, retries, expiry), and each time it brings the due pods to the
requested state, writes status, labels pods and posts events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from processcontrol.api import SUSPENDED_LABEL, PodState, ProcessSuspensionSpec, ProcessSuspensionStatus
from processcontrol.exceptions import ApiError
from processcontrol.k8s import KubeClient
from processcontrol.podexec.transport import PodExecutor
from processcontrol.reconcile import conditions as cond
from processcontrol.reconcile import metrics
from processcontrol.reconcile.plan import (
    Intent,
    Mode,
    OtherSuspension,
    PodRecord,
    build_status,
    final_reason,
    held_by_others,
    intent_of,
    needs_work,
    seconds_until_due,
)
from processcontrol.reconcile.pods import PodWork, resume_pod, suspend_pod
from processcontrol.reconcile.settings import OperatorSettings
from processcontrol.reconcile.targets import PodInfo, select_targets

# Failures after which there is nothing to resume: the pod went away, or nothing could ever be sent to it.
NOTHING_TO_RESUME = frozenset({"PodGone", "NoSockets", "NoContainer", "NoSenderTool", "ExecForbidden"})


@dataclass(frozen=True)
class SuspensionInfo:
    """A suspension as the namespace index keeps it, for the overlap rules and pod wake-ups."""

    name: str
    spec: ProcessSuspensionSpec | None
    expires_at: str | None
    deleting: bool

    def holding(self, now: datetime) -> bool:
        """Whether it currently wants its processes stopped."""
        if self.spec is None or self.deleting or not self.spec.suspend:
            return False
        return self.expires_at is None or now < cond.parse_time(self.expires_at)


def suspension_info(name: str, spec: Mapping[str, Any], status: Mapping[str, Any], deleting: bool) -> SuspensionInfo:
    """Index entry of one suspension; an invalid spec holds nothing."""
    try:
        parsed: ProcessSuspensionSpec | None = ProcessSuspensionSpec.model_validate(dict(spec))
    except ValidationError:
        parsed = None
    return SuspensionInfo(name=name, spec=parsed, expires_at=status.get("expiresAt"), deleting=deleting)


@dataclass
class Runtime:
    """What every handler shares: settings, the exec transport, the API client and the wake-up events."""

    settings: OperatorSettings
    executor: PodExecutor
    kube: KubeClient
    wakeups: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    # Uids of deleted suspensions already released: kopf may call the deletion handler again after it succeeded
    # (it forgets the handler's progress while the daemon is still being stopped), and a second release would
    # exec into every pod once more for nothing. After an operator restart the set is empty: one extra release.
    released: set[str] = field(default_factory=set)

    def wake(self, namespace: str, name: str) -> None:
        """Make a suspension's loop run now."""
        event = self.wakeups.get((namespace, name))
        if event is not None:
            event.set()


def others_in(namespace_suspensions: Iterable[SuspensionInfo], own_name: str, now: datetime) -> list[OtherSuspension]:
    """The namespace's other suspensions, for the overlap rules."""
    return [
        OtherSuspension(name=s.name, spec=s.spec, holding=s.holding(now))
        for s in namespace_suspensions
        if s.name != own_name and s.spec is not None
    ]


def _now() -> datetime:
    return datetime.now(UTC)


class SuspensionLoop:
    """The in-memory state and steps of one suspension's daemon."""

    def __init__(self, runtime: Runtime, body: kopf.Body, logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        self.runtime = runtime
        self.body = body
        self.logger = logger
        self.namespace = body.metadata.namespace or ""
        self.name = body.metadata.name or ""
        self.records: dict[str, PodRecord] = {}
        self.written: dict[str, Any] | None = None
        self.status = ProcessSuspensionStatus.model_validate(dict(body.status))
        self.last_intent: Intent | None = None

    # One round ------------------------------------------------------------------------------------------------

    async def round(self, pods: Iterable[PodInfo], suspensions: Iterable[SuspensionInfo]) -> float | None:
        """Bring due pods to the requested state; return seconds until the next check is due (None: on events only)."""
        try:
            spec = ProcessSuspensionSpec.model_validate(dict(self.body.spec))
        except ValidationError as error:
            await self._write_invalid(str(error))
            return None
        now = _now()
        intent = intent_of(spec, self.status, now)
        self._announce(intent)
        targets = select_targets(spec, pods)
        others = others_in(suspensions, self.name, now)
        target_names = {p.name for p in targets}
        for gone in set(self.records) - target_names:
            del self.records[gone]
        monotonic = time.monotonic()
        settings = self.runtime.settings
        due = [
            p
            for p in targets
            if needs_work(
                self.records.get(p.name),
                p,
                intent.mode,
                monotonic,
                settings.reverify_interval_s,
                settings.failure_backoff_s,
            )
        ]
        if due:
            if self._is_new_request(intent):
                # Say at once that the new request is being worked on, so nobody reads the old Ready as the answer.
                await self._publish(spec, intent, targets)
            await self._work(spec, intent, due, others, targets)
        await self._publish(spec, intent, targets)
        await self._sync_labels(intent, targets, others)
        return self._next_check(intent)

    async def _work(
        self,
        spec: ProcessSuspensionSpec,
        intent: Intent,
        due: list[PodInfo],
        others: list[OtherSuspension],
        targets: list[PodInfo],
    ) -> None:
        """Run the due pods in parallel, publishing progress while they run."""
        before = {p.name: self.records.get(p.name) for p in due}

        def progress_for(pod: PodInfo) -> PodWork:
            def progress(record: PodRecord) -> None:
                self.records[pod.name] = record

            return PodWork(self.runtime.executor, self.runtime.settings, spec, pod, progress)

        tasks: dict[asyncio.Task[PodRecord], PodInfo] = {}
        for pod in due:
            work = progress_for(pod)
            previous = self.records.get(pod.name)
            if intent.mode is Mode.SUSPEND:
                coroutine = suspend_pod(work)
            else:
                coroutine = resume_pod(work, previous.processes if previous else [], others)
            tasks[asyncio.create_task(coroutine, name=f"{self.namespace}/{pod.name}")] = pod
        pending = set(tasks)
        while pending:
            finished, pending = await asyncio.wait(pending, timeout=self.runtime.settings.status_interval_s)
            for task in finished:
                pod = tasks[task]
                record = task.result()
                self.logger.info(f"pod {pod.name}: {record.state.value}: {record.message}")
                self.records[pod.name] = self._keep_transition_time(before[pod.name], record)
                self._pod_event(pod, before[pod.name], record, intent)
            if pending:
                await self._publish(spec, intent, targets)

    def _is_new_request(self, intent: Intent) -> bool:
        generation = self.body.metadata.get("generation")
        if self.status.observed_generation != generation:
            return True
        ready = cond.find(self.status.conditions, cond.READY)
        return ready is not None and ready.status == "True" and ready.reason != final_reason(intent)

    # Status, labels, events -----------------------------------------------------------------------------------

    @staticmethod
    def _keep_transition_time(before: PodRecord | None, after: PodRecord) -> PodRecord:
        if before is not None and before.state is after.state and before.uid == after.uid:
            after.transition_time = before.transition_time
        return after

    async def _publish(self, spec: ProcessSuspensionSpec, intent: Intent, targets: list[PodInfo]) -> None:
        generation = self.body.metadata.get("generation")
        status = build_status(spec, generation, intent, targets, self.records, self.status, _now())
        await self._write(status)
        suspended = [r for r in self.records.values() if r.mode is Mode.SUSPEND and r.state is PodState.SUSPENDED]
        metrics.SUSPENDED_PODS.labels(self.namespace, self.name).set(len(suspended))
        metrics.SUSPENDED_PROCESSES.labels(self.namespace, self.name).set(sum(len(r.processes) for r in suspended))

    async def _write(self, status: ProcessSuspensionStatus) -> None:
        payload = status.model_dump(by_alias=True, mode="json")
        previous_ready = cond.find(self.status.conditions, cond.READY)
        if payload == self.written:
            return
        try:
            await self.runtime.kube.patch_suspension_status(self.namespace, self.name, payload)
        except ApiError as error:
            self.logger.warning(f"could not write status: {error}")
            return
        self.written = payload
        self.status = status
        ready = cond.find(status.conditions, cond.READY)
        if ready is not None and ready.status == "True" and (previous_ready is None or previous_ready.status != "True"):
            self._event("Normal", ready.reason, f"{ready.message}{self._reason_suffix()}")

    async def _write_invalid(self, message: str) -> None:
        now = _now()
        generation = self.body.metadata.get("generation")
        stalled = [
            cond.condition(cond.READY, False, "InvalidSpec", message),
            cond.condition(cond.RECONCILING, False, "InvalidSpec"),
            cond.condition(cond.STALLED, True, "InvalidSpec", message),
        ]
        status = self.status.model_copy(
            update={
                "observed_generation": generation,
                "conditions": cond.merge_conditions(self.status.conditions, stalled, generation, now),
            }
        )
        await self._write(status)

    async def _sync_labels(self, intent: Intent, targets: list[PodInfo], others: list[OtherSuspension]) -> None:
        """Label verified suspended pods; unlabel verified resumed ones that no other suspension holds."""
        changes: list[tuple[PodInfo, str | None]] = []
        for pod in targets:
            record = self.records.get(pod.name)
            if record is None or record.mode is not intent.mode:
                continue
            if record.state is PodState.SUSPENDED:
                changes.append((pod, "true"))
            elif record.state is PodState.RESUMED and not held_by_others(pod, others):
                changes.append((pod, None))
        await asyncio.gather(
            *(self._label(pod, value) for pod, value in changes if pod.labels.get(SUSPENDED_LABEL) != value)
        )

    async def _label(self, pod: PodInfo, value: str | None) -> None:
        try:
            await self.runtime.kube.patch_pod_labels(pod.namespace, pod.name, {SUSPENDED_LABEL: value})
        except ApiError as error:
            self.logger.warning(f"could not label pod {pod.name}: {error}")

    def _reason_suffix(self) -> str:
        reason = self.body.spec.get("reason")
        return f" (reason: {reason})" if reason else ""

    def _event(self, type_: str, reason: str, message: str) -> None:
        kopf.event(self.body, type=type_, reason=reason, message=message[:1000])

    def _announce(self, intent: Intent) -> None:
        if intent != self.last_intent:
            verb = "Suspending" if intent.mode is Mode.SUSPEND else "Resuming"
            why = "" if intent.reason in ("SuspendRequested", "ResumeRequested") else f" ({intent.reason})"
            self._event("Normal", verb, f"{verb} processes{why}{self._reason_suffix()}")
            self.last_intent = intent

    def _pod_event(self, pod: PodInfo, before: PodRecord | None, after: PodRecord, intent: Intent) -> None:
        if after.state is PodState.FAILED and (before is None or before.state is not PodState.FAILED):
            self._event("Warning", after.reason or "ExecFailed", f"pod {pod.name}: {after.message}")
        drift = (
            intent.mode is Mode.SUSPEND
            and before is not None
            and before.state is PodState.SUSPENDED
            and (before.restarts != pod.restarts or before.uid != pod.uid)
        )
        if drift and after.state is PodState.SUSPENDED:
            self._event("Normal", "Resuspended", f"pod {pod.name} restarted its processes; stopped them again")

    def _next_check(self, intent: Intent) -> float | None:
        # round() keeps records for the current targets only.
        settings = self.runtime.settings
        monotonic = time.monotonic()
        waits = [
            seconds_until_due(record, intent.mode, monotonic, settings.reverify_interval_s, settings.failure_backoff_s)
            for record in self.records.values()
        ]
        if intent.mode is Mode.SUSPEND and self.status.expires_at is not None:
            waits.append((cond.parse_time(self.status.expires_at) - _now()).total_seconds())
        known = [w for w in waits if w is not None]
        return max(0.0, min(known)) if known else None


async def run_suspension(
    runtime: Runtime,
    body: kopf.Body,
    pods_by_namespace: kopf.Index[str, PodInfo],
    suspensions_by_namespace: kopf.Index[str, SuspensionInfo],
    stopped: kopf.DaemonStopped,
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """The daemon body: rounds until the object is deleted or the operator stops."""
    loop = SuspensionLoop(runtime, body, logger)
    key = (loop.namespace, loop.name)
    wake = runtime.wakeups.setdefault(key, asyncio.Event())
    try:
        while not stopped:
            wake.clear()
            pods = list(pods_by_namespace.get(loop.namespace, []))
            suspensions = list(suspensions_by_namespace.get(loop.namespace, []))
            wait = await loop.round(pods, suspensions)
            waiter = asyncio.ensure_future(wake.wait())
            stopper = asyncio.ensure_future(stopped.wait())
            try:
                await asyncio.wait({waiter, stopper}, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stopper.cancel()
    finally:
        if runtime.wakeups.get(key) is wake:
            del runtime.wakeups[key]


def _may_have_stopped(status: Mapping[str, Any], pod: str) -> bool:
    """Whether the status shows that this suspension got as far as stopping something in the pod."""
    for entry in status.get("pods") or []:
        if entry.get("name") == pod:
            return entry.get("state") in ("Suspending", "Suspended", "Resuming") or any(
                p.get("state") in ("Stopping", "Stopped") for p in entry.get("processes") or []
            )
    return False


def _nothing_to_resume(record: PodRecord, status: Mapping[str, Any], pod: str) -> bool:
    """A failed resume that must not hold deletion up: nothing was ever stopped there, or never can be resumed.

    ExecForbidden only when the pod was never stopped: a grant revoked after the STOP, or the API server's RBAC
    cache still cold after a restart (tests/e2e/test_faults.py), must not leave processes stopped for good."""
    if record.reason == "ExecForbidden":
        return not _may_have_stopped(status, pod)
    return record.reason in NOTHING_TO_RESUME


async def release_suspension(
    runtime: Runtime,
    body: kopf.Body,
    pods_by_namespace: kopf.Index[str, PodInfo],
    suspensions_by_namespace: kopf.Index[str, SuspensionInfo],
    logger: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """On deletion: resume what no other suspension holds, remove labels; gone pods never hold deletion up."""
    namespace = body.metadata.namespace or ""
    name = body.metadata.name or ""
    uid = body.metadata.uid or ""
    if uid in runtime.released:
        return
    try:
        spec = ProcessSuspensionSpec.model_validate(dict(body.spec))
    except ValidationError:
        return  # an invalid suspension never stopped anything
    targets = select_targets(spec, pods_by_namespace.get(namespace, []))
    others = others_in(suspensions_by_namespace.get(namespace, []), name, _now())

    def ignore(_: PodRecord) -> None:
        pass

    records = await asyncio.gather(
        *(resume_pod(PodWork(runtime.executor, runtime.settings, spec, pod, ignore), [], others) for pod in targets)
    )
    failed = []
    for pod, record in zip(targets, records, strict=True):
        if record.state is PodState.RESUMED and not held_by_others(pod, others) and SUSPENDED_LABEL in pod.labels:
            try:
                await runtime.kube.patch_pod_labels(namespace, pod.name, {SUSPENDED_LABEL: None})
            except ApiError as error:
                logger.warning(f"could not unlabel pod {pod.name}: {error}")
        if record.state is PodState.FAILED and not _nothing_to_resume(record, body.status, pod.name):
            failed.append(f"{pod.name}: {record.message}")
    if failed:
        kopf.event(body, type="Warning", reason="ResumeFailed", message="; ".join(failed)[:1000])
        raise kopf.TemporaryError(
            f"could not resume {len(failed)} pods: {'; '.join(failed)}", delay=runtime.settings.failure_backoff_s
        )
    runtime.released.add(uid)
    kopf.event(body, type="Normal", reason="Resumed", message=f"released {len(targets)} pods on deletion")
