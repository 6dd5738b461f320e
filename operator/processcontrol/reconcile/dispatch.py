"""Which pod workers an event concerns: one worker per pod, started by the first event that concerns the pod and
gone when it has nothing to do. The handlers and the status daemons start and wake workers only through here."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from processcontrol.reconcile.runtime import Runtime, SuspensionInfo
from processcontrol.reconcile.worker import PodWorker

PodKey = tuple[str, str]  # (namespace, pod name)


@dataclass
class Dispatch:
    """The pod workers, and what of each suspension they act on as last seen."""

    runtime: Runtime
    workers: dict[PodKey, PodWorker] = field(default_factory=dict)
    # What of each suspension the pods act on, as last seen: a change wakes its pods, a status write does not.
    seen: dict[str, tuple[object, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.runtime.board.stage_moved = self.stage_moved

    def ensure_worker(self, namespace: str, pod: str, wake: bool = True) -> None:
        """Start the pod's worker if it has none; make it look again (a new worker always does). A standby starts
        none: it acts on nothing until it leads, and then looks at every pod (`take_over`)."""
        if not self.runtime.leader.is_leading:
            return
        worker = self.workers.get((namespace, pod))
        if worker is None:
            worker = self.workers[(namespace, pod)] = PodWorker(self.runtime, namespace, pod, ended=self._ended)
            worker.start()
        elif wake:
            worker.wake()

    def _ended(self, worker: PodWorker) -> None:
        if self.workers.get((worker.namespace, worker.name)) is worker:
            del self.workers[(worker.namespace, worker.name)]

    def suspension_changed(self, suspension: SuspensionInfo, namespace: str) -> None:
        """Wake its pods if what they act on changed (spec, deletion, expiry); our own status writes come back as
        events too, and must not wake every pod of a large group each time."""
        essence = (suspension.generation, suspension.deleting, suspension.expires_at, suspension.spec)
        if self.seen.get(suspension.uid) != essence:
            self.seen[suspension.uid] = essence
            self.wake_pods_of(suspension, namespace)

    def wake_pods_of(self, suspension: SuspensionInfo, namespace: str) -> None:
        """Wake the workers of every pod the suspension targets or holds something in."""
        for pod in self.runtime.pods_of(namespace):
            # A pod whose ledger cannot be read is woken too: its worker says so to every suspension it concerns.
            if suspension.targets(pod) or not pod.ledger.readable or suspension.uid in pod.holders:
                self.ensure_worker(namespace, pod.name)

    def stage_moved(self, namespace: str, name: str) -> None:
        """A pod's level for a staged suspension changed: its other pods may take or give back a stage now."""
        for suspension in self.runtime.suspensions_of(namespace):
            if suspension.name == name:
                self.wake_pods_of(suspension, namespace)

    def take_over(self) -> None:
        """This replica leads now: every pod that holds something or that a suspension targets gets its worker
        (the indexes are warm; the events that concerned these pods came while it stood by)."""
        for namespace in list(self.runtime.namespaces()):
            suspensions = list(self.runtime.suspensions_of(namespace))
            for pod in list(self.runtime.pods_of(namespace)):
                if pod.ledger.present or any(s.targets(pod) for s in suspensions):
                    self.ensure_worker(namespace, pod.name)

    def forget(self, uid: str) -> None:
        """The suspension is gone: a new one of its uid is news (it never is, uids are unique, but memory goes)."""
        self.seen.pop(uid, None)

    async def stop_workers(self) -> None:
        """Cancel every pod worker (operator shutdown)."""
        await asyncio.gather(*(worker.stop() for worker in list(self.workers.values())))
