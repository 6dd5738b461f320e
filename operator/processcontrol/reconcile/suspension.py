"""One ProcessSuspension's side: its status daemon, and its deletion.

The pod workers (worker.py) do the work and report outcomes per suspension on the runtime's OutcomeBoard; the
daemon starts and wakes them through the dispatch (dispatch.py). It turns those outcomes into the object's status,
announces transitions in events, and wakes the pods when the suspension expires. Deletion waits until no pod's
hold ledger names the suspension any more: its finalizer goes only then, and the board forgets the suspension.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from processcontrol.api import PodState, ProcessSuspensionSpec, ProcessSuspensionStatus
from processcontrol.api.reasons import Reason
from processcontrol.api.timestamps import parse_time
from processcontrol.bounded import describe, frames
from processcontrol.exceptions import ApiError, NotFound
from processcontrol.reconcile import conditions as cond
from processcontrol.reconcile import metrics
from processcontrol.reconcile.dispatch import Dispatch
from processcontrol.reconcile.plan import Intent, Mode, PodRecord, build_status, final_state, intent_of
from processcontrol.reconcile.preview import Previewer
from processcontrol.reconcile.runtime import Logger, SuspensionInfo, suspension_info
from processcontrol.targets import select_targets

_log = logging.getLogger(__name__)
# After an operator restart, how long the daemon waits for the pod workers' first outcomes before it writes a
# status that would count the silent pods as in progress (and flip Ready for nothing).
FIRST_OUTCOMES_GRACE_S = 5.0
# Retry of a status write the API server refused or could not take.
WRITE_RETRY_S = 2.0
# A deletion waits for its pods' holds to go: it looks this often, and at every pod of the namespace every
# FULL_SCAN_POLLS looks (the others look only at the pods that still held). A look runs on the event loop and
# is O(pods): at 10,000 pods one took 20-50 ms, so looks every 0.1 s took up to a third of the loop (and of the
# operator's CPU) for the whole of a large resume. The pause after a look is at least POLL_SPACING times as long
# as the look took: looking takes at most 1/POLL_SPACING of the time, and the few last pods are still seen at once.
DELETION_POLL_S = 0.1
FULL_SCAN_POLLS = 10
POLL_SPACING = 20


def _now() -> datetime:
    return datetime.now(UTC)


def info_of(body: kopf.Body) -> SuspensionInfo:
    """The index entry of this very object, as the pod workers will see it."""
    return suspension_info(
        body.metadata.name or "",
        body.metadata.uid or "",
        body.metadata.get("generation"),
        body.spec,
        body.status,
        deleting=body.metadata.get("deletionTimestamp") is not None,
    )


class StatusDaemon:
    """Writes one suspension's status from its pods' outcomes."""

    def __init__(self, dispatch: Dispatch, body: kopf.Body, logger: Logger) -> None:
        self.dispatch = dispatch
        self.runtime = dispatch.runtime
        self.body = body
        self.logger = logger
        self.namespace = body.metadata.namespace or ""
        self.name = body.metadata.name or ""
        self.status = ProcessSuspensionStatus.model_validate(dict(body.status))
        self.written: dict[str, Any] | None = None
        self.last_intent: Intent | None = None
        self.started = time.monotonic()
        # What the last write counted: the targets, and whether they were all done then.
        self.targets: tuple[str, ...] = ()
        self.all_done = False
        # A run ended (`suspend: false` seen) and the next has not begun in a status yet; when this one began, as
        # this daemon saw it: a duration never counts from before (a pod whose worker never gave its hold back
        # still shows the first run's).
        self.new_run = False
        self.run_began: datetime | None = None
        # While spec.preview is true: the looks into its pods (preview.py); each one done wakes this daemon.
        self.previewer = Previewer(self.runtime.executor, lambda: self.runtime.board.wake(self.namespace, self.name))

    async def publish(self) -> float | None:
        """Write the status the outcomes show; return seconds until it must be looked at again."""
        try:
            spec = ProcessSuspensionSpec.model_validate(dict(self.body.spec))
        except ValidationError as error:
            return await self._write_invalid(str(error))
        if self.runtime.board.take_run_ended(self.namespace, self.name):
            # A `suspend: false` came and went since the last write: its duration begins again at the next hold.
            self.status = self.status.model_copy(update={"suspended_at": None, "expires_at": None})
            self.new_run = True
        now = _now()
        intent = intent_of(spec, self.status, now)
        if self.new_run and intent.mode is Mode.SUSPEND:
            self.new_run, self.run_began = False, now
        info = info_of(self.body)
        if intent != self.last_intent:
            # Expiry comes with no event: the pods must look again now.
            self.dispatch.wake_pods_of(info, self.namespace)
        self._announce(intent)
        pods = list(self.runtime.pods_of(self.namespace))
        targets = select_targets(spec, pods)
        for pod in targets:
            self.dispatch.ensure_worker(self.namespace, pod.name, wake=False)
        records = self.runtime.board.records(self.namespace, self.name)
        silent = [p for p in targets if p.name not in records]
        if silent and time.monotonic() - self.started < FIRST_OUTCOMES_GRACE_S and self.status.conditions:
            return FIRST_OUTCOMES_GRACE_S / 5
        generation = self.body.metadata.get("generation")
        if spec.preview:
            preview = self.previewer.preview(spec, generation, pods, records)
        else:
            preview = None
            self.previewer.forget()
        status = build_status(
            spec, generation, intent, targets, records, self.status, now, preview, run_began=self.run_began
        )
        self._metrics(intent, status, records)
        if not await self._write(status):
            return WRITE_RETRY_S
        self.targets = tuple(p.name for p in targets)
        self.all_done = bool(targets) and status.counts is not None and status.counts.done == len(targets)
        self.runtime.board.status_shown(self.namespace, self.name, records)
        waits = []
        if intent.mode is Mode.SUSPEND and status.expires_at is not None:
            waits.append((parse_time(status.expires_at) - now).total_seconds())
        if status.expires_at != info.expires_at:
            # The workers learn of the expiry from the index; make sure they look once it has the new time.
            waits.append(0.5)
        return max(0.0, min(waits)) if waits else None

    def done_now(self) -> bool:
        """The last pod got there since the last write: worth a write at once (Ready is what users wait for),
        instead of at the end of the status interval."""
        if self.all_done or not self.targets or self.last_intent is None:
            return False
        records = self.runtime.board.records(self.namespace, self.name)
        goal = final_state(self.last_intent.mode)
        generation = self.body.metadata.get("generation")
        return all(
            (r := records.get(pod)) is not None
            and r.state is goal
            and r.mode is self.last_intent.mode
            and r.generation == generation
            for pod in self.targets
        )

    def _metrics(self, intent: Intent, status: ProcessSuspensionStatus, records: dict[str, PodRecord]) -> None:
        suspended = (
            [r for r in records.values() if r.mode is Mode.SUSPEND and r.state is PodState.SUSPENDED]
            if intent.mode is Mode.SUSPEND
            else []
        )
        metrics.SUSPENDED_PODS.labels(self.namespace, self.name).set(len(suspended))
        metrics.SUSPENDED_PROCESSES.labels(self.namespace, self.name).set(sum(len(r.processes) for r in suspended))

    async def _write(self, status: ProcessSuspensionStatus) -> bool:
        """Write the status if it changed; False when the write failed (the caller retries: nothing is dropped)."""
        payload = status.model_dump(by_alias=True, mode="json")
        previous_ready = cond.find(self.status.conditions, cond.READY)
        if payload == self.written:
            return True
        if not self.runtime.leader.is_leading:
            return False  # a replica whose term ran out (it exits) writes no status from what it knew
        try:
            await self.runtime.kube.patch_suspension_status(self.namespace, self.name, payload)
        except ApiError as error:
            self.logger.warning(f"could not write status, will retry: {error}")
            return False
        self.written = payload
        self.status = status
        ready = cond.find(status.conditions, cond.READY)
        if ready is not None and ready.status == "True" and (previous_ready is None or previous_ready.status != "True"):
            self._event("Normal", ready.reason, f"{ready.message}{self._reason_suffix()}")
        return True

    async def _write_invalid(self, message: str) -> float | None:
        now = _now()
        generation = self.body.metadata.get("generation")
        stalled = [
            cond.condition(cond.READY, False, Reason.INVALID_SPEC, message),
            cond.condition(cond.RECONCILING, False, Reason.INVALID_SPEC),
            cond.condition(cond.STALLED, True, Reason.INVALID_SPEC, message),
        ]
        status = self.status.model_copy(
            update={
                "observed_generation": generation,
                "conditions": cond.merge_conditions(self.status.conditions, stalled, generation, now),
            }
        )
        return None if await self._write(status) else WRITE_RETRY_S

    def _reason_suffix(self) -> str:
        reason = self.body.spec.get("reason")
        recorded = self.body.spec.get("requestedBy") or {}
        notes = [f"reason: {reason}"] if reason else []
        if recorded.get("username"):
            via = f" via {recorded['via']}" if recorded.get("via") else ""
            notes.append(f"requested by {recorded['username']}{via}")
        return f" ({'; '.join(notes)})" if notes else ""

    def _event(self, type_: str, reason: str, message: str) -> None:
        kopf.event(self.body, type=type_, reason=reason, message=message[:1000])

    def _announce(self, intent: Intent) -> None:
        if intent != self.last_intent:
            verb = Reason.SUSPENDING if intent.mode is Mode.SUSPEND else Reason.RESUMING
            asked = intent.reason in (Reason.SUSPEND_REQUESTED, Reason.RESUME_REQUESTED)
            if intent.reason == Reason.PREVIEW_REQUESTED:
                verb, asked = Reason.PREVIEWING, True
            why = "" if asked else f" ({intent.reason})"
            self._event("Normal", verb, f"{verb} processes{why}{self._reason_suffix()}")
            self.last_intent = intent


async def run_status_daemon(dispatch: Dispatch, body: kopf.Body, stopped: kopf.DaemonStopped, logger: Logger) -> None:
    """The daemon body: publish on every outcome and object change until the object goes or the operator stops."""
    daemon = StatusDaemon(dispatch, body, logger)
    runtime = dispatch.runtime
    # A standby writes no status: it waits, its daemon ready, until it leads.
    while not stopped and not runtime.leader.is_leading:
        await _woken_or_stopped(runtime.leader.leading, stopped, runtime.settings.retry_period_s)
    if stopped:
        return
    daemon.started = time.monotonic()
    # No look of a preview outlives the daemon (the previewer cancels them as it exits).
    with runtime.board.daemon_wakeup(daemon.namespace, daemon.name) as wake, daemon.previewer:
        while not stopped:
            wake.clear()
            try:
                wait = await daemon.publish()
            except Exception as error:
                # A bug, or something a pod reported that nobody thought of: the status is built and written again
                # a moment later; this daemon (and the operator) go on. kopf posts the object logger's errors as
                # events: the bounded message goes there, the frames only to the operator's log.
                logger.error(
                    f"could not build or write the status; trying again in {WRITE_RETRY_S:g}s: {describe(error)}"
                )
                _log.warning(f"{daemon.namespace}/{daemon.name}: the status failed at\n{frames(error)}")
                wait = WRITE_RETRY_S
            # Many pods report at once: gather them into one write per status interval. Waits end as soon as
            # kopf asks the daemon to stop: one that does not exit at once holds a deletion up for its
            # cancellation backoff.
            if wait is None or wait > 0:
                await _gather_outcomes(daemon, wake, stopped, runtime.settings.status_interval_s)
                if stopped:
                    break
            await _woken_or_stopped(wake, stopped, wait)


async def _woken_or_stopped(wake: asyncio.Event, stopped: kopf.DaemonStopped, within_s: float | None) -> None:
    """Wait for an outcome, kopf's stop, or the timeout, whichever comes first."""
    waiter = asyncio.ensure_future(wake.wait())
    stopper = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({waiter, stopper}, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        stopper.cancel()


async def _gather_outcomes(
    daemon: StatusDaemon, wake: asyncio.Event, stopped: kopf.DaemonStopped, interval_s: float
) -> None:
    """Let the outcomes of many pods gather for one write per interval, unless the last of them arrives: then the
    write goes at once."""
    deadline = time.monotonic() + interval_s
    woken = False
    while not stopped and (remaining := deadline - time.monotonic()) > 0:
        if wake.is_set():
            woken = True
            wake.clear()
            if daemon.done_now():
                break
        await _woken_or_stopped(wake, stopped, remaining)
    if woken:
        wake.set()  # what arrived meanwhile is the next publish's


def pods_holding(dispatch: Dispatch, namespace: str, uid: str, among: Collection[str] | None = None) -> list[str]:
    """Pods whose hold ledger still names the suspension: from each worker's last write, else from the index.
    A pod whose worker is acting for it counts (a hold may be on its way), and so does a pod whose ledger cannot
    be read when its `holds` names the uid (ledger.holders_in; a uid anywhere else in it does not count: it would
    keep the finalizer for ever). A pod being deleted holds nothing: its holds go with it. `among`: only these
    pods (those that held at the last full scan), not every pod of the namespace."""
    runtime = dispatch.runtime
    if among is None:
        pods = list(runtime.pods_of(namespace))
    else:
        pods = [pod for name in among if (pod := runtime.pod(namespace, name)) is not None]
    holding = []
    for pod in pods:
        if pod.terminating:
            continue
        worker = dispatch.workers.get((namespace, pod.name))
        known = worker.ledger.holds_for(pod, uid) if worker is not None else None
        if known is not None:
            if known:
                holding.append(pod.name)
            continue
        if uid in pod.holders:
            holding.append(pod.name)
    return sorted(holding)


async def _leading_or_gone(dispatch: Dispatch, namespace: str, name: str, uid: str) -> bool:
    """Wait until this replica leads (True) or the object is gone (False). A standby's deletion handler waits
    instead of failing: kopf would write its retry progress onto the object, and only the leader writes. The
    object is read from the API, not the index: kopf updates the index of this object only once its handler
    returns."""
    leader = dispatch.runtime.leader
    while not leader.is_leading:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(dispatch.runtime.settings.retry_period_s):
                await leader.wait_leading()
        if leader.is_leading:
            break
        try:
            current = await dispatch.runtime.kube.get_suspension(namespace, name)
        except NotFound:
            return False
        except ApiError:
            continue
        if (current.get("metadata") or {}).get("uid") != uid:
            return False
    return True


async def release_on_delete(dispatch: Dispatch, body: kopf.Body, logger: Logger) -> None:
    """On deletion: the pod workers give back this suspension's holds; the finalizer goes when no pod has any."""
    runtime = dispatch.runtime
    namespace = body.metadata.namespace or ""
    name = body.metadata.name or ""
    info = info_of(body)
    if not await _leading_or_gone(dispatch, namespace, name, info.uid):
        return  # the leader gave it back and removed the finalizer: nothing of ours was written here
    dispatch.wake_pods_of(info, namespace)
    deadline = time.monotonic() + runtime.settings.exec_timeout_s
    polls = 0
    holding: list[str] | None = None
    while True:
        # Between full scans (every FULL_SCAN_POLLS polls, and before the finalizer goes) only the pods that held at
        # the last one are looked at: a scan of every pod every poll made a whole-namespace resume O(N^2).
        full = holding is None or not holding or polls % FULL_SCAN_POLLS == 0
        looked = time.monotonic()
        holding = pods_holding(dispatch, namespace, info.uid, among=None if full else holding)
        look_s = time.monotonic() - looked
        polls += 1
        if not holding and full and runtime.leader.is_leading:
            break
        if time.monotonic() > deadline:
            records = runtime.board.records(namespace, name)
            why = "; ".join(f"{pod}: {records[pod].message}" for pod in holding if pod in records)
            raise kopf.TemporaryError(
                f"waiting for {len(holding)} pods to give back their processes: {', '.join(holding[:10])}"
                + (f" ({why[:500]})" if why else ""),
                delay=1.0,
            )
        if holding or full:  # none left at a partial look: the full scan that confirms it comes at once
            await asyncio.sleep(max(DELETION_POLL_S, look_s * POLL_SPACING))
    runtime.board.forget(namespace, name)
    dispatch.forget(info.uid)
    for metric in (metrics.SUSPENDED_PODS, metrics.SUSPENDED_PROCESSES, metrics.RESTARTS_UNDER_SUSPENSION):
        with contextlib.suppress(KeyError):  # never set: the suspension never published
            metric.remove(namespace, name)
    logger.info("no pod holds anything for this suspension any more")
    kopf.event(body, type="Normal", reason=Reason.RELEASED, message="every pod gave back its processes")
