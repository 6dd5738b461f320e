"""Taking and keeping a pod's holds for the suspensions that want it: one exec looks, the ledger records the hold
(and each process's state before it), then the exec's go-ahead STOPs exactly the processes recorded; until they
are stopped it polls with looks (no go-ahead), and now and then it re-checks a settled hold. The probes policy is
applied at the first hold (Refuse, Warn with its announcement before the first STOP, Skip), and a STOP that may
have landed in a pod re-created under the same name is recorded in the new one. A staged suspension's hold grows
stage by stage, one STOP exec per stage, as its gate (stages.py) lets it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from processcontrol.api import SUSPENDED_LABEL, PodState, ProcessState, ProcessStatus
from processcontrol.api.models import ProbePolicy
from processcontrol.api.reasons import FailureReason, Reason
from processcontrol.api.timestamps import format_time_up, parse_time
from processcontrol.exceptions import PodFailure
from processcontrol.ledger import Hold, Ledger, Observed, mark_verified, next_seq, process_key, split_key, take_hold
from processcontrol.podexec.script import Action, ScriptReport, SocketReport
from processcontrol.reconcile.backoff import poll_delay, retry_delay
from processcontrol.reconcile.ledger_writer import LedgerWriter
from processcontrol.reconcile.plan import Mode, PodRecord, reverify_spread
from processcontrol.reconcile.pods import (
    GoAhead,
    TransitionFailed,
    count,
    is_stale,
    look,
    names,
    observed,
    process_statuses,
    rejected_failure,
    statuses,
    transition,
)
from processcontrol.reconcile.reporting import FAILURES_SHOWN, Reporter, failure_shown
from processcontrol.reconcile.restarts import RestartWatch
from processcontrol.reconcile.runtime import Runtime, SuspensionInfo
from processcontrol.reconcile.stages import hold_gate
from processcontrol.targets import PodInfo

T = TypeVar("T")


def _now() -> datetime:
    return datetime.now(UTC)


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
    # Of a staged suspension (stages.py): the leading stages verified stopped here (the pod's level), the stages
    # this run has sent STOP to, and whether it waits, all sent verified, for the other pods' levels.
    level: int = 0
    sent: int = 0
    gated: bool = False

    @property
    def at_rest(self) -> bool:
        """Everything it asked for is verified: only a re-check (or an opened gate) is due."""
        return self.state is PodState.SUSPENDED or self.gated


@dataclass(frozen=True)
class Replaced:
    """A STOP was sent into a pod that was replaced under the same name meanwhile: it may have landed in the new
    one (its exec could not tell them apart), so the new pod records it as a hold, each process as running
    before, and it is started again when the hold goes."""

    uid: str
    hold: Hold
    pairs: tuple[tuple[str, str], ...]


class Holding:
    """A pod's holds: how far each suspension's has come, its probe conflicts, and STOPs sent into a pod that was
    re-created meanwhile."""

    def __init__(
        self,
        runtime: Runtime,
        namespace: str,
        name: str,
        ledger: LedgerWriter,
        reporter: Reporter,
        restarts: RestartWatch,
        woken: asyncio.Event,
    ) -> None:
        self.runtime = runtime
        self.woken = woken  # the worker's: set when something concerning the pod happened since its step began
        self.settings = runtime.settings
        self.namespace = namespace
        self.name = name
        self.ledger = ledger
        self.reporter = reporter
        self.restarts = restarts
        self.progress: dict[str, HoldProgress] = {}
        # probes: Refuse: uid -> (its generation, the pod's restarts, the failure, the conflicting probes).
        self.refused: dict[str, tuple[int | None, int, PodFailure, tuple[str, ...]]] = {}
        # probes: Warn: uid -> the generation whose probe conflicts were announced before its first STOP here.
        self.announced: dict[str, int | None] = {}
        self.conflicts_due: dict[str, tuple[str, ...]] = {}  # found by a look, to announce before the STOP
        self.replaced: list[Replaced] = []

    def seed_from_ledger(self, suspension: SuspensionInfo, pod: PodInfo, ledger: Ledger) -> None:
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
            processes=statuses(held, ProcessState.STOPPED),
            message=f"{count(len(held))} stopped",
            # Verified is written only once every stage is: so every stage it has is verified.
            level=len(hold.stages),
            sent=len(hold.stages),
        )

    def due(self, suspension: SuspensionInfo, pod: PodInfo, ledger: Ledger, monotonic: float) -> float:
        """Seconds until the hold needs its next exec (0 or less: now)."""
        progress = self.progress.get(suspension.uid)
        if progress is None or progress.pod_uid != pod.uid or progress.restarts != pod.restarts or progress.resend:
            return 0.0
        if progress.failures:
            # Before the hold is taken too: a pod without sockets is retried with backoff, not in a tight loop;
            # a new spec (probes: Refuse changed, say) is tried at once.
            if progress.generation != suspension.generation:
                return 0.0
            return progress.checked + retry_delay(self.settings, progress.failures) - monotonic
        if not ledger.in_force(suspension.uid):
            return 0.0
        if self._stage_opened(suspension, progress):
            return 0.0
        if progress.at_rest:
            interval = self.settings.reverify_interval_s * reverify_spread(pod.uid)
            return progress.checked + interval - monotonic
        return progress.checked + poll_delay(self.settings, progress.started, progress.checked) - monotonic

    async def hold(self, suspension: SuspensionInfo, pod: PodInfo) -> None:
        """Take, keep or verify one suspension's hold; failures are recorded, never raised."""
        with self.ledger.acting_for([suspension.uid]):
            try:
                previous = self.progress.get(suspension.uid)
                ledger = self.ledger.or_empty()
                settled = (
                    previous is not None
                    and previous.pod_uid == pod.uid
                    and previous.restarts == pod.restarts
                    and not previous.resend
                    and not previous.failures
                    and ledger.in_force(suspension.uid)
                    and not self._stage_opened(suspension, previous)
                )
                if settled:
                    assert previous is not None
                    await self._check(suspension, pod, previous)
                else:
                    await self._stop(suspension, pod, previous)
            except PodFailure as failure:
                self.fail(suspension, pod, failure)

    def _still_wanted(self, uid: str) -> bool:
        """Whether the suspension still wants this pod held: it may have changed during the last exec."""
        pod = self.runtime.pod(self.namespace, self.name)
        now = _now()
        return pod is not None and any(
            s.uid == uid and s.targets(pod) and s.holding(now) for s in self.runtime.suspensions_of(self.namespace)
        )

    async def _stop(self, suspension: SuspensionInfo, pod: PodInfo, previous: HoldProgress | None) -> None:
        """One exec: look, write the hold (new sockets, each process's state before its first hold), then STOP the
        held processes that run, and report what the in-pod wait saw."""
        assert suspension.spec is not None
        spec = suspension.spec
        uid = suspension.uid
        container = suspension.hold_on(pod).container
        if container is None:
            raise PodFailure(FailureReason.NO_CONTAINER, f"pod has no container {spec.container!r}")
        refused = self.refused.get(uid)
        if refused is not None and refused[:2] == (suspension.generation, pod.restarts):
            raise refused[2]  # nothing changed since the pod was refused: no exec to find that out again
        monotonic = time.monotonic()
        fresh = previous is None or previous.pod_uid != pod.uid or previous.restarts != pod.restarts
        drift = previous is not None and (previous.drift or previous.state is PodState.SUSPENDED)
        # Of a staged suspension: the stage this exec stops (the first not verified here: stage 0 after a restart,
        # whatever the sentinels say, since they lag) and how many stages the gate lets the pod hold. The gate
        # counts this pod's level too, so it names one stage at most (stages.py).
        level = 0 if fresh or previous is None else previous.level
        allowed = self._gate(suspension, level)
        hold = suspension.hold_on(pod, allowed if suspension.staged else None)
        if fresh or previous is None or previous.state is not PodState.FAILED:
            # The STOP exec waits in the pod for up to in_pod_wait_s: say meanwhile what it waits for. A retry of
            # a failed pod keeps showing the failure until it succeeds (no Stalled flapping on every retry).
            held = self.ledger.held_by(uid)
            self._advance(
                suspension,
                pod,
                PodState.SUSPENDING,
                monotonic,
                statuses(held, ProcessState.STOPPING),
                f"waiting for {names(held) or 'the processes'} to stop",
                failures=previous.failures if previous is not None and not fresh else 0,
                drift=drift,
                level=level,
                sent=allowed,
            )
        since = format_time_up(_now())

        async def decide(seen: ScriptReport) -> GoAhead | None:
            if not self.ledger.same_pod(pod) or not self._still_wanted(uid):
                return None  # let go, or another pod now: nothing written, nothing sent
            seen = _targeted(suspension, seen)
            if not seen.sockets:
                raise PodFailure(
                    FailureReason.NO_SOCKETS, f"no containerrun sockets{_filters(spec.jobs, spec.processes)}"
                )
            current = self.ledger.or_empty()
            taken: Hold | None = hold
            if not current.in_force(uid):
                taken = self._first_hold(suspension, pod, hold, seen)
            if taken is None:
                return None  # its probe conflicts are announced first
            # Every look, not only the first: a hold that came by a hand-over never had a look of its own.
            live_now = [(s.job, s.process) for s in seen.sockets if not is_stale(s)]
            skipped = {*taken.skipped, *suspension.left_running(pod, live_now)}
            skipped |= set(current.holds[uid].skipped if uid in current.holds else ())
            taken = taken.model_copy(update={"skipped": tuple(sorted(skipped))})
            seen_now = [o for o in observed(seen.sockets) if process_key(o.job, o.process) not in skipped]
            # The ledger lost while processes were held (the label says so, no memory survived an operator
            # restart): what it stopped must not be taken for stopped by hand.
            lost = current.empty and pod.labels.get(SUSPENDED_LABEL) == "true"

            def hold_it(ledger: Ledger) -> Ledger:
                return next_seq(take_hold(ledger, uid, taken, seen_now, since=since, assume_running=lost))

            if not await self.ledger.write(pod, hold_it, urgent=True):
                return None
            self.conflicts_due.pop(uid, None)  # the ledger has the hold now: its probe view comes from there
            # Every held process with a containerrun, whatever its sentinel says: it lags (a containerrun just
            # restarted may not have written it yet), and containerrun ignores a STOP to what is stopped.
            live = {(s.job, s.process) for s in seen.sockets if not is_stale(s)}
            send = tuple(
                pair
                for pair in self.ledger.held_by(uid)
                if pair in live and (not suspension.staged or level <= (suspension.stage_of(*pair) or 0) < allowed)
            )
            return GoAhead(Action.STOP, self.ledger.seq, send) if send else None

        try:
            result = await transition(
                self.runtime.executor,
                pod,
                container,
                spec.jobs,
                spec.processes,
                decide,
                fence=self.runtime.leader,
                wait_s=self.settings.in_pod_wait_s,
                window_s=self.settings.go_ahead_window_s,
            )
        except TransitionFailed as failure:
            self.ledger.in_doubt(failure)
            if failure.sent is not None:
                self._note_replaced(pod, uid, hold, failure.sent)
            raise
        if result.sent is not None:
            self._note_replaced(pod, uid, hold, result.sent)
        conflicts = self.conflicts_due.get(uid)
        if conflicts is not None and self.announced.get(uid, -1) != suspension.generation:
            await self._announce_conflicts(suspension, pod, conflicts, monotonic)
            return
        if self.ledger.known is None or not self.ledger.known.in_force(uid) or not self.ledger.same_pod(pod):
            return  # let go while it looked, or the ledger could not be written: nothing was sent
        acted = {(s.job, s.process): s for s in (result.acted.sockets if result.acted is not None else [])}
        sockets = [acted.get((s.job, s.process), s) for s in result.look.sockets]
        self._settle_stop(suspension, pod, sockets, monotonic, drift, allowed)
        await self._verified_if_stopped(suspension, pod, sockets, monotonic, drift, allowed)
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
            self.reporter.event(
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
        container = suspension.hold_on(pod).container
        if container is None:
            raise PodFailure(FailureReason.NO_CONTAINER, f"pod has no container {suspension.spec.container!r}")
        held = self.ledger.held_by(suspension.uid)
        # By the filters, not the held pairs: a socket that appeared since (a process containerrun started) is
        # found too, and recorded and stopped by the next step.
        checking = look(
            self.runtime.executor,
            pod,
            container,
            suspension.spec.jobs,
            suspension.spec.processes,
            background=previous.at_rest,
        )
        if previous.at_rest:
            # A re-check is background work: it waits for an exec slot behind every other exec, and gives way to
            # whatever woke the worker meanwhile (a deletion, a restart): it sends nothing, so dropping it is
            # always safe, and that pod's release or new STOP never waits behind its own re-check.
            report = await _unless(self.woken, checking)
            if report is None:
                return  # still due: the next step does it, after what woke the worker
        else:
            report = await checking
        rejected = rejected_failure(report, f"{count(len(held))} held")
        if rejected is not None:
            raise rejected
        monotonic = time.monotonic()
        # Of a staged hold, only the stages this run has stopped (or found stopped) count: the later ones wait for
        # their gate.
        reach = max(previous.sent, previous.level)
        sockets = [s for s in _targeted(suspension, report).sockets if _in_reach(suspension, s, reach)]
        running = [s for s in sockets if s.running and not is_stale(s) and (s.job, s.process) in held]
        skipped = self.ledger.skipped(suspension.uid)
        appeared = [
            s
            for s in sockets
            if not is_stale(s) and (s.job, s.process) not in held and process_key(s.job, s.process) not in skipped
        ]
        if previous.at_rest:
            if running or appeared:
                # Started again (by hand, or a restart no event showed), or new sockets: stop them at once (of a
                # staged hold, from the first stage that runs again).
                previous.resend = True
                previous.checked = monotonic
                previous.level = min(previous.level, self._level(suspension, report.sockets))
                return
            previous.checked = monotonic
            return
        if running:
            self._settle_stop(suspension, pod, report.sockets, previous.started, previous.drift, previous.sent)
            return
        await self._verified_if_stopped(
            suspension, pod, report.sockets, previous.started, previous.drift, previous.sent
        )

    def _settle_stop(
        self,
        suspension: SuspensionInfo,
        pod: PodInfo,
        sockets: Sequence[SocketReport],
        started: float,
        drift: bool,
        sent: int,
    ) -> None:
        """Processes still running after a STOP: wait for them, up to the verification deadline."""
        held = self._asked(suspension, sent)
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
            level=self._level(suspension, sockets),
            sent=sent,
        )

    async def _verified_if_stopped(
        self,
        suspension: SuspensionInfo,
        pod: PodInfo,
        sockets: Sequence[SocketReport],
        started: float,
        drift: bool,
        sent: int,
    ) -> None:
        """Every held process is stopped: the hold is verified at this restart count, in the ledger and the status.
        Of a staged hold, every stage: until then it waits, what it sent verified, for its gate (stages.py)."""
        uid = suspension.uid
        asked = self._asked(suspension, sent)
        if any(s.running and not is_stale(s) for s in sockets if (s.job, s.process) in asked):
            return
        level = self._level(suspension, sockets)
        stages = suspension.spec.stage_count if suspension.spec is not None else 1
        if suspension.staged and level < stages:
            self._advance(
                suspension,
                pod,
                PodState.SUSPENDING,
                started,
                process_statuses(Mode.SUSPEND, [s for s in sockets if (s.job, s.process) in asked], True),
                f"{_stages(1, level)} of {stages} stopped; stage {level + 1} waits until every target pod has "
                f"stage {level} stopped"
                if level
                else f"stage 1 of {stages} waits",
                drift=drift,
                level=level,
                sent=sent,
                gated=True,
            )
            return
        held = set(self.ledger.held_by(uid))
        shown = [s for s in sockets if (s.job, s.process) in held]
        if any(s.running and not is_stale(s) for s in shown):
            return
        skipped = sorted(self.ledger.skipped(uid))
        if not await self.ledger.write(pod, lambda current: mark_verified(current, uid, pod.restarts)):
            return
        if not held and skipped:
            left = names([split_key(key) for key in skipped])
            message = f"nothing stopped: every targeted process runs in a probed container, left running: {left}"
            self._advance(suspension, pod, PodState.SUSPENDED, started, [], message, level=level, sent=sent)
            return
        stale = [(s.job, s.process) for s in shown if is_stale(s)]
        message = f"{count(len(shown))} stopped"
        if stale:
            message += f"; stale sockets (no containerrun): {names(stale)}"
        if skipped:
            message += f"; left running (probes: Skip): {names([split_key(k) for k in skipped])}"
        self._advance(
            suspension,
            pod,
            PodState.SUSPENDED,
            started,
            process_statuses(Mode.SUSPEND, shown, True),
            message,
            level=level,
            sent=sent,
        )
        if drift:
            self.reporter.event(
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
        level: int = 0,
        sent: int = 0,
        gated: bool = False,
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
            level=level,
            sent=sent,
            gated=gated,
        )
        self._set_progress(suspension, pod, progress)

    def _set_progress(self, suspension: SuspensionInfo, pod: PodInfo, progress: HoldProgress) -> None:
        previous = self.progress.get(suspension.uid)
        if previous is not None and previous.state is progress.state and previous.pod_uid == progress.pod_uid:
            progress.transition_time = previous.transition_time
        self.progress[suspension.uid] = progress
        self.publish(suspension)

    # Ordered stages (the gates are in stages.py) ---------------------------------------------------------------

    def _gate(self, suspension: SuspensionInfo, level: int) -> int:
        """How many stages the pod may hold now, at this level of its own (1 for an unstaged suspension)."""
        if suspension.spec is None or not suspension.staged:
            return 1
        others = [p.name for p in self.runtime.pods_of(self.namespace) if p.name != self.name and suspension.targets(p)]
        levels = self.runtime.board.suspending_levels(self.namespace, suspension.name, others)
        return hold_gate(level, levels, suspension.spec.stage_count)

    def _stage_opened(self, suspension: SuspensionInfo, progress: HoldProgress) -> bool:
        """A staged hold whose stages sent are verified here, and whose gate lets it stop the next one now."""
        if not suspension.staged or progress.failures or progress.level < progress.sent:
            return False
        return self._gate(suspension, progress.level) > progress.level

    def _level(self, suspension: SuspensionInfo, sockets: Sequence[SocketReport]) -> int:
        """The pod's level by this report: how many leading stages the hold has taken whose every live socket
        (but those probes: Skip leaves running) is held and not running."""
        uid = suspension.uid
        hold = self.ledger.hold(uid)
        taken = len(hold.stages) if hold is not None else 0
        held = set(self.ledger.held_by(uid))
        skipped = self.ledger.skipped(uid)
        open_stages = {
            suspension.stage_of(s.job, s.process)
            for s in sockets
            if not is_stale(s)
            and process_key(s.job, s.process) not in skipped
            and (s.running or (s.job, s.process) not in held)
        }
        return next((stage for stage in range(taken) if stage in open_stages), taken)

    def _asked(self, suspension: SuspensionInfo, sent: int) -> set[tuple[str, str]]:
        """The held processes this run has stopped: of a staged hold, those of the stages it sent STOP to."""
        held = self.ledger.held_by(suspension.uid)
        if not suspension.staged:
            return set(held)
        return {pair for pair in held if (suspension.stage_of(*pair) or 0) < sent}

    # A pod replaced under the same name ---------------------------------------------------------------------

    def _note_replaced(self, pod: PodInfo, uid: str, hold: Hold, sent: GoAhead) -> None:
        """After a STOP was sent: if the pod of that name is another one now, the STOP may have landed there."""
        current = self.runtime.pod(self.namespace, self.name)
        if sent.action is Action.STOP and current is not None and current.uid != pod.uid:
            self.replaced.append(Replaced(uid=uid, hold=hold, pairs=sent.pairs))

    async def record_replaced(self, pod: PodInfo) -> None:
        """Record in the new pod the holds whose STOP may have landed there: as running before, so that they are
        started again when the hold goes (which it does at once if the new pod is no target)."""
        replaced, self.replaced = self.replaced, []
        since = format_time_up(_now())

        def record(current: Ledger) -> Ledger:
            for entry in replaced:
                seen = [Observed(job, process, running=True) for job, process in entry.pairs]
                current = take_hold(current, entry.uid, entry.hold, seen, since=since)
            return current

        if await self.ledger.write(pod, record):
            self.reporter.event_on_pod(
                pod,
                "Warning",
                Reason.LEDGER_RESTORED,
                "the pod was re-created while a STOP was on its way; recorded "
                + names([pair for entry in replaced for pair in entry.pairs])
                + " as held (running before), so they are started again when the hold goes",
            )
        else:
            self.replaced = replaced + self.replaced

    # Probe conflicts -------------------------------------------------------------------------------------------

    async def _announce_conflicts(
        self, suspension: SuspensionInfo, pod: PodInfo, conflicts: tuple[str, ...], monotonic: float
    ) -> None:
        """probes: Warn: say which probes the suspension makes fail here, in an event and in the status, before the
        first STOP, which waits (up to probe_notice_timeout_s) until the status shows it."""
        listed = "; ".join(conflicts)
        self.reporter.event(
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
        await self.reporter.wait_shown(suspension, self.settings.probe_notice_timeout_s)

    # Outcomes ---------------------------------------------------------------------------------------------------

    def publish(self, suspension: SuspensionInfo) -> None:
        """Publish where the suspension's hold here stands, as far as it has come."""
        progress = self.progress.get(suspension.uid)
        if progress is None:
            return
        shown = progress.state
        if progress.state is PodState.FAILED and not failure_shown(progress.failures, progress.reason):
            shown = PodState.SUSPENDING
        conflicts, restarts = self._probe_view(suspension.uid)
        hold = self.ledger.hold(suspension.uid)
        self.reporter.publish(
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
                restart_loop=self.restarts.loop_message(suspension.uid),
                # A hold still being given back is the run before's: this run has not taken effect here yet.
                held_since=parse_time(hold.since) if hold is not None and hold.since and not hold.releasing else None,
                stage=progress.level if suspension.staged else None,
            ),
        )

    def _probe_view(self, uid: str) -> tuple[tuple[str, ...], int]:
        """The probes this suspension's hold here makes fail (or would: probes Skip and Refuse), and the restarts
        of its containers since it took hold. From the ledger, so it is the same after an operator restart."""
        pod = self.runtime.pod(self.namespace, self.name)
        if pod is None:
            return (), 0
        refused = self.refused.get(uid)
        hold = self.ledger.hold(uid)
        if hold is None:
            if refused is not None:
                return refused[3], 0
            return self.conflicts_due.get(uid, ()), 0
        pairs = [*self.ledger.held_by(uid), *(split_key(key) for key in hold.skipped)]
        conflicts = tuple(probe.describe() for probe in pod.probes.conflicts(pairs))
        restarts = sum(max(0, pod.probes.restarts_of(c) - base) for c, base in hold.restart_base.items())
        return conflicts, restarts

    def fail(self, suspension: SuspensionInfo, pod: PodInfo, failure: PodFailure, lasting: bool = False) -> None:
        """Record a failed step; it is retried after a backoff, and shown Failed once it lasts."""
        previous = self.progress.get(suspension.uid)
        monotonic = time.monotonic()
        same = previous is not None and previous.pod_uid == pod.uid
        failures = (previous.failures if previous is not None and same else 0) + 1
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
            level=previous.level if previous is not None and same else 0,
            sent=previous.sent if previous is not None and same else 0,
        )
        was_shown = (
            previous is not None
            and previous.state is PodState.FAILED
            and failure_shown(previous.failures, previous.reason)
        )
        self._set_progress(suspension, pod, progress)
        if failure_shown(failures, failure.reason) and not was_shown:
            self.reporter.event(suspension, "Warning", failure.reason, f"pod {pod.name}: {failure.message}")

    def forget_holds(self, uids: Iterable[str]) -> None:
        """These holds left the ledger: how far they had come is forgotten."""
        for uid in uids:
            self.progress.pop(uid, None)

    def forget(self) -> None:
        """The pod is gone (or replaced): nothing of its holds counts for the next one (but a STOP that may have
        landed in the next one is still recorded there)."""
        self.progress.clear()
        self.refused.clear()
        self.announced.clear()
        self.conflicts_due.clear()


