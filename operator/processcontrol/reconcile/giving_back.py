"""Giving back a pod's holds that nobody wants any more (a suspension resumed, expired, deleted or gone, a pod no
longer matching): mark them releasing in the ledger (a wanted suspension joins the holders of what they keep
stopped first), START what ran before its first hold and no other hold covers in one exec whose go-ahead follows
a ledger write, watch it until it runs; and, for a suspension that holds nothing here, report what runs. A
staged hold is given back one stage at a time, the last first, each once its gate opens (stages.py).

Failures are retried with backoff, as long as it takes: a hold stays in the ledger, releasing, until its START
was delivered."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from processcontrol.api import PodState, ProcessState, ProcessStatus
from processcontrol.api.reasons import FailureReason, Reason
from processcontrol.api.timestamps import format_time_up
from processcontrol.exceptions import ApiError, PodFailure
from processcontrol.ledger import (
    Ledger,
    adopt,
    begin_release,
    finish_release,
    next_seq,
    process_key,
    release_stages,
    resume_level,
    split_key,
    to_start,
)
from processcontrol.podexec.script import Action, ScriptReport, SocketReport, SocketResult
from processcontrol.reconcile.backoff import poll_delay, retry_delay
from processcontrol.reconcile.ledger_writer import LedgerWriter
from processcontrol.reconcile.plan import Mode
from processcontrol.reconcile.pods import (
    GoAhead,
    TransitionFailed,
    count,
    is_stale,
    look,
    names,
    process_statuses,
    statuses,
    transition,
)
from processcontrol.reconcile.reporting import Reporter
from processcontrol.reconcile.runtime import Runtime, SuspensionInfo
from processcontrol.reconcile.stages import may_give_back
from processcontrol.targets import PodInfo, exec_container


@dataclass
class Starting:
    """Processes this worker sent START and waits to see running, on behalf of the holds it gave back."""

    pairs: tuple[tuple[str, str], ...]
    container: str
    suspensions: dict[str, str]  # uid -> name
    started: float
    checked: float


class GivingBack:
    """A pod's giving back: what it started and watches, and how its last tries to give back and to look went."""

    def __init__(self, runtime: Runtime, ledger: LedgerWriter, reporter: Reporter) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.ledger = ledger
        self.reporter = reporter
        self.starting: list[Starting] = []
        self.release_failures = 0
        self.release_checked = 0.0
        self.resume_checks: dict[str, tuple[int, float]] = {}  # uid -> (failures in a row, when last tried)

    @property
    def busy(self) -> bool:
        """Processes it started are still watched."""
        return bool(self.starting)

    def release_wait(self, monotonic: float) -> float:
        """Seconds until the next try to give back (0 or less: now)."""
        if not self.release_failures:
            return 0.0
        return self.release_checked + retry_delay(self.settings, self.release_failures) - monotonic

    def start_wait(self, starting: Starting, monotonic: float) -> float:
        """Seconds until the next look at processes it started (0 or less: now)."""
        return starting.checked + poll_delay(self.settings, starting.started, starting.checked) - monotonic

    def resume_wait(self, uid: str, monotonic: float) -> float:
        """Seconds until the next look for a suspension that holds nothing here (0 or less: now)."""
        failures, checked = self.resume_checks.get(uid, (0, 0.0))
        return checked + retry_delay(self.settings, failures) - monotonic if failures else 0.0

    async def let_go(
        self,
        pod: PodInfo,
        ledger: Ledger,
        leaving: list[str],
        wanted: dict[str, SuspensionInfo],
        by_uid: dict[str, SuspensionInfo],
        now: datetime,
    ) -> list[str]:
        """The write-ahead of giving back, no exec: wanted holds join the processes they cover first (a hand-over
        without a bounce), then the leaving holds are marked releasing; what no other hold keeps waits for its
        START (`give_back`), the rest leaves the ledger at once. Returns the holds that left it."""
        leaving = await self._confirmed(ledger, leaving, by_uid)
        if not leaving:
            # Each one still there, or unread: look again with backoff, not in a loop of reads.
            self.release_failures += 1
            self.release_checked = time.monotonic()
            return []
        since = format_time_up(now)
        joining = {uid: s.hold_on(pod) for uid, s in wanted.items() if s.may_join(pod)}
        # A staged hold of a live suspension gives back its last stage alone, while it has more than one.
        partial = {
            uid: len(ledger.holds[uid].stages) - 1
            for uid in leaving
            if uid in by_uid and len(ledger.holds[uid].stages) > 1
        }
        whole = [uid for uid in leaving if uid not in partial]

        def hand_over(current: Ledger) -> Ledger:
            for uid, hold in joining.items():
                if hold.container is not None:
                    skipped = wanted[uid].left_running(pod, [split_key(key) for key in current.processes])
                    current = adopt(current, uid, hold.model_copy(update={"skipped": skipped}), since=since)
            for uid, keep in partial.items():
                current = release_stages(current, uid, keep)
            return begin_release(current, whole)

        if not await self.ledger.write(pod, hand_over):
            failure = PodFailure(FailureReason.LEDGER_WRITE_FAILED, "could not write the hold ledger")
            self._fail_release(pod, leaving, by_uid, failure)
            return []
        return self._after_release(pod, ledger, by_uid, started=(), sockets=(), container="")

    async def _confirmed(self, ledger: Ledger, leaving: list[str], by_uid: dict[str, SuspensionInfo]) -> list[str]:
        """The leaving holds, less any orphan (its suspension absent from the index) that a live read finds still
        there: the index may lag behind the API (an operator just started), and giving back a live suspension's
        hold would START what it holds. A read that fails keeps the orphan for the next step."""
        confirmed = []
        for uid in leaving:
            if uid not in by_uid:
                try:
                    found = await self.runtime.kube.find_suspension(self.ledger.namespace, ledger.holds[uid].name)
                except ApiError:
                    continue
                if found is not None and (found.get("metadata") or {}).get("uid") == uid:
                    continue
            confirmed.append(uid)
        return confirmed

    async def give_back(
        self, pod: PodInfo, ledger: Ledger, pending: tuple[tuple[str, str], ...], by_uid: dict[str, SuspensionInfo]
    ) -> list[str]:
        """START what the releasing holds kept stopped and nobody else holds, in one exec whose go-ahead follows a
        ledger write; then the processes delivered leave the ledger (and with them the holds that are done). A
        START that could not be sent stays due and is sent again with backoff, as long as it takes. Returns the
        holds that left the ledger."""
        holders = sorted({uid for pair in pending for uid in ledger.processes[process_key(*pair)].holders})
        container = next(
            (ledger.holds[uid].container for uid in holders if ledger.holds[uid].container),
            exec_container(pod, None),
        )
        if container is None:
            failure = PodFailure(FailureReason.NO_CONTAINER, "pod has no container to exec into")
            self._fail_release(pod, holders, by_uid, failure)
            return []
        for uid in holders:
            # A retry keeps showing why it failed until it succeeds (no Stalled flapping on every retry).
            if uid in by_uid and not self.release_failures:
                self._report(
                    by_uid[uid],
                    pod,
                    PodState.RESUMING,
                    f"waiting for {names(pending)} to run",
                    statuses(pending, ProcessState.STOPPED),
                )
        nothing_to_send: set[tuple[str, str]] = set()

        async def decide(seen: ScriptReport) -> GoAhead | None:
            current = self.ledger.known
            if not self.ledger.same_pod(pod) or current is None:
                return None
            due = set(to_start(current)) & set(pending)
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
            if not send or not await self.ledger.write(pod, next_seq, urgent=True):
                return None
            return GoAhead(Action.START, self.ledger.seq, tuple(send))

        with self.ledger.acting_for(holders):
            try:
                result = await transition(
                    self.runtime.executor,
                    pod,
                    container,
                    [],
                    [],
                    decide,
                    fence=self.runtime.leader,
                    only=pending,
                    wait_s=self.settings.in_pod_wait_s,
                    window_s=self.settings.go_ahead_window_s,
                )
            except TransitionFailed as failure:
                # Sent or not, it stays due: a START that landed is harmless to send again.
                self.ledger.in_doubt(failure)
                self._fail_release(pod, holders, by_uid, failure)
                return []
        acted = result.acted.sockets if result.acted is not None else []
        # A refused socket has no containerrun: nothing there keeps its process stopped any more.
        delivered = {(s.job, s.process) for s in acted if s.result in (SocketResult.SENT, SocketResult.REFUSED)}
        sent = result.sent.pairs if result.sent is not None else ()
        undelivered = [pair for pair in sent if pair not in delivered]
        done = delivered | nothing_to_send
        before = self.ledger.known if self.ledger.known is not None else ledger
        if done and not await self.ledger.write(pod, lambda current: finish_release(current, done)):
            unwritten = PodFailure(FailureReason.LEDGER_WRITE_FAILED, "could not write the hold ledger")
            self._fail_release(pod, holders, by_uid, unwritten)
            return []
        if undelivered:
            missed = PodFailure(
                FailureReason.START_UNDELIVERED,
                f"START not delivered to {names(undelivered)}; sent again until it is, and they stay held meanwhile",
            )
            self._fail_release(pod, holders, by_uid, missed, on_pod=True)
        else:
            self.release_failures = 0
        started = tuple(s for s in sent if s in delivered)
        return self._after_release(pod, before, by_uid, started=started, sockets=acted, container=container)

    def _after_release(
        self,
        pod: PodInfo,
        before: Ledger,
        by_uid: dict[str, SuspensionInfo],
        *,
        started: tuple[tuple[str, str], ...],
        sockets: Sequence[SocketReport],
        container: str,
    ) -> list[str]:
        """Report the holds that left the ledger with the last write: an orphan's in an event on the pod, the
        others as Resuming until what was started runs. Returns them."""
        after = self.ledger.or_empty()
        gone = {uid: hold.name for uid, hold in before.holds.items() if uid not in after.holds}
        # A staged hold that gave back a stage stays in force: what was started for it is watched too.
        staged = {
            uid: before.holds[uid].name
            for uid in after.holds
            if uid in before.holds
            and before.holds[uid].stages
            and after.in_force(uid)
            and any(uid in before.processes[process_key(*pair)].holders for pair in started)
        }
        for uid, name in {**gone, **staged}.items():
            if uid not in by_uid:
                self.reporter.event_on_pod(
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
                    f"started {names(started)}, waiting for them to run",
                    statuses(started, ProcessState.STOPPED),
                    level=self._level(uid) + 1,  # what it started runs only once seen running
                )
        if started and (gone or staged):
            monotonic = time.monotonic()
            starting = Starting(
                pairs=started,
                container=container,
                suspensions={**gone, **staged},
                started=monotonic,
                checked=monotonic,
            )
            # The START exec waited in the pod: usually they run already, and that report is the verification.
            self.starting.append(starting)
            self._settle_start(pod, starting, sockets, by_uid)
        return list(gone)

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
            self.reporter.event_on_pod(pod, "Warning", failure.reason, failure.message)
        for uid in holders:
            suspension = by_uid.get(uid)
            if suspension is None:
                continue
            self.reporter.resume_failed(suspension, pod, failure)
            if first:
                self.reporter.event(
                    suspension,
                    "Warning",
                    Reason.RESUME_FAILED,
                    f"pod {pod.name}: {failure.message}; its processes stay held until they can be given back",
                )

    async def watch_start(self, pod: PodInfo, starting: Starting, by_uid: dict[str, SuspensionInfo]) -> None:
        """Poll until the processes started run; past the verification deadline, say which do not."""
        starting.checked = time.monotonic()
        try:
            report = await look(self.runtime.executor, pod, starting.container, [], [], only=starting.pairs)
        except PodFailure as failure:
            if starting.checked - starting.started > self.settings.verify_timeout_s:
                self.starting.remove(starting)
                for uid in starting.suspensions:
                    if uid in by_uid:
                        self.reporter.resume_failed(by_uid[uid], pod, failure)
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
                self.reporter.resume_failed(suspension, pod, late)
            elif suspension.staged and self.ledger.hold(uid) is not None:
                level = self._level(uid)
                last = suspension.spec.stage_count if suspension.spec is not None else level + 1
                started = f"stage {last}" if last == level + 1 else f"stages {level + 1}-{last}"
                self._report(
                    suspension,
                    pod,
                    PodState.RESUMING,
                    f"{started} running; stage {level} waits until every pod has stage {level + 1} running",
                    process_statuses(Mode.RESUME, chosen, settled=True),
                )
            elif suspension.targets(pod):
                self._report(
                    suspension,
                    pod,
                    PodState.RESUMED,
                    f"{count(len(chosen))} running",
                    process_statuses(Mode.RESUME, chosen, settled=True),
                )
            else:
                self.reporter.unpublish(uid)

    def retag_resumed(self, suspension: SuspensionInfo) -> bool:
        """A verified Resumed outcome answers a newer generation too (nothing to do): True when there is one."""
        previous = self.reporter.last(suspension)
        if previous is None or previous.mode is not Mode.RESUME or previous.state is not PodState.RESUMED:
            return False
        if previous.uid != self.ledger.pod_uid:
            return False
        self.reporter.retag(suspension)
        return True

    async def observe_resumed(self, suspension: SuspensionInfo, pod: PodInfo) -> None:
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
            self.reporter.resume_failed(suspension, pod, failure)
            return
        self.resume_checks.pop(suspension.uid, None)
        if suspension.staged:
            # Its look has no filter (one jobs/processes filter cannot say its stages): only what they select.
            report = report.model_copy(
                update={"sockets": [s for s in report.sockets if suspension.stage_of(s.job, s.process) is not None]}
            )
        live = [s for s in report.sockets if not is_stale(s)]
        stopped = [(s.job, s.process) for s in live if not s.running]
        message = f"{count(len(live) - len(stopped))} running" + (
            f"; stopped, but not by a suspension: {names(stopped)}" if stopped else ""
        )
        if report.rejected:
            message += f"; left alone {report.rejected} sockets whose names are no BOSH names"
        self._report(
            suspension, pod, PodState.RESUMED, message, process_statuses(Mode.RESUME, report.sockets, settled=True)
        )

    # Ordered stages (the gates are in stages.py) ---------------------------------------------------------------

    def stage_ready(self, pod: PodInfo, uid: str, ledger: Ledger, by_uid: dict[str, SuspensionInfo]) -> bool:
        """Whether a hold nobody wants may be given back now (its last stage, of a staged hold): an unstaged or
        orphan hold at once; a staged one once what it gave back last runs here and no other pod that has not
        failed holds more stages. A staged hold that waits says so, with its level."""
        hold = ledger.holds[uid]
        suspension = by_uid.get(uid)
        if not hold.stages or suspension is None:
            return True
        level = self._level(uid)
        if level == len(hold.stages) and may_give_back(level, self._other_levels(uid, suspension.name)):
            return True
        previous = self.reporter.last(suspension)
        if previous is None or previous.mode is not Mode.RESUME or previous.stage != level:
            of = suspension.spec.stage_count if suspension.spec is not None else level
            self._report(
                suspension,
                pod,
                PodState.RESUMING,
                f"{'stage 1' if level == 1 else f'stages 1-{level}'} of {of} held; stage {level} waits until every "
                f"pod has stage {level + 1} running",
                [],
            )
        return False

    def _other_levels(self, uid: str, suspension: str) -> list[int]:
        """The other pods' levels: their outcomes, and for a running pod with none yet, what its ledger holds."""
        namespace = self.ledger.namespace
        held = {
            p.name: taken for p in self.runtime.pods_of(namespace) if p.running and (taken := p.ledger.stages_of(uid))
        }
        return self.runtime.board.resuming_levels(namespace, suspension, self.ledger.name, held)

    def _level(self, uid: str) -> int:
        """The pod's level for a staged suspension while resuming: the stages it holds here, and one more while
        what it gave back last is not seen running yet."""
        return resume_level(self.ledger.or_empty(), uid, starting=self.starting_for(uid))

    def _report(
        self,
        suspension: SuspensionInfo,
        pod: PodInfo,
        state: PodState,
        message: str,
        processes: list[ProcessStatus],
        level: int | None = None,
    ) -> None:
        """An outcome of resuming; of a staged suspension, with the pod's level."""
        if suspension.staged and level is None:
            level = self._level(suspension.uid)
        self.reporter.report(
            suspension,
            pod,
            state,
            Mode.RESUME,
            message,
            processes=processes,
            stage=level if suspension.staged else None,
        )

    def starting_for(self, uid: str) -> bool:
        """Whether processes started for the suspension are being watched until they run."""
        return any(uid in s.suspensions for s in self.starting)

    def forget(self) -> None:
        """The pod is gone (or replaced): nothing it started is watched any more, and a new pod of its name gets
        its first try at once (the old pod's failures are not its own)."""
        self.starting.clear()
        self.release_failures = 0
        self.release_checked = 0.0
        self.resume_checks.clear()
