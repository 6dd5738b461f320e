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
waits behind a slow verification and a slow pod delays only itself.

This module is the loop and the order; each concern is a part with its own memory: giving_back.py (1 to 3),
holding.py (4), restarts.py (container restarts and their loops), ledger_writer.py (the pod's ledger, its only
writer) and reporting.py (outcomes, on the runtime's board per suspension, where the status daemons read them, and
events).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from processcontrol.api.reasons import FailureReason
from processcontrol.bounded import describe, frames
from processcontrol.exceptions import LedgerError, PodFailure
from processcontrol.ledger import to_start
from processcontrol.reconcile.giving_back import GivingBack
from processcontrol.reconcile.holding import Holding
from processcontrol.reconcile.ledger_writer import LedgerWriter
from processcontrol.reconcile.reporting import Reporter
from processcontrol.reconcile.restarts import RestartWatch
from processcontrol.reconcile.runtime import Runtime, SuspensionInfo
from processcontrol.targets import PodInfo

logger = logging.getLogger(__name__)

STOP_RETRY_S = 1.0  # how often a worker that runs on after its cancellation is cancelled again


class PodWorker:
    """Brings one pod in line with the suspensions that want it, in one asyncio task."""

    def __init__(self, runtime: Runtime, namespace: str, name: str, ended: Callable[[PodWorker], None]) -> None:
        self.runtime = runtime
        self.namespace = namespace
        self.name = name
        self.settings = runtime.settings
        # One part per concern, each with its own memory; the lower ones are handed to those that use them.
        self.reporter = Reporter(runtime.board, namespace, name)
        self.ledger = LedgerWriter(runtime, namespace, name, self.reporter, self._hold_failed)
        self.restarts = RestartWatch(
            namespace,
            self.settings.restart_loop_window_s,
            self.settings.restart_loop_restarts,
            runtime.kube,
            self.reporter,
        )
        self._wake = asyncio.Event()
        self.holding = Holding(runtime, namespace, name, self.ledger, self.reporter, self.restarts, self._wake)
        self.giving_back = GivingBack(runtime, self.ledger, self.reporter)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._ended = ended  # told in the loop's last moment: an event after it starts a new worker

    # Life ---------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Run the worker's loop."""
        # In a kopf handler's context wherever it is started from (a takeover starts workers from the election
        # task), so that its events can be posted.
        self._task = asyncio.create_task(
            self._run(), name=f"pod {self.namespace}/{self.name}", context=self.runtime.handler_context
        )

    def wake(self) -> None:
        """Look again now."""
        self._wake.set()

    async def stop(self) -> None:
        """End the loop (operator shutdown) and wait for it. Cancelled again each second it runs on: a cancellation
        can be lost in code that is not ours (Python 3.11's wait_for drops one that comes as what it waits for
        ends), and the flag ends the loop at its next turn even then."""
        self._stopping = True
        self._wake.set()
        task = self._task
        if task is None:
            return
        while not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=STOP_RETRY_S)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            task.result()

    async def _run(self) -> None:
        try:
            while not self._stopping:
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
            self._ended(self)

    def _step_failed(self, error: Exception) -> None:
        pod = self.runtime.pod(self.namespace, self.name)
        if pod is None:
            return
        failure = PodFailure(
            FailureReason.POD_FAILED, f"the operator failed here, trying again: {describe(error, 300)}"
        )
        try:
            now = datetime.now(UTC)
            for suspension in self.runtime.suspensions_of(self.namespace):
                if suspension.targets(pod) and suspension.holding(now):
                    self.holding.fail(suspension, pod, failure)
        except Exception as reporting:  # the catch-all must not be what ends the worker
            logger.error(f"pod {self.namespace}/{self.name}: could not report the failure: {describe(reporting)}")

    def _idle(self) -> bool:
        """Nothing held, nothing starting, no suspension wants this pod: the worker may go (a new one comes with
        the next event that concerns the pod)."""
        return self.ledger.holds_nothing and not self.giving_back.busy and not self.reporter.reported

    # One step -------------------------------------------------------------------------------------------------

    async def step(self) -> float | None:
        """Do the next thing the pod needs; return seconds until the next step (None: on events only)."""
        pod = self.runtime.pod(self.namespace, self.name)
        if pod is None or not self.ledger.belongs_to(pod):
            self._forget()
            if pod is None:
                return None
        assert pod is not None
        self.ledger.bind(pod)
        if pod.terminating:
            # A pod being deleted is left alone (no START into a database mid-restore as its pod goes): its holds
            # go with it.
            self.reporter.unpublish_all()
            return None
        now = datetime.now(UTC)
        suspensions = list(self.runtime.suspensions_of(self.namespace))
        by_uid = {s.uid: s for s in suspensions}
        targeting = [s for s in suspensions if s.targets(pod)]
        wanted = {s.uid: s for s in targeting if s.holding(now)}
        try:
            ledger = await self.ledger.read(pod)
        except LedgerError as error:
            self.ledger.unreadable(pod, targeting, error)
            return self.settings.failure_backoff_s
        if ledger is None:
            return 0.0  # restored: look again
        if self.holding.replaced:
            await self.holding.record_replaced(pod)
            return 0.0

        quiet = self.ledger.quiet_until - time.monotonic()
        if quiet > 0:
            return quiet
        waits: list[float] = []
        self.restarts.track(pod, {uid: s.name for uid, s in wanted.items()}, ledger)
        loop_wait = await self.restarts.check_loops(pod, wanted, ledger, self.holding.publish)
        if loop_wait is not None:
            waits.append(loop_wait)
        monotonic = time.monotonic()
        # A hold's filters (jobs, processes, container) never change: the CRD makes them immutable.
        leaving = [uid for uid, hold in ledger.holds.items() if uid not in wanted and not hold.releasing]
        # A staged hold goes one stage at a time, each when its gate opens (stages.py); meanwhile it waits for a
        # wake-up from the board.
        leaving = [uid for uid in leaving if self.giving_back.stage_ready(pod, uid, ledger, by_uid)]
        pending = to_start(ledger)
        if leaving or pending:
            due = self.giving_back.release_wait(monotonic)
            if due <= 0:
                if leaving:
                    released = await self.giving_back.let_go(pod, ledger, leaving, wanted, by_uid, now)
                    # A staged hold that gave back a stage is not where its progress says any more.
                    self.holding.forget_holds([uid for uid in leaving if ledger.holds[uid].stages])
                else:
                    released = await self.giving_back.give_back(pod, ledger, pending, by_uid)
                self.holding.forget_holds(released)
                return 0.0
            waits.append(due)
        for starting in list(self.giving_back.starting):
            due = self.giving_back.start_wait(starting, monotonic)
            if due <= 0:
                await self.giving_back.watch_start(pod, starting, by_uid)
                return 0.0
            waits.append(due)

        for suspension in sorted(wanted.values(), key=lambda s: s.name):
            self.holding.seed_from_ledger(suspension, pod, ledger)
            due = self.holding.due(suspension, pod, ledger, monotonic)
            if due <= 0:
                await self.holding.hold(suspension, pod)
                return 0.0
            waits.append(due)
            self.holding.publish(suspension)

        for suspension in targeting:
            uid = suspension.uid
            # A suspension being deleted that holds nothing here is owed no look: kopf has stopped its status
            # daemon, so a look after a restart or a takeover would be an exec for nobody (one per pod).
            if (
                uid in wanted
                or suspension.deleting
                or uid in ledger.holds
                or self.giving_back.starting_for(uid)
                or self.giving_back.retag_resumed(suspension)
            ):
                continue
            due = self.giving_back.resume_wait(uid, monotonic)
            if due <= 0:
                await self.giving_back.observe_resumed(suspension, pod)
                return 0.0
            waits.append(due)
        for uid in list(self.reporter.reported):
            gone = uid not in by_uid or not by_uid[uid].targets(pod)
            if gone and uid not in ledger.holds and not self.giving_back.starting_for(uid):
                self.reporter.unpublish(uid)
        return min(waits) if waits else None

    def _forget(self) -> None:
        """The pod is gone (or replaced): it holds nothing any more."""
        self.reporter.unpublish_all()
        self.holding.forget()
        self.giving_back.forget()
        self.restarts.forget()
        self.ledger.forget()

    def _hold_failed(
        self, suspension: SuspensionInfo, pod: PodInfo, failure: PodFailure, lasting: bool = False
    ) -> None:
        """The pod's ledger could not be read or written: the holds it concerns show it (and are retried)."""
        self.holding.fail(suspension, pod, failure, lasting)
