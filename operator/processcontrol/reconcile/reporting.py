"""What a pod's worker tells of its pod: its outcome for each suspension, on the outcome board the status daemons
read, and events, on a suspension or on the pod. Also when a failure is shown as one (`failure_shown`)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import kopf

from processcontrol.api import API_VERSION, KIND, PodState, ProcessStatus
from processcontrol.bounded import bounded
from processcontrol.exceptions import PodFailure
from processcontrol.reconcile.outcomes import OutcomeBoard
from processcontrol.reconcile.plan import Mode, PodRecord
from processcontrol.reconcile.pods import SHOWN_AT_ONCE
from processcontrol.reconcile.runtime import SuspensionInfo
from processcontrol.targets import PodInfo

# The pod worker's log, whichever of its parts writes the line.
logger = logging.getLogger("processcontrol.reconcile.worker")

# A pod is shown Failed only after this many failures in a row (or at once: pods.SHOWN_AT_ONCE).
FAILURES_SHOWN = 3
# What of a pod's message a log line carries (the status keeps 1,000 characters, events too).
LOG_MESSAGE_LIMIT = 1000


def failure_shown(failures: int, reason: str) -> bool:
    """Whether a failure this many times in a row, for this reason, is shown as Failed (not as in progress)."""
    return failures >= FAILURES_SHOWN or reason in SHOWN_AT_ONCE


class Reporter:
    """The pod's outcomes and events; remembers which suspensions it has published an outcome for."""

    def __init__(self, board: OutcomeBoard, namespace: str, name: str) -> None:
        self.board = board
        self.namespace = namespace
        self.name = name
        self.reported: dict[str, str] = {}  # suspension uid -> name, of every outcome published

    def report(
        self,
        suspension: SuspensionInfo,
        pod: PodInfo,
        state: PodState,
        mode: Mode,
        message: str,
        reason: str = "",
        processes: list[ProcessStatus] | None = None,
        stage: int | None = None,
    ) -> None:
        """Publish where the pod stands for the suspension, as of now (`stage`: its level, stages.py)."""
        self.publish(
            suspension,
            PodRecord(
                uid=pod.uid,
                state=state,
                mode=mode,
                generation=suspension.generation,
                processes=processes or [],
                message=message,
                reason=reason,
                transition_time=datetime.now(UTC),
                targeted=suspension.targets(pod),
                stage=stage,
            ),
        )

    def resume_failed(self, suspension: SuspensionInfo, pod: PodInfo, failure: PodFailure) -> None:
        """Giving back failed (it is retried): shown at once."""
        self.report(suspension, pod, PodState.FAILED, Mode.RESUME, failure.message, reason=failure.reason)

    def publish(self, suspension: SuspensionInfo, record: PodRecord) -> None:
        """Put the outcome on the board, unless it is there already."""
        previous = self.last(suspension)
        if previous is not None and previous == record:
            return
        if previous is None or (previous.state, previous.message) != (record.state, record.message):
            logger.info(
                f"pod {self.namespace}/{self.name} for {suspension.name}: {record.state.value}: "
                + bounded(record.message, LOG_MESSAGE_LIMIT)
            )
        self.reported[suspension.uid] = suspension.name
        self.board.report(self.namespace, suspension.name, self.name, record)

    def unpublish(self, uid: str) -> None:
        """The pod is no longer the suspension's business: its outcome goes."""
        name = self.reported.pop(uid, None)
        if name is not None:
            self.board.report(self.namespace, name, self.name, None)

    def unpublish_all(self) -> None:
        """The pod is nobody's business any more (gone, replaced or being deleted)."""
        for uid in list(self.reported):
            self.unpublish(uid)

    def last(self, suspension: SuspensionInfo) -> PodRecord | None:
        """The pod's outcome for the suspension on the board, whoever published it."""
        return self.board.record(self.namespace, suspension.name, self.name)

    def retag(self, suspension: SuspensionInfo) -> None:
        """The pod's outcome answers the suspension's current generation too."""
        self.board.retag(self.namespace, suspension.name, self.name, suspension.generation)

    async def wait_shown(self, suspension: SuspensionInfo, timeout_s: float) -> None:
        """Wait (up to timeout_s) until a status showing the pod's outcome for the suspension is written."""
        record = self.last(suspension)
        if record is not None:
            await self.board.wait_shown(self.namespace, suspension.name, self.name, record, timeout_s)

    def event(self, suspension: SuspensionInfo, type_: str, reason: str, message: str) -> None:
        """An event on the suspension."""
        body = kopf.Body(
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {"name": suspension.name, "namespace": self.namespace, "uid": suspension.uid},
            }
        )
        kopf.event(body, type=type_, reason=reason, message=message[:1000])

    def event_on_pod(self, pod: PodInfo, type_: str, reason: str, message: str) -> None:
        """An event on the pod."""
        body = kopf.Body(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod.name, "namespace": pod.namespace, "uid": pod.uid},
            },
        )
        kopf.event(body, type=type_, reason=reason, message=message[:1000])
