"""The only writer of one pod's hold ledger: reads it from the pod index, writes it with optimistic concurrency
bound to the pod's uid, restores it when it goes missing while it holds something, and knows, for a deletion,
whether the pod may hold something for a suspension. What is written is decided by the pure transitions in
processcontrol/ledger.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Protocol

from processcontrol.api import SUSPENDED_LABEL
from processcontrol.api.reasons import FailureReason, Reason
from processcontrol.exceptions import ApiError, Conflict, LedgerError, LedgerTooNew, NotFound, PodFailure
from processcontrol.ledger import (
    HOLDS_ANNOTATION,
    Hold,
    Ledger,
    dump_ledger,
    ledger_patch,
    next_seq,
    parse_ledger,
    split_key,
)
from processcontrol.reconcile.pods import TransitionFailed, names
from processcontrol.reconcile.reporting import Reporter
from processcontrol.reconcile.runtime import Runtime, SuspensionInfo
from processcontrol.targets import PodInfo


class HoldFailed(Protocol):
    """Where a failure that keeps a suspension's hold from being taken or kept is recorded."""

    def __call__(self, suspension: SuspensionInfo, pod: PodInfo, failure: PodFailure, lasting: bool = False) -> None:
        """Record it; `lasting`: shown at once, retrying cannot help soon."""


def _version(text: str) -> int:
    return int(text) if text.isdigit() else -1