async def _unless(woken: asyncio.Event, work: Coroutine[Any, Any, T]) -> T | None:
    """What `work` returns (or raises), unless `woken` is set first: then None, and the work is cancelled."""
    task = asyncio.ensure_future(work)
    waking = asyncio.ensure_future(woken.wait())
    try:
        done, _ = await asyncio.wait({task, waking}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waking.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return task.result() if task in done else None


def _filters(jobs: list[str], processes: list[str]) -> str:
    parts = [f"jobs={','.join(jobs)}" if jobs else "", f"processes={','.join(processes)}" if processes else ""]
    shown = " ".join(p for p in parts if p)
    return f" matching {shown}" if shown else ""


def _targeted(suspension: SuspensionInfo, report: ScriptReport) -> ScriptReport:
    """The report without the sockets a staged suspension's stages do not select (its look has no filter: the
    in-pod script takes one jobs/processes filter, not a list of them)."""
    if not suspension.staged:
        return report
    kept = [s for s in report.sockets if suspension.stage_of(s.job, s.process) is not None]
    return report if len(kept) == len(report.sockets) else report.model_copy(update={"sockets": kept})


def _in_reach(suspension: SuspensionInfo, socket: SocketReport, reach: int) -> bool:
    """Whether a socket is of the stages a staged hold has come to (every socket of an unstaged one)."""
    return not suspension.staged or (suspension.stage_of(socket.job, socket.process) or 0) < reach


def _stages(first: int, last: int) -> str:
    """`stage 2`, `stages 1-2` (numbered from 1)."""
    return f"stage {first}" if first == last else f"stages {first}-{last}"
