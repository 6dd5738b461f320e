"""One worker per pod: the only code that execs into its pod or writes its hold ledger, so nothing overlaps there.

Level-triggered: each step compares what the live suspensions want of the pod with its ledger and does the one
next thing, in this order:

1. give back holds nobody wants any more (suspension resumed, expired, deleted or gone, pod no longer matching):
   START what ran before its first hold and no other hold covers, then write the ledger;
2. watch the processes it started until they run;
3. take or keep the holds live suspensions want: ledger first (with each process's state before its first hold),
   then STOP, then verify; re-check a settled hold now and then (a STATUS probe, it sends nothing).

After each exec it looks again, so a release never waits behind a slow verification and a slow pod delays only
itself. Outcomes go to the runtime, per suspension, where the status daemons read them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import kopf

from processcontrol.api import API_VERSION, KIND, SUSPENDED_LABEL, PodState, ProcessState, ProcessStatus
from processcontrol.api.models import ProbePolicy
from processcontrol.api.reasons import FailureReason, Reason
from processcontrol.exceptions import ApiError, Conflict, LedgerError, PodFailure
from processcontrol.podexec.script import Action, SocketReport, SocketResult
from processcontrol.reconcile.ledger import (
    HOLDS_ANNOTATION,
    Hold,
    Ledger,
    Observed,
    dump_ledger,
    ledger_patch,
    mark_verified,
    parse_ledger,
    process_key,
    release,
    split_key,
    take_hold,
)
from processcontrol.reconcile.metrics import RESTARTS_UNDER_SUSPENSION
from processcontrol.reconcile.plan import Mode, PodRecord, reverify_spread
from processcontrol.reconcile.pods import (
    SHOWN_AT_ONCE,
    count,
    is_stale,
    names,
    observed,
    process_statuses,
    run_script,
)
from processcontrol.reconcile.probes import kubelet_reason
from processcontrol.reconcile.runtime import Runtime, SuspensionInfo
from processcontrol.reconcile.targets import PodInfo, exec_container

logger = logging.getLogger(__name__)

# Retries of a failed step start here and double up to the failure backoff: a new pod whose sockets are not
# bound yet is stopped a moment later, not ten seconds later.
FIRST_RETRY_S = 0.25
# A pod is shown Failed only after this many failures in a row (or at once: pods.SHOWN_AT_ONCE).
FAILURES_SHOWN = 3


def _now() -> datetime:
    return datetime.now(UTC)


def _version(text: str) -> int:
    return int(text) if text.isdigit() else -1


@dataclass
class HoldProgress:
    """In memory: how far one suspension's hold on this pod has come."""

    pod_uid: str
    restarts: int
    state: PodState
    started: float  # monotonic: when the current stop began (the verification deadline counts from here)
    checked: float  # monotonic: the last exec
    processes: list[ProcessStatus] = field(default_factory=list)
    message: str = ""
    reason: str = ""
    failures: int = 0
    resend: bool = False  # a re-check found a process running again: STOP it at once
    generation: int | None = None  # of the suspension it answers: a new spec is acted on at once
    drift: bool = False  # stopping again what was already verified stopped (a restart, a START by hand)
    transition_time: datetime = field(default_factory=_now)


@dataclass
class Starting:
    """Processes this worker sent START and waits to see running, on behalf of the holds it gave back."""

    pairs: tuple[tuple[str, str], ...]
    container: str
    suspensions: dict[str, str]  # uid -> name
    started: float
    checked: float


