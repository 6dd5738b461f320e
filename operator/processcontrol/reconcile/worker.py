"""One worker per pod: the only code that execs into its pod or writes its hold ledger, so nothing overlaps there.

Level-triggered: each step compares what the live suspensions want of the pod with its ledger and does the one
next thing, in this order:

1. hand over: a wanted suspension joins the holders of processes a leaving hold keeps stopped (no exec), so a
   process covered throughout never runs;
2. give back holds nobody wants any more (suspension resumed, expired, deleted or gone, pod no longer matching):
   mark them releasing in the ledger, then START what ran before its first hold and no other hold covers, in one
   exec whose go-ahead follows a ledger write; the holds leave the ledger once their STARTs were delivered;
3. watch the processes it started until they run;
4. take or keep the holds live suspensions want: one exec looks, the ledger records the hold (and each process's
   state before it), then the go-ahead STOPs exactly the processes recorded; re-check a settled hold now and then
   (a look, which sends nothing).

Every STOP and START is the go-ahead of an exec that is still waiting for it (pods.transition), sent only after
the ledger write it was decided from, bound to the pod's uid. After each exec it looks again, so a release never
waits behind a slow verification and a slow pod delays only itself. Outcomes go to the runtime, per suspension,
where the status daemons read them.
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
from processcontrol.api.timestamps import format_time, parse_time
from processcontrol.bounded import bounded, describe, frames
from processcontrol.exceptions import ApiError, Conflict, LedgerError, LedgerTooNew, NotFound, PodFailure
from processcontrol.podexec.script import Action, ScriptReport, SocketReport, SocketResult
from processcontrol.reconcile.ledger import (
    HOLDS_ANNOTATION,
    Hold,
    Ledger,
    Observed,
    adopt,
    begin_release,
    dump_ledger,
    finish_release,
    ledger_patch,
    mark_verified,
    next_seq,
    parse_ledger,
    process_key,
    split_key,
    take_hold,
    to_start,
)
from processcontrol.reconcile.plan import Mode, PodRecord, reverify_spread
from processcontrol.reconcile.pods import (
    SHOWN_AT_ONCE,
    GoAhead,
    TransitionFailed,
    count,
    is_stale,
    look,
    names,
    observed,
    process_statuses,
    rejected_failure,
    transition,
)
from processcontrol.reconcile.probes import kubelet_reason
from processcontrol.reconcile.restarts import RestartWatch
from processcontrol.reconcile.runtime import Runtime, SuspensionInfo
from processcontrol.reconcile.targets import PodInfo, exec_container

logger = logging.getLogger(__name__)

# Retries of a failed step start here and double up to the failure backoff: a new pod whose sockets are not
# bound yet is stopped a moment later, not ten seconds later.
FIRST_RETRY_S = 0.25
# A pod is shown Failed only after this many failures in a row (or at once: pods.SHOWN_AT_ONCE).
FAILURES_SHOWN = 3
# What of a pod's message a log line carries (the status keeps 1,000 characters, events too).
LOG_MESSAGE_LIMIT = 1000


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


@dataclass(frozen=True)
class Replaced:
    """A STOP was sent into a pod that was replaced under the same name meanwhile: it may have landed in the new
    one (its exec could not tell them apart), so the new pod records it as a hold, each process as running
    before, and it is started again when the hold goes."""

    uid: str
    hold: Hold
    pairs: tuple[tuple[str, str], ...]


class PodWorker:
    """Brings one pod in line with the suspensions that want it, in one asyncio task."""

    def __init__(self, runtime: Runtime, namespace: str, name: str) -> None:
        self.runtime = runtime
        self.namespace = namespace
        self.name = name
        self.settings = runtime.settings
        self.progress: dict[str, HoldProgress] = {}
        self.starting: list[Starting] = []
        # The ledger as last read or written, the pod version it came with, and the pod it belongs to.
        self.ledger: Ledger | None = None
        self.resource_version = ""
        self.pod_uid = ""
        # Our own last write to this pod: a ledger that goes missing while it holds something is restored from it.
        self.written: Ledger | None = None
        self.reported: dict[str, str] = {}  # suspension uid -> name, of every outcome published
        self.release_failures = 0
        self.release_checked = 0.0
        self.resume_checks: dict[str, tuple[int, float]] = {}  # uid -> (failures in a row, when last tried)
        # Suspensions on whose behalf an exec or ledger write is under way: until it ends, the pod may hold
        # something for them that the ledger does not show yet, so their deletion must wait.
        self.acting_for: set[str] = set()
        self.restarts = RestartWatch(
            namespace, self.settings.restart_loop_window_s, self.settings.restart_loop_restarts
        )
        # probes: Refuse: uid -> (its generation, the pod's restarts, the failure, the conflicting probes).
        self.refused: dict[str, tuple[int | None, int, PodFailure, tuple[str, ...]]] = {}
        # probes: Warn: uid -> the generation whose probe conflicts were announced before its first STOP here.
        self.announced: dict[str, int | None] = {}
        self.conflicts_due: dict[str, tuple[str, ...]] = {}  # found by a look, to announce before the STOP
        self.replaced: list[Replaced] = []
        self.too_new_warned = False
        # Monotonic: an exec whose go-ahead was written ended with no report; until then it may still send, so
        # nothing else is sent into the pod (a START must not land before a late STOP).
        self.quiet_until = 0.0
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
                try:
                    delay = await self.step()
                except Exception as error:
                    # A bug, or something in the pod nobody thought of: this pod waits and tries again, and says
                    # so in the status; the operator and every other pod go on. The message is bounded (it may
                    # quote what the pod holds), the frames are the operator's own.
                    logger.error(
                        f"pod {self.namespace}/{self.name}: the step failed; trying again: {describe(error)}\n"
                        + frames(error)
                    )
                    self._step_failed(error)
                    delay = self.settings.failure_backoff_s
                if delay is None and not self._wake.is_set() and self._idle():
                    return
                if delay is None or delay > 0:
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation that comes as the
                    # event is set (a wake-up at shutdown), and the worker then outlives stop_workers by its delay.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(delay):
                            await self._wake.wait()
        finally:
            if self.runtime.workers.get((self.namespace, self.name)) is self:
                del self.runtime.workers[(self.namespace, self.name)]

    def _step_failed(self, error: Exception) -> None:
        pod = self.runtime.pod(self.namespace, self.name)
        if pod is None:
            return
        failure = PodFailure(
            FailureReason.POD_FAILED, f"the operator failed here, trying again: {describe(error, 300)}"
        )
        try:
            for suspension in self.runtime.suspensions_of(self.namespace):
                if suspension.targets(pod) and suspension.holding(_now()):
                    self._report_failure(suspension, pod, failure)
        except Exception as reporting:  # the catch-all must not be what ends the worker
            logger.error(f"pod {self.namespace}/{self.name}: could not report the failure: {describe(reporting)}")

    def _idle(self) -> bool:
        """Nothing held, nothing starting, no suspension wants this pod: the worker may go (a new one comes with
        the next event that concerns the pod)."""
        return (self.ledger is None or self.ledger.empty) and not self.starting and not self.reported

    def holds_for(self, uid: str) -> bool | None:
        """Whether this pod holds something for the suspension, as this worker knows (None: it does not know)."""
        if uid in self.acting_for:
            return True
        if self.ledger is None:
            return None
        return uid in self.ledger.holds

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
        if pod.terminating:
            # A pod being deleted is left alone (no START into a database mid-restore as its pod goes): its holds
            # go with it.
            for uid in list(self.reported):
                self._unpublish(uid)
            return None
        now = _now()
        suspensions = list(self.runtime.suspensions_of(self.namespace))
        by_uid = {s.uid: s for s in suspensions}
        targeting = [s for s in suspensions if s.targets(pod)]
        wanted = {s.uid: s for s in targeting if s.holding(now)}
        try:
            ledger = await self._current_ledger(pod)
        except LedgerError as error:
            self._unreadable(pod, targeting, error)
            return self.settings.failure_backoff_s
        if ledger is None:
            return 0.0  # restored: look again
        if self.replaced:
            await self._record_replaced(pod)
            return 0.0

        quiet = self.quiet_until - time.monotonic()
        if quiet > 0:
            return quiet
        waits: list[float] = []
        self.restarts.track(pod, {uid: s.name for uid, s in wanted.items()}, ledger)
        loop_wait = await self._check_restart_loops(pod, wanted, ledger)
        if loop_wait is not None:
            waits.append(loop_wait)
        monotonic = time.monotonic()
        # A hold's filters (jobs, processes, container) never change: the CRD makes them immutable.
        leaving = [uid for uid, hold in ledger.holds.items() if uid not in wanted and not hold.releasing]
        pending = to_start(ledger)
        if leaving or pending:
            due = self.release_checked + self._retry_delay(self.release_failures) - monotonic
            if not self.release_failures or due <= 0:
                if leaving:
                    await self._let_go(pod, ledger, leaving, wanted, by_uid, now)
                else:
                    await self._give_back(pod, ledger, pending, by_uid)
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
                await self._hold(suspension, pod)
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

    def _unreadable(self, pod: PodInfo, targeting: list[SuspensionInfo], error: LedgerError) -> None:
        """Nothing is sent into a pod whose ledger cannot be read: acting on a guess could start what someone
        else stopped or forget what we stopped. Its targets show why."""
        reason = FailureReason.LEDGER_TOO_NEW if isinstance(error, LedgerTooNew) else FailureReason.LEDGER_UNREADABLE
        if isinstance(error, LedgerTooNew) and not self.too_new_warned:
            self.too_new_warned = True
            self._event_on_pod(pod, "Warning", reason, str(error))
        for suspension in targeting:
            self._report_failure(suspension, pod, PodFailure(reason, str(error)), lasting=True)

    # Giving back ----------------------------------------------------------------------------------------------

    async def _let_go(
        self,
        pod: PodInfo,
        ledger: Ledger,
        leaving: list[str],
        wanted: dict[str, SuspensionInfo],
        by_uid: dict[str, SuspensionInfo],
        now: datetime,
    ) -> None:
        """The write-ahead of giving back, no exec: wanted holds join the processes they cover first (a hand-over
        without a bounce), then the leaving holds are marked releasing; what no other hold keeps waits for its
        START (`_give_back`), the rest leaves the ledger at once."""
        since = format_time(now)
        joining = {uid: self._hold_of(s, pod) for uid, s in wanted.items()}

        def hand_over(current: Ledger) -> Ledger:
            for uid, hold in joining.items():
                if hold.container is not None:
                    current = adopt(current, uid, hold, since=since)
            return begin_release(current, leaving)

        if not await self._write_ledger(pod, hand_over):
            failure = PodFailure(FailureReason.LEDGER_WRITE_FAILED, "could not write the hold ledger")
            self._fail_release(pod, leaving, by_uid, failure)
            return
        self._after_release(pod, ledger, by_uid, started=(), sockets=(), container="")

    async def _give_back(
        self, pod: PodInfo, ledger: Ledger, pending: tuple[tuple[str, str], ...], by_uid: dict[str, SuspensionInfo]
    ) -> None:
        """START what the releasing holds kept stopped and nobody else holds, in one exec whose go-ahead follows a
        ledger write; then the processes delivered leave the ledger (and with them the holds that are done). A
        START that could not be sent stays due and is sent again with backoff, as long as it takes."""
        holders = sorted({uid for pair in pending for uid in ledger.processes[process_key(*pair)].holders})
        container = next(
            (ledger.holds[uid].container for uid in holders if ledger.holds[uid].container),
            exec_container(pod, None),
        )
        if container is None:
            failure = PodFailure(FailureReason.NO_CONTAINER, "pod has no container to exec into")
            self._fail_release(pod, holders, by_uid, failure)
            return
        for uid in holders:
            # A retry keeps showing why it failed until it succeeds (no Stalled flapping on every retry).
            if uid in by_uid and not self.release_failures:
                self._report(
                    by_uid[uid],
                    pod,
                    PodState.RESUMING,
                    Mode.RESUME,
                    f"waiting for {names(pending)} to run",
                    processes=_statuses(pending, ProcessState.STOPPED),
                )
        nothing_to_send: set[tuple[str, str]] = set()

        async def decide(seen: ScriptReport) -> GoAhead | None:
            if not self._same_pod(pod) or self.ledger is None:
                return None
            due = set(to_start(self.ledger)) & set(pending)
            by_pair = {(s.job, s.process): s for s in seen.sockets}
            send = []
            for pair in sorted(due):
                socket = by_pair.get(pair)
                # No containerrun behind the socket (or none at all: a restarted container's containerrun starts
                # its process by itself): nothing keeps it stopped. Otherwise START, whatever the sentinel says:
                # it lags (a STOP queued or still under way), and containerrun ignores a START to what runs.
                if socket is None or is_stale(socket):
                    nothing_to_send.add(pair)
                else:
                    send.append(pair)
            if not send or not await self._write_ledger(pod, next_seq):
                return None
            return GoAhead(Action.START, self._seq(), tuple(send))

        self.acting_for.update(holders)
        try:
            result = await transition(
                self.runtime.executor,
                pod,
                container,
                [],
                [],
                decide,
                only=pending,
                wait_s=self.settings.in_pod_wait_s,
                window_s=self.settings.go_ahead_window_s,
            )
        except TransitionFailed as failure:
            # Sent or not, it stays due: a START that landed is harmless to send again.
            self.quiet_until = max(self.quiet_until, failure.quiet_after)
            self._fail_release(pod, holders, by_uid, failure)
            return
        finally:
            self.acting_for.difference_update(holders)
        acted = result.acted.sockets if result.acted is not None else []
        # A refused socket has no containerrun: nothing there keeps its process stopped any more.
        delivered = {(s.job, s.process) for s in acted if s.result in (SocketResult.SENT, SocketResult.REFUSED)}
        sent = result.sent.pairs if result.sent is not None else ()
        undelivered = [pair for pair in sent if pair not in delivered]
        done = delivered | nothing_to_send
        before = self.ledger if self.ledger is not None else ledger
        if done and not await self._write_ledger(pod, lambda current: finish_release(current, done)):
            unwritten = PodFailure(FailureReason.LEDGER_WRITE_FAILED, "could not write the hold ledger")
            self._fail_release(pod, holders, by_uid, unwritten)
            return
        if undelivered:
            missed = PodFailure(
                FailureReason.START_UNDELIVERED,
                f"START not delivered to {names(undelivered)}; sent again until it is, and they stay held meanwhile",
            )
            self._fail_release(pod, holders, by_uid, missed, on_pod=True)
        else:
            self.release_failures = 0
        started = tuple(s for s in sent if s in delivered)
        self._after_release(pod, before, by_uid, started=started, sockets=acted, container=container)

    def _after_release(
        self,
        pod: PodInfo,
        before: Ledger,
        by_uid: dict[str, SuspensionInfo],
        *,
        started: tuple[tuple[str, str], ...],
        sockets: Sequence[SocketReport],
        container: str,
    ) -> None:
        """Report the holds that left the ledger with the last write: an orphan's in an event on the pod, the
        others as Resuming until what was started runs."""
        after = self.ledger if self.ledger is not None else Ledger()
        gone = {uid: hold.name for uid, hold in before.holds.items() if uid not in after.holds}
        for uid, name in gone.items():
            self.progress.pop(uid, None)
            if uid not in by_uid:
                self._event_on_pod(
                    pod,
                    "Normal",
                    Reason.ORPHAN_RELEASED,
                    f"released the holds of suspension {name} (uid {uid}), which no longer exists"
                    + (f"; started {names(started)}" if started else ""),
                )
            elif started:
                self._report(
                    by_uid[uid],
                    pod,
                    PodState.RESUMING,
                    Mode.RESUME,
                    f"started {names(started)}, waiting for them to run",
                    processes=_statuses(started, ProcessState.STOPPED),
                )
        if started and gone:
            monotonic = time.monotonic()
            starting = Starting(
                pairs=started, container=container, suspensions=gone, started=monotonic, checked=monotonic
            )
            # The START exec waited in the pod: usually they run already, and that report is the verification.
            self.starting.append(starting)
            self._settle_start(pod, starting, sockets, by_uid)

    def _fail_release(
        self,
        pod: PodInfo,
        holders: Sequence[str],
        by_uid: dict[str, SuspensionInfo],
        failure: PodFailure,
        on_pod: bool = False,
    ) -> None:
        """The START could not be sent (or written down): the holds stay in the ledger, releasing, and the
        worker tries again after a backoff; the object shows why, and so does the pod when asked to."""
        self.release_failures += 1
        self.release_checked = time.monotonic()
        first = self.release_failures == 1
        if on_pod and first:
            self._event_on_pod(pod, "Warning", failure.reason, failure.message)
        for uid in holders:
            suspension = by_uid.get(uid)
            if suspension is None:
                continue
            self._report_failure(suspension, pod, failure, mode=Mode.RESUME)
            if first:
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
            report = await look(self.runtime.executor, pod, starting.container, [], [], only=starting.pairs)
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
        """After an operator restart: a hold in force, verified at the pod's current restart count, is in force;
        no exec needed to say so (a re-check comes in its time)."""
        hold = ledger.holds.get(suspension.uid)
        if suspension.uid in self.progress or hold is None or hold.releasing or hold.verified_restarts != pod.restarts:
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
        if not ledger.in_force(suspension.uid):
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

    async def _hold(self, suspension: SuspensionInfo, pod: PodInfo) -> None:
        """Take, keep or verify one suspension's hold; failures are recorded, never raised."""
        self.acting_for.add(suspension.uid)
        try:
            previous = self.progress.get(suspension.uid)
            ledger = self.ledger if self.ledger is not None else Ledger()
            settled = (
                previous is not None
                and previous.pod_uid == pod.uid
                and previous.restarts == pod.restarts
                and not previous.resend
                and not previous.failures
                and ledger.in_force(suspension.uid)
            )
            if settled:
                assert previous is not None
                await self._check(suspension, pod, previous)
            else:
                await self._stop(suspension, pod, previous)
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

    def _same_pod(self, pod: PodInfo) -> bool:
        """Whether the pod of that name is still the one this step began with (not re-created meanwhile)."""
        current = self.runtime.pod(self.namespace, self.name)
        return current is not None and current.uid == pod.uid == self.pod_uid

    async def _stop(self, suspension: SuspensionInfo, pod: PodInfo, previous: HoldProgress | None) -> None:
        """One exec: look, write the hold (new sockets, each process's state before its first hold), then STOP the
        held processes that run, and report what the in-pod wait saw."""
        assert suspension.spec is not None
        spec = suspension.spec
        uid = suspension.uid
        hold = self._hold_of(suspension, pod)
        container = hold.container
        if container is None:
            raise PodFailure(FailureReason.NO_CONTAINER, f"pod has no container {spec.container!r}")
        refused = self.refused.get(uid)
        if refused is not None and refused[:2] == (suspension.generation, pod.restarts):
            raise refused[2]  # nothing changed since the pod was refused: no exec to find that out again
        monotonic = time.monotonic()
        fresh = previous is None or previous.pod_uid != pod.uid or previous.restarts != pod.restarts
        drift = previous is not None and (previous.drift or previous.state is PodState.SUSPENDED)
        if fresh or previous is None or previous.state is not PodState.FAILED:
            # The STOP exec waits in the pod for up to in_pod_wait_s: say meanwhile what it waits for. A retry of
            # a failed pod keeps showing the failure until it succeeds (no Stalled flapping on every retry).
            held = self._held(uid)
            self._advance(
                suspension,
                pod,
                PodState.SUSPENDING,
                monotonic,
                _statuses(held, ProcessState.STOPPING),
                f"waiting for {names(held) or 'the processes'} to stop",
                failures=previous.failures if previous is not None and not fresh else 0,
                drift=drift,
            )
        since = format_time(_now())

        async def decide(seen: ScriptReport) -> GoAhead | None:
            if not self._same_pod(pod) or not self._still_wanted(uid):
                return None  # let go, or another pod now: nothing written, nothing sent
            if not seen.sockets:
                raise PodFailure(
                    FailureReason.NO_SOCKETS, f"no containerrun sockets{_filters(spec.jobs, spec.processes)}"
                )
            current = self.ledger if self.ledger is not None else Ledger()
            taken: Hold | None = hold
            if not current.in_force(uid):
                taken = self._first_hold(suspension, pod, hold, seen)
            if taken is None:
                return None  # its probe conflicts are announced first
            skipped = set(taken.skipped) | set(current.holds[uid].skipped if uid in current.holds else ())
            seen_now = [o for o in observed(seen.sockets) if process_key(o.job, o.process) not in skipped]
            # The ledger lost while processes were held (the label says so, no memory survived an operator
            # restart): what it stopped must not be taken for stopped by hand.
            lost = current.empty and pod.labels.get(SUSPENDED_LABEL) == "true"

            def hold_it(ledger: Ledger) -> Ledger:
                return next_seq(take_hold(ledger, uid, taken, seen_now, since=since, assume_running=lost))

            if not await self._write_ledger(pod, hold_it):
                return None
            self.conflicts_due.pop(uid, None)  # the ledger has the hold now: its probe view comes from there
            # Every held process with a containerrun, whatever its sentinel says: it lags (a containerrun just
            # restarted may not have written it yet), and containerrun ignores a STOP to what is stopped.
            live = {(s.job, s.process) for s in seen.sockets if not is_stale(s)}
            send = tuple(pair for pair in self._held(uid) if pair in live)
            return GoAhead(Action.STOP, self._seq(), send) if send else None

        try:
            result = await transition(
                self.runtime.executor,
                pod,
                container,
                spec.jobs,
                spec.processes,
                decide,
                wait_s=self.settings.in_pod_wait_s,
                window_s=self.settings.go_ahead_window_s,
            )
        except TransitionFailed as failure:
            self.quiet_until = max(self.quiet_until, failure.quiet_after)
            if failure.sent is not None:
                self._note_replaced(pod, uid, hold, failure.sent)
            raise
        if result.sent is not None:
            self._note_replaced(pod, uid, hold, result.sent)
        conflicts = self.conflicts_due.get(uid)
        if conflicts is not None and self.announced.get(uid, -1) != suspension.generation:
            await self._announce_conflicts(suspension, pod, conflicts, monotonic)
            return
        if self.ledger is None or not self.ledger.in_force(uid) or not self._same_pod(pod):
            return  # let go while it looked, or the ledger could not be written: nothing was sent
        acted = {(s.job, s.process): s for s in (result.acted.sockets if result.acted is not None else [])}
        sockets = [acted.get((s.job, s.process), s) for s in result.look.sockets]
        self._settle_stop(suspension, pod, sockets, monotonic, drift)
        await self._verified_if_stopped(suspension, pod, sockets, monotonic, drift)
        progress = self.progress.get(uid)
        rejected = rejected_failure(result.look, progress.message if progress is not None else "")
        if rejected is not None:
            raise rejected

    def _first_hold(self, suspension: SuspensionInfo, pod: PodInfo, hold: Hold, seen: ScriptReport) -> Hold | None:
        """The hold as the probes policy takes it, from what the look saw; None when the probe conflicts must be
        announced before the first STOP (probes: Warn). Raises the failure of probes: Refuse."""
        assert suspension.spec is not None
        spec = suspension.spec
        uid = suspension.uid
        live = [(s.job, s.process) for s in seen.sockets if not is_stale(s)]
        conflicts = tuple(probe.describe() for probe in pod.probes.conflicts(live))
        if conflicts and spec.probes is ProbePolicy.REFUSE:
            failure = PodFailure(
                FailureReason.PROBE_CONFLICT,
                f"nothing stopped (probes: Refuse): stopped processes would fail {'; '.join(conflicts)}",
            )
            self.refused[uid] = (suspension.generation, pod.restarts, failure, conflicts)
            raise failure
        self.refused.pop(uid, None)
        if conflicts and spec.probes is ProbePolicy.WARN and self.announced.get(uid, -1) != suspension.generation:
            self.conflicts_due[uid] = conflicts
            return None
        if conflicts and spec.probes is ProbePolicy.SKIP:
            listed = "; ".join(conflicts)
            self._event(
                suspension, "Warning", Reason.PROBE_CONFLICT, f"pod {pod.name}: left running (probes: Skip): {listed}"
            )
        skipped = pod.probes.probed(live) if spec.probes is ProbePolicy.SKIP else []
        stopped = [pair for pair in live if pair not in skipped]
        return hold.model_copy(
            update={
                "restart_base": {c: pod.probes.restarts_of(c) for c in pod.probes.containers_of(stopped)},
                "skipped": tuple(sorted(process_key(job, process) for job, process in skipped)),
            }
        )

    async def _check(self, suspension: SuspensionInfo, pod: PodInfo, previous: HoldProgress) -> None:
        """A look at the held processes, no go-ahead: a verification poll after a STOP, or the re-check of a
        settled hold (one that runs again is stopped at once by the next step)."""
        assert suspension.spec is not None
        container = self._hold_of(suspension, pod).container
        if container is None:
            raise PodFailure(FailureReason.NO_CONTAINER, f"pod has no container {suspension.spec.container!r}")
        held = self._held(suspension.uid)
        # By the filters, not the held pairs: a socket that appeared since (a process containerrun started) is
        # found too, and recorded and stopped by the next step.
        report = await look(self.runtime.executor, pod, container, suspension.spec.jobs, suspension.spec.processes)
        rejected = rejected_failure(report, f"{count(len(held))} held")
        if rejected is not None:
            raise rejected
        monotonic = time.monotonic()
        running = [s for s in report.sockets if s.running and not is_stale(s) and (s.job, s.process) in held]
        skipped = self._skipped(suspension.uid)
        appeared = [
            s
            for s in report.sockets
            if not is_stale(s) and (s.job, s.process) not in held and process_key(s.job, s.process) not in skipped
        ]
        if previous.state is PodState.SUSPENDED:
            if running or appeared:
                # Started again (by hand, or a restart no event showed), or new sockets: stop them at once.
                previous.resend = True
                previous.checked = monotonic
                return
            previous.checked = monotonic
            return
        if running:
            self._settle_stop(suspension, pod, report.sockets, previous.started, previous.drift)
            return
        await self._verified_if_stopped(suspension, pod, report.sockets, previous.started, previous.drift)

    def _skipped(self, uid: str) -> set[str]:
        hold = self.ledger.holds.get(uid) if self.ledger is not None else None
        return set(hold.skipped) if hold is not None else set()

    def _settle_stop(
        self, suspension: SuspensionInfo, pod: PodInfo, sockets: Sequence[SocketReport], started: float, drift: bool
    ) -> None:
        """Processes still running after a STOP: wait for them, up to the verification deadline."""
        held = set(self._held(suspension.uid))
        running = [(s.job, s.process) for s in sockets if s.running and not is_stale(s) and (s.job, s.process) in held]
        if not running:
            return
        if time.monotonic() - started > self.settings.verify_timeout_s:
            raise PodFailure(
                FailureReason.VERIFY_TIMEOUT,
                f"still running {self.settings.verify_timeout_s:g}s after STOP: {names(running)}",
            )
        shown = [s for s in sockets if (s.job, s.process) in held]
        self._advance(
            suspension,
            pod,
            PodState.SUSPENDING,
            started,
            process_statuses(Mode.SUSPEND, shown, settled=False),
            f"waiting for {names(running)}",
            drift=drift,
        )

    async def _verified_if_stopped(
        self, suspension: SuspensionInfo, pod: PodInfo, sockets: Sequence[SocketReport], started: float, drift: bool
    ) -> None:
        """Every held process is stopped: the hold is verified at this restart count, in the ledger and the status."""
        uid = suspension.uid
        held = set(self._held(uid))
        shown = [s for s in sockets if (s.job, s.process) in held]
        if any(s.running and not is_stale(s) for s in shown):
            return
        skipped = sorted(self._skipped(uid))
        if not await self._write_ledger(pod, lambda current: mark_verified(current, uid, pod.restarts)):
            return
        if not held and skipped:
            left = names([split_key(key) for key in skipped])
            message = f"nothing stopped: every targeted process runs in a probed container, left running: {left}"
            self._advance(suspension, pod, PodState.SUSPENDED, started, [], message)
            return
        stale = [(s.job, s.process) for s in shown if is_stale(s)]
        message = f"{count(len(shown))} stopped"
        if stale:
            message += f"; stale sockets (no containerrun): {names(stale)}"
        if skipped:
            message += f"; left running (probes: Skip): {names([split_key(k) for k in skipped])}"
        self._advance(
            suspension, pod, PodState.SUSPENDED, started, process_statuses(Mode.SUSPEND, shown, True), message
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

    # A pod replaced under the same name ---------------------------------------------------------------------

    def _note_replaced(self, pod: PodInfo, uid: str, hold: Hold, sent: GoAhead) -> None:
        """After a STOP was sent: if the pod of that name is another one now, the STOP may have landed there."""
        current = self.runtime.pod(self.namespace, self.name)
        if sent.action is Action.STOP and current is not None and current.uid != pod.uid:
            self.replaced.append(Replaced(uid=uid, hold=hold, pairs=sent.pairs))

    async def _record_replaced(self, pod: PodInfo) -> None:
        """Record in the new pod the holds whose STOP may have landed there: as running before, so that they are
        started again when the hold goes (which it does at once if the new pod is no target)."""
        replaced, self.replaced = self.replaced, []
        since = format_time(_now())

        def record(current: Ledger) -> Ledger:
            for entry in replaced:
                seen = [Observed(job, process, running=True) for job, process in entry.pairs]
                current = take_hold(current, entry.uid, entry.hold, seen, since=since)
            return current

        if await self._write_ledger(pod, record):
            self._event_on_pod(
                pod,
                "Warning",
                Reason.LEDGER_RESTORED,
                "the pod was re-created while a STOP was on its way; recorded "
                + names([pair for entry in replaced for pair in entry.pairs])
                + " as held (running before), so they are started again when the hold goes",
            )
        else:
            self.replaced = replaced + self.replaced

    # Probes and restarts -----------------------------------------------------------------------------------

    async def _announce_conflicts(
        self, suspension: SuspensionInfo, pod: PodInfo, conflicts: tuple[str, ...], monotonic: float
    ) -> None:
        """probes: Warn: say which probes the suspension makes fail here, in an event and in the status, before the
        first STOP, which waits (up to probe_notice_timeout_s) until the status shows it."""
        listed = "; ".join(conflicts)
        self._event(
            suspension,
            "Warning",
            Reason.PROBE_CONFLICT,
            f"pod {pod.name}: stopping processes whose containers have {listed}; the probes will fail and the kubelet "
            "restart the containers, and each time the operator stops the process again (probes: Warn)",
        )
        self.announced[suspension.uid] = suspension.generation
        self._advance(
            suspension,
            pod,
            PodState.SUSPENDING,
            monotonic,
            [],
            f"probe conflict, stopping anyway (probes: Warn): {listed}",
        )
        progress = self.progress[suspension.uid]
        progress.resend = True  # the STOP follows at once
        record = self.runtime.outcomes.get((self.namespace, suspension.name), {}).get(self.name)
        if record is not None:
            await self.runtime.wait_shown(
                self.namespace, suspension.name, self.name, record, self.settings.probe_notice_timeout_s
            )

    async def _check_restart_loops(
        self, pod: PodInfo, wanted: dict[str, SuspensionInfo], ledger: Ledger
    ) -> float | None:
        """Find the holds whose containers restarted restart_loop_restarts times within the window; announce each
        once per pod, with the kubelet's reason. Returns when a loop may end (to show that), if one lasts."""
        window = self.settings.restart_loop_window_s
        ends: list[float] = []
        for uid, suspension in wanted.items():
            loop = self.restarts.looping(uid, ledger)
            if loop is None:
                if self.restarts.loops.pop(uid, None) is not None:
                    self._publish_hold(suspension)
                continue
            ends.append(loop.ends_in)
            if uid in self.restarts.loops:
                continue
            why = await self._kubelet_reason(pod, loop.container)
            message = f"container {loop.container} restarted {loop.restarts} times in {window / 60:g} min"
            message += " while suspended" + (f" (kubelet: {why})" if why else "")
            self.restarts.loops[uid] = message
            if uid not in self.restarts.warned:
                self.restarts.warned.add(uid)
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
        hold = self.ledger.holds.get(suspension.uid) if self.ledger is not None else None
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
                restart_loop=self.restarts.loops.get(suspension.uid, ""),
                held_since=parse_time(hold.since) if hold is not None and hold.since else None,
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
            if refused is not None:
                return refused[3], 0
            return self.conflicts_due.get(uid, ()), 0
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

        One look: after an operator restart mid-resume, or for a suspension that never held the pod, the status
        lists what really runs instead of assuming it."""
        assert suspension.spec is not None
        spec = suspension.spec
        container = exec_container(pod, spec.container)
        try:
            if container is None:
                raise PodFailure(FailureReason.NO_CONTAINER, f"pod has no container {spec.container!r}")
            report = await look(self.runtime.executor, pod, container, spec.jobs, spec.processes)
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
        if report.rejected:
            message += f"; left alone {report.rejected} sockets whose names are no BOSH names"
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
                f"pod {self.namespace}/{self.name} for {suspension.name}: {record.state.value}: "
                + bounded(record.message, LOG_MESSAGE_LIMIT)
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

    def _seq(self) -> int:
        return self.ledger.seq if self.ledger is not None else 0

    def _starting_for(self, uid: str) -> bool:
        return any(uid in s.suspensions for s in self.starting)

    def _forget(self) -> None:
        """The pod is gone (or replaced): it holds nothing any more."""
        for uid in list(self.reported):
            self._unpublish(uid)
        self.progress.clear()
        self.starting.clear()
        self.restarts.forget()
        self.refused.clear()
        self.announced.clear()
        self.conflicts_due.clear()
        self.ledger = None
        self.written = None
        self.resource_version = ""
        self.pod_uid = ""
        self.too_new_warned = False

    # The ledger -----------------------------------------------------------------------------------------------

    async def _current_ledger(self, pod: PodInfo) -> Ledger | None:
        """Our last write, unless the index has a newer pod (someone else changed it since): then the ledger as the
        pod has it now (the index keeps only its holders). A ledger that went missing while our last write held
        something is written back (None: it was, or the pod was just replaced; look again)."""
        if self.ledger is not None and _version(pod.resource_version) <= _version(self.resource_version):
            return self.ledger
        read, version = Ledger(), pod.resource_version
        if pod.ledger.present:
            try:
                fresh = await self.runtime.kube.get_pod(self.namespace, self.name)
            except ApiError as error:
                raise LedgerError(f"could not read the pod's hold ledger: {error}") from error
            metadata = fresh.get("metadata") or {}
            if metadata.get("uid") != pod.uid:
                await asyncio.sleep(0.1)  # another pod of that name: the index has it in a moment
                return None
            read = parse_ledger(metadata.get("annotations"))
            version = str(metadata.get("resourceVersion") or "")
        self.ledger = read
        self.resource_version = version
        lost = self.written
        if not read.empty or lost is None or lost.empty:
            return read
        # Removed by hand (or lost) while this operator holds processes here: what it knows beats an absent
        # ledger, or a release would take its own STOPs for stops by hand and leave the processes stopped.
        if await self._write_ledger(pod, lambda current: next_seq(lost) if current.empty else current):
            self._event_on_pod(
                pod,
                "Warning",
                Reason.LEDGER_RESTORED,
                f"the hold ledger ({HOLDS_ANNOTATION}) was removed while it held "
                f"{names([split_key(key) for key in sorted(lost.processes)]) or 'processes'}; written back",
            )
        return None

    async def _write_ledger(self, pod: PodInfo, change: Callable[[Ledger], Ledger]) -> bool:
        """Apply `change` to the pod's ledger and write it with optimistic concurrency, bound to the pod's uid;
        on a conflict read the pod again and re-apply, unless it is another pod of that name now. False (and the
        step ends) when it could not be written: nothing is done unrecorded."""
        if self.ledger is None:
            # After a failed write nothing is assumed: the pod as it is now is the base of the next one.
            try:
                fresh = await self.runtime.kube.get_pod(self.namespace, self.name)
                metadata = fresh.get("metadata") or {}
                if metadata.get("uid") != pod.uid:
                    raise NotFound(f"pod {self.namespace}/{self.name} was re-created")
                self.ledger = parse_ledger(metadata.get("annotations"))
            except (ApiError, LedgerError) as error:
                self._ledger_trouble(pod, error)
                return False
            self.resource_version = str(metadata.get("resourceVersion") or "")
        current = self.ledger
        version = self.resource_version or None
        for _ in range(5):
            new = change(current)
            if dump_ledger(new) == dump_ledger(current) and version is not None:
                self.ledger = new
                return True
            try:
                written = await self.runtime.kube.patch_pod_metadata(
                    self.namespace, self.name, ledger_patch(new, SUSPENDED_LABEL), version, uid=pod.uid
                )
            except Conflict:
                try:
                    fresh = await self.runtime.kube.get_pod(self.namespace, self.name)
                    metadata = fresh.get("metadata") or {}
                    if metadata.get("uid") != pod.uid:
                        raise NotFound(f"pod {self.namespace}/{self.name} was re-created")
                    current = parse_ledger(metadata.get("annotations"))
                except (ApiError, LedgerError) as error:
                    self._ledger_trouble(pod, error)
                    return False
                version = str(metadata.get("resourceVersion") or "") or None
                continue
            except ApiError as error:
                self._ledger_trouble(pod, error)
                return False
            self.ledger = self.written = new
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