class LedgerWriter:
    """The pod's ledger as last read or written, the pod version it came with, and the pod it belongs to."""

    def __init__(self, runtime: Runtime, namespace: str, name: str, reporter: Reporter, failed: HoldFailed) -> None:
        self.runtime = runtime
        self.namespace = namespace
        self.name = name
        self.reporter = reporter
        self.failed = failed
        self.known: Ledger | None = None
        self.resource_version = ""
        self.pod_uid = ""
        # Our own last write to this pod: a ledger that goes missing while it holds something is restored from it.
        self.written: Ledger | None = None
        # Suspensions on whose behalf an exec or ledger write is under way: until it ends, the pod may hold
        # something for them that the ledger does not show yet, so their deletion must wait.
        self._acting: set[str] = set()
        self.too_new_warned = False
        # Monotonic: an exec whose go-ahead was written ended with no report; until then it may still send, so
        # nothing else is sent into the pod (a START must not land before a late STOP).
        self.quiet_until = 0.0

    def in_doubt(self, failure: TransitionFailed) -> None:
        """An exec failed: if its go-ahead went out, it may still act until its window and send grace end."""
        self.quiet_until = max(self.quiet_until, failure.quiet_after)

    def belongs_to(self, pod: PodInfo) -> bool:
        """Whether what is known here is of this pod (or of none yet), not of one of its name that went."""
        return not self.pod_uid or pod.uid == self.pod_uid

    def bind(self, pod: PodInfo) -> None:
        """This step works on this pod."""
        self.pod_uid = pod.uid

    def same_pod(self, pod: PodInfo) -> bool:
        """Whether the pod of that name is still the one this step began with (not re-created meanwhile)."""
        current = self.runtime.pod(self.namespace, self.name)
        return current is not None and current.uid == pod.uid == self.pod_uid

    def holds_for(self, pod: PodInfo, uid: str) -> bool | None:
        """Whether this pod holds something for the suspension, as its writer knows (None: it does not know, or
        knows of another pod of that name)."""
        if self.pod_uid != pod.uid:
            return None
        if uid in self._acting:
            return True
        if self.known is None:
            return None
        return uid in self.known.holds

    @contextlib.contextmanager
    def acting_for(self, uids: Iterable[str]) -> Iterator[None]:
        """An exec or ledger write on behalf of these suspensions is under way."""
        acting = set(uids)
        self._acting.update(acting)
        try:
            yield
        finally:
            self._acting.difference_update(acting)

    def or_empty(self) -> Ledger:
        """The ledger as last read or written; empty when unknown."""
        return self.known if self.known is not None else Ledger()

    @property
    def holds_nothing(self) -> bool:
        """Nothing held here, as last known."""
        return self.known is None or self.known.empty

    def hold(self, uid: str) -> Hold | None:
        """The suspension's hold here, as last known."""
        return self.known.holds.get(uid) if self.known is not None else None

    def held_by(self, uid: str) -> list[tuple[str, str]]:
        """The (job, process) pairs this suspension holds here, by the ledger as last read or written."""
        return self.known.held_by(uid) if self.known is not None else []

    def skipped(self, uid: str) -> set[str]:
        """The processes (job/process) the suspension's hold here leaves running."""
        hold = self.hold(uid)
        return set(hold.skipped) if hold is not None else set()

    @property
    def seq(self) -> int:
        """The seq of the last write: what a go-ahead names."""
        return self.known.seq if self.known is not None else 0

    async def read(self, pod: PodInfo) -> Ledger | None:
        """Our last write, unless the index has a newer pod (someone else changed it since). A ledger that went
        missing while our last write held something is written back (None: it was, or the pod was just replaced;
        look again)."""
        if self.known is not None and _version(pod.resource_version) <= _version(self.resource_version):
            return self.known
        # The index keeps only a summary of the ledger (who holds): the ledger itself is read from the pod.
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
        self._newer_term(read)
        self.known = read
        self.resource_version = version
        lost = self.written
        if not read.empty or lost is None or lost.empty:
            return read
        # Removed by hand (or lost) while this operator holds processes here: what it knows beats an absent
        # ledger, or a release would take its own STOPs for stops by hand and leave the processes stopped.
        if await self.write(pod, lambda current: next_seq(lost) if current.empty else current):
            self.reporter.event_on_pod(
                pod,
                "Warning",
                Reason.LEDGER_RESTORED,
                f"the hold ledger ({HOLDS_ANNOTATION}) was removed while it held "
                f"{names([split_key(key) for key in sorted(lost.processes)]) or 'processes'}; written back",
            )
        return None

    async def write(self, pod: PodInfo, change: Callable[[Ledger], Ledger], *, urgent: bool = False) -> bool:
        """Apply `change` to the pod's ledger and write it with optimistic concurrency, bound to the pod's uid;
        on a conflict read the pod again and re-apply, unless it is another pod of that name now. False (and the
        step ends) when it could not be written: nothing is done unrecorded. Each write carries this leader's
        epoch; one over a ledger of a newer epoch is never made (this replica is stale and stops), nor any while
        its term does not hold. `urgent`: an exec waits for this write to send its go-ahead (its own API pool)."""
        leader = self.runtime.leader
        if not leader.valid():
            return False
        if self.known is None:
            # After a failed write nothing is assumed: the pod as it is now is the base of the next one.
            try:
                fresh = await self.runtime.kube.get_pod(self.namespace, self.name, urgent=urgent)
                metadata = fresh.get("metadata") or {}
                if metadata.get("uid") != pod.uid:
                    raise NotFound(f"pod {self.namespace}/{self.name} was re-created")
                self.known = parse_ledger(metadata.get("annotations"))
            except (ApiError, LedgerError) as error:
                self._trouble(pod, error)
                return False
            self.resource_version = str(metadata.get("resourceVersion") or "")
        current = self.known
        version = self.resource_version or None
        for _ in range(5):
            if self._newer_term(current):
                return False
            new = change(current)
            if not new.empty and new.epoch != leader.epoch:
                new = new.model_copy(update={"epoch": leader.epoch})
            if dump_ledger(new) == dump_ledger(current) and version is not None:
                self.known = new
                self.resource_version = version  # after a conflict: the version just read, not the stale one
                return True
            try:
                written = await self.runtime.kube.patch_pod_metadata(
                    self.namespace, self.name, ledger_patch(new, SUSPENDED_LABEL), version, uid=pod.uid, urgent=urgent
                )
            except Conflict:
                try:
                    fresh = await self.runtime.kube.get_pod(self.namespace, self.name, urgent=urgent)
                    metadata = fresh.get("metadata") or {}
                    if metadata.get("uid") != pod.uid:
                        raise NotFound(f"pod {self.namespace}/{self.name} was re-created")
                    current = parse_ledger(metadata.get("annotations"))
                except (ApiError, LedgerError) as error:
                    self._trouble(pod, error)
                    return False
                version = str(metadata.get("resourceVersion") or "") or None
                continue
            except ApiError as error:
                self._trouble(pod, error)
                return False
            self.known = self.written = new
            self.resource_version = str((written.get("metadata") or {}).get("resourceVersion") or "")
            self.runtime.watch_lag.wrote(self.namespace, self.name, self.resource_version)
            return True
        self._trouble(pod, Conflict("the pod kept changing"))
        return False

    def _newer_term(self, ledger: Ledger) -> bool:
        """A ledger written by a newer leader: this replica is stale (it stops acting at once)."""
        leader = self.runtime.leader
        if ledger.epoch <= leader.epoch:
            return False
        leader.fenced(ledger.epoch, f"the hold ledger of pod {self.namespace}/{self.name}")
        return True

    def _trouble(self, pod: PodInfo, error: Exception) -> None:
        self.known = None  # read it again from the pod next time
        for suspension in self.runtime.suspensions_of(self.namespace):
            if suspension.targets(pod) and suspension.holding(datetime.now(UTC)):
                self.failed(suspension, pod, PodFailure(FailureReason.LEDGER_WRITE_FAILED, f"hold ledger: {error}"))

    def unreadable(self, pod: PodInfo, targeting: list[SuspensionInfo], error: LedgerError) -> None:
        """Nothing is sent into a pod whose ledger cannot be read: acting on a guess could start what someone
        else stopped or forget what we stopped. Its targets show why."""
        reason = FailureReason.LEDGER_TOO_NEW if isinstance(error, LedgerTooNew) else FailureReason.LEDGER_UNREADABLE
        if isinstance(error, LedgerTooNew) and not self.too_new_warned:
            self.too_new_warned = True
            self.reporter.event_on_pod(pod, "Warning", reason, str(error))
        for suspension in targeting:
            self.failed(suspension, pod, PodFailure(reason, str(error)), lasting=True)

    def forget(self) -> None:
        """The pod is gone (or replaced): nothing is known of the next one."""
        self.known = None
        self.written = None
        self.resource_version = ""
        self.pod_uid = ""
        self.too_new_warned = False
        # quiet_until stays: an exec in doubt went by the pod's name and may act in the new pod of that name.