class PodWorker:
    """Brings one pod in line with the suspensions that want it, in one asyncio task."""

    def __init__(self, runtime: Runtime, namespace: str, name: str) -> None:
        self.runtime = runtime
        self.namespace = namespace
        self.name = name
        self.settings = runtime.settings
        self.progress: dict[str, HoldProgress] = {}
        self.starting: list[Starting] = []
        self.ledger: Ledger | None = None
        self.resource_version = ""
        self.pod_uid = ""
        self.reported: dict[str, str] = {}  # suspension uid -> name, of every outcome published
        self.release_failures = 0
        self.release_checked = 0.0
        self.resume_checks: dict[str, tuple[int, float]] = {}  # uid -> (failures in a row, when last tried)
        # Suspensions on whose behalf an exec or ledger write is under way: until it ends, the pod may hold
        # something for them that the ledger does not show yet, so their deletion must wait.
        self.acting_for: set[str] = set()
        # Container restarts as last seen, and when each was seen (monotonic): restart loops are found from these.
        self.restart_counts: dict[str, int] | None = None
        self.restart_times: dict[str, list[float]] = {}
        self.loops: dict[str, str] = {}  # suspension uid -> what its restart loop is, while it lasts
        self.loops_warned: set[str] = set()  # suspension uids whose restart loop here was announced in an event
        # probes: Refuse: uid -> (its generation, the pod's restarts, the failure, the conflicting probes).
        self.refused: dict[str, tuple[int | None, int, PodFailure, tuple[str, ...]]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # Life ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the worker's loop."""
        self._task = asyncio.create_task(self._run(), name=f"pod {self.namespace}/{self.name}")

    def wake(self) -> None:
        """Look again now."""
        self._wake.set()

    def cancel(self) -> None:
        """Stop the loop (operator shutdown)."""
        if self._task is not None:
            self._task.cancel()

    async def wait_closed(self) -> None:
        """Wait for the loop to end."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        try:
            while True:
                self._wake.clear()
                delay = await self.step()
                if delay is None and not self._wake.is_set() and self._idle():
                    return
                if delay is None or delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=delay)
        finally:
            if self.runtime.workers.get((self.namespace, self.name)) is self:
                del self.runtime.workers[(self.namespace, self.name)]

    def _idle(self) -> bool:
        """Nothing held, nothing starting, no suspension wants this pod: the worker may go (a new one comes with
        the next event that concerns the pod)."""
        return (self.ledger is None or self.ledger.empty) and not self.starting and not self.reported

    # One step -------------------------------------------------------------------------------------------------

    async def step(self) -> float | None:
        """Do the next thing the pod needs; return seconds until the next step (None: on events only)."""
        pod = self.runtime.pod(self.namespace, self.name)
        if pod is None or (self.pod_uid and pod.uid != self.pod_uid):
            self._forget()
            if pod is None:
                return None
        assert pod is not None
        self.pod_uid = pod.uid
        now = _now()
        suspensions = list(self.runtime.suspensions_of(self.namespace))
        by_uid = {s.uid: s for s in suspensions}
        targeting = [s for s in suspensions if s.targets(pod)]
        wanted = {s.uid: s for s in targeting if s.holding(now)}
        try:
            ledger = self._current_ledger(pod)
        except LedgerError as error:
            for suspension in targeting:
                self._report_failure(
                    suspension, pod, PodFailure(FailureReason.LEDGER_UNREADABLE, str(error)), lasting=True
                )
            return self.settings.failure_backoff_s

        waits: list[float] = []
        self._track_restarts(pod, wanted, ledger)
        loop_wait = await self._check_restart_loops(pod, wanted, ledger)
        if loop_wait is not None:
            waits.append(loop_wait)
        monotonic = time.monotonic()
        # A hold's filters (jobs, processes, container) never change: the CRD makes them immutable.
        leaving = [uid for uid in ledger.holds if uid not in wanted]
        if leaving:
            due = self.release_checked + self._retry_delay(self.release_failures) - monotonic
            if not self.release_failures or due <= 0:
                await self._give_back(pod, ledger, leaving, by_uid)
                return 0.0
            waits.append(due)
        for starting in list(self.starting):
            due = starting.checked + self._poll_delay(starting.started, starting.checked) - monotonic
            if due <= 0:
                await self._watch_start(pod, starting, by_uid)
                return 0.0
            waits.append(due)

        for suspension in sorted(wanted.values(), key=lambda s: s.name):
            self._seed_from_ledger(suspension, pod, ledger)
            due = self._due(suspension, pod, ledger, monotonic)
            if due <= 0:
                await self._hold(suspension, pod, ledger)
                return 0.0
            waits.append(due)
            self._publish_hold(suspension)

        for suspension in targeting:
            uid = suspension.uid
            if uid in wanted or uid in ledger.holds or self._starting_for(uid) or self._retag_resumed(suspension):
                continue
            failures, checked = self.resume_checks.get(uid, (0, 0.0))
            due = checked + self._retry_delay(failures) - monotonic if failures else 0.0
            if due <= 0:
                await self._observe_resumed(suspension, pod)
                return 0.0
            waits.append(due)
        for uid in list(self.reported):
            gone = uid not in by_uid or not by_uid[uid].targets(pod)
            if gone and uid not in ledger.holds and not self._starting_for(uid):
                self._unpublish(uid)
        return min(waits) if waits else None

    # Giving back ----------------------------------------------------------------------------------------------

    async def _give_back(
        self,
        pod: PodInfo,
        ledger: Ledger,
        leaving: list[str],
        by_uid: dict[str, SuspensionInfo],
    ) -> None:
        """START what the leaving holds kept stopped and nobody else holds, then write the ledger without them."""
        plan = release(ledger, leaving)
        names_by_uid = {uid: ledger.holds[uid].name for uid in leaving}
        container = next(
            (ledger.holds[uid].container for uid in leaving if ledger.holds[uid].container),
            exec_container(pod, None),
        )
        undelivered: list[tuple[str, str]] = []
        if plan.to_start:
            if container is None:
                failure = PodFailure(FailureReason.NO_CONTAINER, "pod has no container to exec into")
                self._fail_release(pod, leaving, by_uid, failure)
                return
            for uid in leaving:
                if uid in by_uid:
                    self._report(
                        by_uid[uid],
                        pod,
                        PodState.RESUMING,
                        Mode.RESUME,
                        f"waiting for {names(plan.to_start)} to run",
                        processes=_statuses(plan.to_start, ProcessState.STOPPED),
                    )
            try:
                report = await run_script(
                    self.runtime.executor,
                    pod,
                    container,
                    Action.START,
                    [],
                    [],
                    only=plan.to_start,
                    wait_s=self.settings.in_pod_wait_s,
                )
            except PodFailure as failure:
                self._fail_release(pod, leaving, by_uid, failure)
                return
            sockets = report.sockets
            # A socket nobody answers (or that is gone) has no containerrun holding its process: a restarted
            # containerrun starts it by itself. Only a send that failed for another reason keeps its hold.
            undelivered = [(s.job, s.process) for s in sockets if s.result == SocketResult.FAILED]
        kept = {f"{job}/{process}" for job, process in undelivered}

        def without_leaving(current: Ledger) -> Ledger:
            new = release(current, leaving).ledger
            restored = {key: entry for key, entry in current.processes.items() if key in kept}
            return new.model_copy(update={"processes": {**new.processes, **restored}})

        if not await self._write_ledger(pod, without_leaving):
            unwritten = PodFailure(FailureReason.LEDGER_WRITE_FAILED, "could not write the hold ledger")
            self._fail_release(pod, leaving, by_uid, unwritten)
            return
        self.release_failures = 0
        for uid in leaving:
            self.progress.pop(uid, None)
        started = tuple(pair for pair in plan.to_start if pair not in undelivered)
        monotonic = time.monotonic()
        starting = Starting(
            pairs=started, container=container or "", suspensions=names_by_uid, started=monotonic, checked=monotonic
        )
        for uid, name in names_by_uid.items():
            suspension = by_uid.get(uid)
            if suspension is None:
                self._event_on_pod(
                    pod,
                    "Normal",
                    Reason.ORPHAN_RELEASED,
                    f"released the holds of suspension {name} (uid {uid}), which no longer exists"
                    + (f"; started {names(started)}" if started else ""),
                )
                continue
            if started:
                self._report(
                    suspension,
                    pod,
                    PodState.RESUMING,
                    Mode.RESUME,
                    f"started {names(started)}, waiting for them to run",
                    processes=_statuses(started, ProcessState.STOPPED),
                )
        if started:
            # The START exec waited in the pod: usually they run already, and that report is the verification.
            self.starting.append(starting)
            self._settle_start(pod, starting, sockets, by_uid)

    def _fail_release(
        self, pod: PodInfo, leaving: list[str], by_uid: dict[str, SuspensionInfo], failure: PodFailure
    ) -> None:
        """The START could not be sent: the holds stay in the ledger, the worker tries again after a backoff."""
        self.release_failures += 1
        self.release_checked = time.monotonic()
        for uid in leaving:
            suspension = by_uid.get(uid)
            if suspension is None:
                continue
            self._report_failure(suspension, pod, failure, mode=Mode.RESUME)
            if self.release_failures == 1:
                self._event(
                    suspension,
                    "Warning",
                    Reason.RESUME_FAILED,
                    f"pod {pod.name}: {failure.message}; its processes stay held until they can be given back",
                )

    async def _watch_start(self, pod: PodInfo, starting: Starting, by_uid: dict[str, SuspensionInfo]) -> None:
        """Poll until the processes started run; past the verification deadline, say which do not."""
        starting.checked = time.monotonic()
        try:
            report = await run_script(
                self.runtime.executor, pod, starting.container, Action.STATUS, [], [], only=starting.pairs
            )
        except PodFailure as failure:
            if starting.checked - starting.started > self.settings.verify_timeout_s:
                self.starting.remove(starting)
                for uid in starting.suspensions:
                    if uid in by_uid:
                        self._report_failure(by_uid[uid], pod, failure, mode=Mode.RESUME, lasting=True)
            return
        self._settle_start(pod, starting, report.sockets, by_uid)

    def _settle_start(
        self, pod: PodInfo, starting: Starting, sockets: Sequence[SocketReport], by_uid: dict[str, SuspensionInfo]
    ) -> None:
        """Report the processes started as running once they all are, or as late past the deadline."""
        running = {(s.job, s.process) for s in sockets if s.running}
        waiting = [pair for pair in starting.pairs if pair not in running]
        chosen = [s for s in sockets if (s.job, s.process) in set(starting.pairs)]
        timed_out = time.monotonic() - starting.started > self.settings.verify_timeout_s
        if waiting and not timed_out:
            return
        self.starting.remove(starting)
        for uid in starting.suspensions:
            suspension = by_uid.get(uid)
            if suspension is None:
                continue
            if waiting:
                late = PodFailure(
                    FailureReason.VERIFY_TIMEOUT,
                    f"not running {self.settings.verify_timeout_s:g}s after START: {names(waiting)}",
                )
                self._report_failure(suspension, pod, late, mode=Mode.RESUME, lasting=True)
            elif suspension.targets(pod):
                self._report(
                    suspension,
                    pod,
                    PodState.RESUMED,
                    Mode.RESUME,
                    f"{count(len(chosen))} running",
                    processes=process_statuses(Mode.RESUME, chosen, settled=True),
                )
            else:
                self._unpublish(uid)

    # Holding --------------------------------------------------------------------------------------------------

    def _hold_of(self, suspension: SuspensionInfo, pod: PodInfo) -> Hold:
        assert suspension.spec is not None
        return Hold(
            name=suspension.name,
            jobs=tuple(suspension.spec.jobs),
            processes=tuple(suspension.spec.processes),
            container=exec_container(pod, suspension.spec.container),
        )

    def _seed_from_ledger(self, suspension: SuspensionInfo, pod: PodInfo, ledger: Ledger) -> None:
        """After an operator restart: a hold verified at the pod's current restart count is in force; no exec
        needed to say so (a re-check comes in its time)."""
        hold = ledger.holds.get(suspension.uid)
        if suspension.uid in self.progress or hold is None or hold.verified_restarts != pod.restarts:
            return
        held = ledger.held_by(suspension.uid)
        monotonic = time.monotonic()
        self.progress[suspension.uid] = HoldProgress(
            pod_uid=pod.uid,
            generation=suspension.generation,
            restarts=pod.restarts,
            state=PodState.SUSPENDED,
            started=monotonic,
            checked=monotonic,
            processes=_statuses(held, ProcessState.STOPPED),
            message=f"{count(len(held))} stopped",
        )

    def _due(self, suspension: SuspensionInfo, pod: PodInfo, ledger: Ledger, monotonic: float) -> float:
        progress = self.progress.get(suspension.uid)
        if progress is None or progress.pod_uid != pod.uid or progress.restarts != pod.restarts or progress.resend:
            return 0.0
        if progress.failures:
            # Before the hold is taken too: a pod without sockets is retried with backoff, not in a tight loop;
            # a new spec (probes: Refuse changed, say) is tried at once.
            if progress.generation != suspension.generation:
                return 0.0
            return progress.checked + self._retry_delay(progress.failures) - monotonic
        if suspension.uid not in ledger.holds:
            return 0.0
        if progress.state is PodState.SUSPENDED:
            interval = self.settings.reverify_interval_s * reverify_spread(pod.uid)
            return progress.checked + interval - monotonic
        return progress.checked + self._poll_delay(progress.started, progress.checked) - monotonic

    def _retry_delay(self, failures: int) -> float:
        return min(self.settings.failure_backoff_s, FIRST_RETRY_S * 2.0 ** (failures - 1))

    def _poll_delay(self, started: float, checked: float) -> float:
        """Verification polls: quick at first, then every 2 s at most."""
        return min(max(self.settings.verify_interval_s, (checked - started) / 2), 2.0)

    async def _hold(self, suspension: SuspensionInfo, pod: PodInfo, ledger: Ledger) -> None:
        """Take, keep or verify one suspension's hold; failures are recorded, never raised."""
        self.acting_for.add(suspension.uid)
        try:
            await self._hold_or_fail(suspension, pod, ledger)
        except PodFailure as failure:
            self._report_failure(suspension, pod, failure)
        finally:
            self.acting_for.discard(suspension.uid)

    def _still_wanted(self, uid: str) -> bool:
        """Whether the suspension still wants this pod held: it may have changed during the last exec."""
        pod = self.runtime.pod(self.namespace, self.name)
        now = _now()
        return pod is not None and any(
            s.uid == uid and s.targets(pod) and s.holding(now) for s in self.runtime.suspensions_of(self.namespace)
        )

    async def _hold_or_fail(self, suspension: SuspensionInfo, pod: PodInfo, ledger: Ledger) -> None:
        assert suspension.spec is not None
        spec = suspension.spec
        hold = self._hold_of(suspension, pod)
        container = hold.container
        if container is None:
            raise PodFailure(FailureReason.NO_CONTAINER, f"pod has no container {spec.container!r}")
        previous = self.progress.get(suspension.uid)
        fresh = previous is None or previous.pod_uid != pod.uid or previous.restarts != pod.restarts
        send = fresh or previous is None or previous.resend or previous.state is PodState.FAILED
        monotonic = time.monotonic()
        if suspension.uid not in ledger.holds:
            refused = self.refused.get(suspension.uid)
            if refused is not None and refused[:2] == (suspension.generation, pod.restarts):
                raise refused[2]  # nothing changed since the pod was refused: no exec to find that out again
            # Write-ahead: the ledger records the hold, and each process's state before it, before any STOP.
            status = await run_script(self.runtime.executor, pod, container, Action.STATUS, spec.jobs, spec.processes)
            if not status.sockets:
                raise PodFailure(
                    FailureReason.NO_SOCKETS, f"no containerrun sockets{_filters(spec.jobs, spec.processes)}"
                )
            live = [(s.job, s.process) for s in status.sockets if not is_stale(s)]
            conflicts = tuple(probe.describe() for probe in pod.probes.conflicts(live))
            if conflicts and spec.probes is ProbePolicy.REFUSE:
                failure = PodFailure(
                    FailureReason.PROBE_CONFLICT,
                    f"nothing stopped (probes: Refuse): stopped processes would fail {'; '.join(conflicts)}",
                )
                self.refused[suspension.uid] = (suspension.generation, pod.restarts, failure, conflicts)
                raise failure
            self.refused.pop(suspension.uid, None)
            skipped = pod.probes.probed(live) if spec.probes is ProbePolicy.SKIP else []
            stopped = [pair for pair in live if pair not in skipped]
            hold = hold.model_copy(
                update={
                    "restart_base": {c: pod.probes.restarts_of(c) for c in pod.probes.containers_of(stopped)},
                    "skipped": tuple(sorted(process_key(job, process) for job, process in skipped)),
                }
            )
            seen = [o for o in observed(status.sockets) if (o.job, o.process) not in skipped]
            if not await self._write_ledger(pod, lambda current: take_hold(current, suspension.uid, hold, seen)):
                return
            send = True
            if not self._still_wanted(suspension.uid):
                return  # let go while we looked: the next step gives the hold back, no STOP sent
            if conflicts:
                await self._announce_conflicts(suspension, pod, conflicts, spec.probes, monotonic)
                if not self._still_wanted(suspension.uid):
                    return  # let go while the status caught up: no STOP sent
        current_hold = self.ledger.holds.get(suspension.uid) if self.ledger is not None else None
        skipped_keys = set(current_hold.skipped) if current_hold is not None else set()
        if skipped_keys and not (self._held(suspension.uid)):
            # probes: Skip left nothing to stop here.
            if not await self._write_ledger(pod, lambda current: mark_verified(current, suspension.uid, pod.restarts)):
                return
            left = names([split_key(key) for key in sorted(skipped_keys)])
            message = f"nothing stopped: every targeted process runs in a probed container, left running: {left}"
            self._advance(suspension, pod, PodState.SUSPENDED, monotonic, [], message)
            return
        action = Action.STOP if send else Action.STATUS
        if send and (fresh or previous is None or previous.state is not PodState.FAILED):
            # The STOP exec waits in the pod for up to in_pod_wait_s: say meanwhile what it waits for. A retry of
            # a failed pod keeps showing the failure until it succeeds (no Stalled flapping on every retry).
            held = self._held(suspension.uid)
            self._advance(
                suspension,
                pod,
                PodState.SUSPENDING,
                monotonic,
                _statuses(held, ProcessState.STOPPING),
                f"waiting for {names(held) or 'the processes'} to stop",
                failures=previous.failures if previous is not None and not fresh else 0,
                drift=previous is not None and (previous.drift or previous.state is PodState.SUSPENDED),
            )
        held = self._held(suspension.uid)
        report = await run_script(
            self.runtime.executor,
            pod,
            container,
            action,
            spec.jobs,
            spec.processes,
            # probes: Skip: a STOP goes to the held processes only, never to those it leaves running.
            only=held if skipped_keys and action is Action.STOP else None,
            wait_s=self.settings.in_pod_wait_s if send else 0.0,
        )
        sockets = [s for s in report.sockets if process_key(s.job, s.process) not in skipped_keys]
        if not sockets:
            raise PodFailure(FailureReason.NO_SOCKETS, f"no containerrun sockets{_filters(spec.jobs, spec.processes)}")
        held = self._held(suspension.uid)
        # Sockets that appeared after the hold was taken: containerrun started their processes, so they ran.
        appeared = [
            Observed(s.job, s.process, True) for s in sockets if not is_stale(s) and (s.job, s.process) not in held
        ]
        if appeared and not await self._write_ledger(
            pod, lambda current: take_hold(current, suspension.uid, hold, appeared)
        ):
            return
        running = [s for s in sockets if s.running and not is_stale(s)]
        if appeared and skipped_keys and action is Action.STATUS:
            previous_or_none = self.progress.get(suspension.uid)
            if previous_or_none is not None:
                previous_or_none.resend = True  # the STOP goes to held processes only: send one that has them
        if action is Action.STATUS and running and previous is not None and previous.state is PodState.SUSPENDED:
            # Someone started a held process again (by hand, or a restart no event showed): stop it at once.
            previous.resend = True
            previous.checked = monotonic
            return
        # A STOP sent now starts the verification clock; a STATUS poll continues the one running.
        started = monotonic if send or previous is None else previous.started
        drift = previous is not None and (previous.drift or (previous.state is PodState.SUSPENDED and send))
        if running:
            if monotonic - started > self.settings.verify_timeout_s:
                raise PodFailure(
                    FailureReason.VERIFY_TIMEOUT,
                    f"still running {self.settings.verify_timeout_s:g}s after STOP: "
                    f"{names([(s.job, s.process) for s in running])}",
                )
            self._advance(
                suspension,
                pod,
                PodState.SUSPENDING,
                started,
                process_statuses(Mode.SUSPEND, sockets, settled=False),
                f"waiting for {names([(s.job, s.process) for s in running])}",
                drift=drift,
            )
            return
        if not await self._write_ledger(pod, lambda current: mark_verified(current, suspension.uid, pod.restarts)):
            return
        stale = [(s.job, s.process) for s in sockets if is_stale(s)]
        message = f"{count(len(sockets))} stopped" + (
            f"; stale sockets (no containerrun): {names(stale)}" if stale else ""
        )
        if skipped_keys:
            message += f"; left running (probes: Skip): {names([split_key(k) for k in sorted(skipped_keys)])}"
        self._advance(
            suspension, pod, PodState.SUSPENDED, started, process_statuses(Mode.SUSPEND, sockets, True), message
        )
        if drift:
            self._event(
                suspension, "Normal", Reason.RESUSPENDED, f"pod {pod.name} ran its processes again; stopped them"
            )

    def _advance(
        self,
        suspension: SuspensionInfo,
        pod: PodInfo,
        state: PodState,
        started: float,
        processes: list[ProcessStatus],
        message: str,
        *,
        failures: int = 0,
        drift: bool = False,
    ) -> None:
        """Record where the hold stands after an exec (or before a long one) and publish it."""
        progress = HoldProgress(
            pod_uid=pod.uid,
            generation=suspension.generation,
            restarts=pod.restarts,
            state=state,
            started=started,
            checked=time.monotonic(),
            processes=processes,
            message=message,
            failures=failures,
            drift=drift,
        )
        self._set_progress(suspension, pod, progress)

    def _set_progress(self, suspension: SuspensionInfo, pod: PodInfo, progress: HoldProgress) -> None:
        previous = self.progress.get(suspension.uid)
        if previous is not None and previous.state is progress.state and previous.pod_uid == progress.pod_uid:
            progress.transition_time = previous.transition_time
        self.progress[suspension.uid] = progress
        self._publish_hold(suspension)

    # Probes and restarts -----------------------------------------------------------------------------------

    async def _announce_conflicts(
        self,
        suspension: SuspensionInfo,
        pod: PodInfo,
        conflicts: tuple[str, ...],
        policy: ProbePolicy,
        monotonic: float,
    ) -> None:
        """Say which probes the suspension makes fail here, in an event and in the status, before the first STOP:
        with probes: Warn, the STOP waits (up to probe_notice_timeout_s) until the status shows it."""
        listed = "; ".join(conflicts)
        if policy is ProbePolicy.SKIP:
            self._event(
                suspension, "Warning", Reason.PROBE_CONFLICT, f"pod {pod.name}: left running (probes: Skip): {listed}"
            )
            return
        self._event(
            suspension,
            "Warning",
            Reason.PROBE_CONFLICT,
            f"pod {pod.name}: stopping processes whose containers have {listed}; the probes will fail and the kubelet "
            "restart the containers, and each time the operator stops the process again (probes: Warn)",
        )
        held = self._held(suspension.uid)
        self._advance(
            suspension,
            pod,
            PodState.SUSPENDING,
            monotonic,
            _statuses(held, ProcessState.RUNNING),
            f"probe conflict, stopping anyway (probes: Warn): {listed}",
        )
        record = self.runtime.outcomes.get((self.namespace, suspension.name), {}).get(self.name)
        if record is not None:
            await self.runtime.wait_shown(
                self.namespace, suspension.name, self.name, record, self.settings.probe_notice_timeout_s
            )

    def _track_restarts(self, pod: PodInfo, wanted: dict[str, SuspensionInfo], ledger: Ledger) -> None:
        """Note each container restart the pod shows since the last look, for restart loops and the metric."""
        counts = dict(pod.probes.restarts)
        previous, self.restart_counts = self.restart_counts, counts
        if previous is None:
            return
        monotonic = time.monotonic()
        window = self.settings.restart_loop_window_s
        for container, restarts in counts.items():
            grown = restarts - previous.get(container, restarts)
            times = [t for t in self.restart_times.get(container, []) if monotonic - t <= window]
            self.restart_times[container] = times + [monotonic] * max(0, grown)
            if grown <= 0:
                continue
            for uid, suspension in wanted.items():
                hold = ledger.holds.get(uid)
                if hold is not None and container in hold.restart_base:
                    RESTARTS_UNDER_SUSPENSION.labels(self.namespace, suspension.name).inc(grown)

    async def _check_restart_loops(
        self, pod: PodInfo, wanted: dict[str, SuspensionInfo], ledger: Ledger
    ) -> float | None:
        """Find the holds whose containers restarted restart_loop_restarts times within the window; announce each
        once per pod, with the kubelet's reason. Returns when a loop may end (to show that), if one lasts."""
        monotonic = time.monotonic()
        window = self.settings.restart_loop_window_s
        limit = self.settings.restart_loop_restarts
        ends: list[float] = []
        for uid, suspension in wanted.items():
            hold = ledger.holds.get(uid)
            looping = []
            for container in sorted(hold.restart_base if hold is not None else {}):
                recent = sorted(t for t in self.restart_times.get(container, []) if monotonic - t <= window)
                if len(recent) >= limit:
                    looping.append((container, len(recent)))
                    ends.append(recent[len(recent) - limit] + window - monotonic)
            if not looping:
                if self.loops.pop(uid, None) is not None:
                    self._publish_hold(suspension)
                continue
            if uid in self.loops:
                continue
            container, restarts = looping[0]
            why = await self._kubelet_reason(pod, container)
            message = f"container {container} restarted {restarts} times in {window / 60:g} min while suspended" + (
                f" (kubelet: {why})" if why else ""
            )
            self.loops[uid] = message
            if uid not in self.loops_warned:
                self.loops_warned.add(uid)
                self._event(
                    suspension,
                    "Warning",
                    Reason.RESTART_LOOP,
                    f"pod {pod.name}: {message}; resuming ends it, or probes: Skip leaves such processes running",
                )
            self._publish_hold(suspension)
        return max(0.0, min(ends)) + 0.1 if ends else None

    async def _kubelet_reason(self, pod: PodInfo, container: str) -> str:
        try:
            events = await self.runtime.kube.pod_events(self.namespace, pod.uid)
        except ApiError as error:
            logger.info(f"pod {self.namespace}/{self.name}: cannot read its events: {error}")
            return ""
        return kubelet_reason(events, container)

    # Outcomes -------------------------------------------------------------------------------------------------

    def _publish_hold(self, suspension: SuspensionInfo) -> None:
        progress = self.progress.get(suspension.uid)
        if progress is None:
            return
        shown = progress.state
        if (
            progress.state is PodState.FAILED
            and progress.failures < FAILURES_SHOWN
            and progress.reason not in SHOWN_AT_ONCE
        ):
            shown = PodState.SUSPENDING
        conflicts, restarts = self._probe_view(suspension.uid)
        self._publish(
            suspension,
            PodRecord(
                uid=progress.pod_uid,
                state=shown,
                mode=Mode.SUSPEND,
                generation=suspension.generation,
                processes=progress.processes,
                message=progress.message,
                reason=progress.reason if shown is PodState.FAILED else "",
                transition_time=progress.transition_time,
                probe_conflicts=conflicts,
                restarts=restarts,
                restart_loop=self.loops.get(suspension.uid, ""),
            ),
        )

    def _probe_view(self, uid: str) -> tuple[tuple[str, ...], int]:
        """The probes this suspension's hold here makes fail (or would: probes Skip and Refuse), and the restarts
        of its containers since it took hold. From the ledger, so it is the same after an operator restart."""
        pod = self.runtime.pod(self.namespace, self.name)
        if pod is None:
            return (), 0
        refused = self.refused.get(uid)
        hold = self.ledger.holds.get(uid) if self.ledger is not None else None
        if hold is None:
            if refused is None:
                return (), 0
            return refused[3], 0
        assert self.ledger is not None
        pairs = [*self.ledger.held_by(uid), *(split_key(key) for key in hold.skipped)]
        conflicts = tuple(probe.describe() for probe in pod.probes.conflicts(pairs))
        restarts = sum(max(0, pod.probes.restarts_of(c) - base) for c, base in hold.restart_base.items())
        return conflicts, restarts

    def _retag_resumed(self, suspension: SuspensionInfo) -> bool:
        """A verified Resumed outcome answers a newer generation too (nothing to do): True when there is one."""
        previous = self.runtime.outcomes.get((self.namespace, suspension.name), {}).get(self.name)
        if previous is None or previous.mode is not Mode.RESUME or previous.state is not PodState.RESUMED:
            return False
        if previous.uid != self.pod_uid:
            return False
        if previous.generation != suspension.generation:
            previous.generation = suspension.generation
            self.runtime.wake(self.namespace, suspension.name)
        return True

    async def _observe_resumed(self, suspension: SuspensionInfo, pod: PodInfo) -> None:
        """Nothing of this suspension is held here (any more): look, and report the processes as they are.

        One STATUS exec: after an operator restart mid-resume, or for a suspension that never held the pod, the
        status lists what really runs instead of assuming it."""
        assert suspension.spec is not None
        spec = suspension.spec
        container = exec_container(pod, spec.container)
        try:
            if container is None:
                raise PodFailure(FailureReason.NO_CONTAINER, f"pod has no container {spec.container!r}")
            report = await run_script(self.runtime.executor, pod, container, Action.STATUS, spec.jobs, spec.processes)
        except PodFailure as failure:
            failures, _ = self.resume_checks.get(suspension.uid, (0, 0.0))
            self.resume_checks[suspension.uid] = (failures + 1, time.monotonic())
            self._report_failure(suspension, pod, failure, mode=Mode.RESUME)
            return
        self.resume_checks.pop(suspension.uid, None)
        live = [s for s in report.sockets if not is_stale(s)]
        stopped = [(s.job, s.process) for s in live if not s.running]
        message = f"{count(len(live) - len(stopped))} running" + (
            f"; stopped, but not by a suspension: {names(stopped)}" if stopped else ""
        )
        processes = process_statuses(Mode.RESUME, report.sockets, settled=True)
        self._report(suspension, pod, PodState.RESUMED, Mode.RESUME, message, processes=processes)

    def _report(
        self,
        suspension: SuspensionInfo,
        pod: PodInfo,
        state: PodState,
        mode: Mode,
        message: str,
        reason: str = "",
        processes: list[ProcessStatus] | None = None,
    ) -> None:
        self._publish(
            suspension,
            PodRecord(
                uid=pod.uid,
                state=state,
                mode=mode,
                generation=suspension.generation,
                processes=processes or [],
                message=message,
                reason=reason,
                transition_time=_now(),
                targeted=suspension.targets(pod),
            ),
        )

    def _report_failure(
        self,
        suspension: SuspensionInfo,
        pod: PodInfo,
        failure: PodFailure,
        mode: Mode = Mode.SUSPEND,
        lasting: bool = False,
    ) -> None:
        """Record a failed step; it is retried after a backoff, and shown Failed once it lasts."""
        if mode is Mode.RESUME:
            self._report(suspension, pod, PodState.FAILED, mode, failure.message, reason=failure.reason)
            return
        previous = self.progress.get(suspension.uid)
        monotonic = time.monotonic()
        failures = (previous.failures if previous is not None and previous.pod_uid == pod.uid else 0) + 1
        if lasting:
            failures = max(failures, FAILURES_SHOWN)
        progress = HoldProgress(
            pod_uid=pod.uid,
            generation=suspension.generation,
            restarts=pod.restarts,
            state=PodState.FAILED,
            started=previous.started if previous is not None else monotonic,
            checked=monotonic,
            message=failure.message,
            reason=failure.reason,
            failures=failures,
        )
        was_shown = (
            previous is not None
            and previous.state is PodState.FAILED
            and (previous.failures >= FAILURES_SHOWN or previous.reason in SHOWN_AT_ONCE)
        )
        self._set_progress(suspension, pod, progress)
        now_shown = failures >= FAILURES_SHOWN or failure.reason in SHOWN_AT_ONCE
        if now_shown and not was_shown:
            self._event(suspension, "Warning", failure.reason, f"pod {pod.name}: {failure.message}")

    def _publish(self, suspension: SuspensionInfo, record: PodRecord) -> None:
        records = self.runtime.outcomes.get((self.namespace, suspension.name), {})
        previous = records.get(self.name)
        if previous is not None and previous == record:
            return
        if previous is None or (previous.state, previous.message) != (record.state, record.message):
            logger.info(
                f"pod {self.namespace}/{self.name} for {suspension.name}: {record.state.value}: {record.message}"
            )
        self.reported[suspension.uid] = suspension.name
        self.runtime.report(self.namespace, suspension.name, self.name, record)

    def _unpublish(self, uid: str) -> None:
        name = self.reported.pop(uid, None)
        if name is not None:
            self.runtime.report(self.namespace, name, self.name, None)

    def _held(self, uid: str) -> list[tuple[str, str]]:
        """The (job, process) pairs this suspension holds here, by the ledger as last read or written."""
        return self.ledger.held_by(uid) if self.ledger is not None else []

    def _starting_for(self, uid: str) -> bool:
        return any(uid in s.suspensions for s in self.starting)

    def _forget(self) -> None:
        """The pod is gone (or replaced): it holds nothing any more."""
        for uid in list(self.reported):
            self._unpublish(uid)
        self.progress.clear()
        self.starting.clear()
        self.restart_counts = None
        self.restart_times.clear()
        self.loops.clear()
        self.loops_warned.clear()
        self.refused.clear()
        self.ledger = None
        self.resource_version = ""
        self.pod_uid = ""

    # The ledger -----------------------------------------------------------------------------------------------

    def _current_ledger(self, pod: PodInfo) -> Ledger:
        """Our last write, unless the index has a newer pod (someone else changed it since)."""
        if self.ledger is None or _version(pod.resource_version) > _version(self.resource_version):
            self.ledger = parse_ledger({HOLDS_ANNOTATION: pod.holds} if pod.holds else None)
            self.resource_version = pod.resource_version
        return self.ledger

    async def _write_ledger(self, pod: PodInfo, change: Callable[[Ledger], Ledger]) -> bool:
        """Apply `change` to the pod's ledger and write it with optimistic concurrency; on a conflict read the pod
        again and re-apply. False (and the step ends) when it could not be written: nothing is done unrecorded."""
        current = self.ledger if self.ledger is not None else Ledger()
        version = self.resource_version or None
        for _ in range(5):
            new = change(current)
            if dump_ledger(new) == dump_ledger(current) and version is not None:
                self.ledger = new
                return True
            try:
                written = await self.runtime.kube.patch_pod_metadata(
                    self.namespace, self.name, ledger_patch(new, SUSPENDED_LABEL), version
                )
            except Conflict:
                try:
                    fresh = await self.runtime.kube.get_pod(self.namespace, self.name)
                    current = parse_ledger((fresh.get("metadata") or {}).get("annotations"))
                except (ApiError, LedgerError) as error:
                    self._ledger_trouble(pod, error)
                    return False
                version = str((fresh.get("metadata") or {}).get("resourceVersion") or "") or None
                continue
            except ApiError as error:
                self._ledger_trouble(pod, error)
                return False
            self.ledger = new
            self.resource_version = str((written.get("metadata") or {}).get("resourceVersion") or "")
            return True
        self._ledger_trouble(pod, Conflict("the pod kept changing"))
        return False

    def _ledger_trouble(self, pod: PodInfo, error: Exception) -> None:
        self.ledger = None  # read it again from the pod next time
        for suspension in self.runtime.suspensions_of(self.namespace):
            if suspension.targets(pod) and suspension.holding(_now()):
                self._report_failure(
                    suspension, pod, PodFailure(FailureReason.LEDGER_WRITE_FAILED, f"hold ledger: {error}")
                )

    # Events ---------------------------------------------------------------------------------------------------

    def _event(self, suspension: SuspensionInfo, type_: str, reason: str, message: str) -> None:
        body = kopf.Body(
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": suspension.name, "namespace": self.namespace, "uid": suspension.uid},
            }
        )
        kopf.event(body, type=type_, reason=reason, message=message[:1000])

    def _event_on_pod(self, pod: PodInfo, type_: str, reason: str, message: str) -> None:
        body = kopf.Body(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
            },
        )
        kopf.event(body, type=type_, reason=reason, message=message[:1000])


def _statuses(pairs: Sequence[tuple[str, str]], state: ProcessState) -> list[ProcessStatus]:
    """The status's view of these processes, all in one state."""
    return [ProcessStatus(job=job, process=process, state=state) for job, process in pairs]


def _filters(jobs: list[str], processes: list[str]) -> str:
    parts = [f"jobs={','.join(jobs)}" if jobs else "", f"processes={','.join(processes)}" if processes else ""]
    shown = " ".join(p for p in parts if p)
    return f" matching {shown}" if shown else ""
