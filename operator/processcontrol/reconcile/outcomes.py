"""The pods' outcomes per suspension and what its status last showed, with one owner: the pod workers report
here, the status daemons read here and say what they wrote, a deletion forgets it all in one call."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from processcontrol.reconcile.plan import PodRecord
from processcontrol.reconcile.stages import resuming_levels, suspending_levels

SuspensionKey = tuple[str, str]  # (namespace, suspension name)


@dataclass
class OutcomeBoard:
    """Each pod's latest outcome per suspension, the outcomes each status write showed, and the wake-up events of
    the suspensions' status daemons. Read it through its methods; only tests look at the dictionaries."""

    # (namespace, suspension name) -> pod name -> the latest outcome there.
    outcomes: dict[SuspensionKey, dict[str, PodRecord]] = field(default_factory=dict)
    wakeups: dict[SuspensionKey, asyncio.Event] = field(default_factory=dict)
    # (namespace, suspension name) -> the outcomes its last status write showed, and an event set at each write.
    shown: dict[SuspensionKey, Mapping[str, PodRecord]] = field(default_factory=dict)
    status_written: dict[SuspensionKey, asyncio.Event] = field(default_factory=dict)
    # Suspensions seen with `suspend: false` since their status daemon last looked: the run their `suspendedAt`
    # counts a duration from is over, even if no status write showed it (`false` and `true` again within one
    # status interval, while the workers did give back).
    runs_ended: set[SuspensionKey] = field(default_factory=set)
    # Told (namespace, suspension name) when a pod's level for a staged suspension changes, or whether it failed:
    # a stage's gate may have opened (stages.py). The dispatch wakes the suspension's pod workers.
    stage_moved: Callable[[str, str], None] | None = None

    def record(self, namespace: str, suspension: str, pod: str) -> PodRecord | None:
        """The pod's latest outcome for the suspension."""
        return self.outcomes.get((namespace, suspension), {}).get(pod)

    def records(self, namespace: str, suspension: str) -> dict[str, PodRecord]:
        """Every pod's latest outcome for the suspension, as a copy the caller keeps."""
        return dict(self.outcomes.get((namespace, suspension), {}))

    def report(self, namespace: str, suspension: str, pod: str, record: PodRecord | None) -> None:
        """A pod worker's outcome for one suspension (None: the pod is no longer its business)."""
        records = self.outcomes.setdefault((namespace, suspension), {})
        previous = records.get(pod)
        if record is None:
            if records.pop(pod, None) is None:
                return
        else:
            records[pod] = record
        self.wake(namespace, suspension)
        if self.stage_moved is not None and _gating(previous) != _gating(record):
            self.stage_moved(namespace, suspension)

    def suspending_levels(self, namespace: str, suspension: str, pods: Iterable[str]) -> list[int]:
        """The levels of these target pods of a staged suspension that is suspending (stages.py)."""
        return suspending_levels(self.outcomes.get((namespace, suspension), {}), pods)

    def resuming_levels(
        self, namespace: str, suspension: str, but: str, held: Mapping[str, int] | None = None
    ) -> list[int]:
        """The levels of the other pods of a staged suspension that is resuming, but those that failed; `held`:
        the stages each pod's ledger holds, for those with no outcome yet (stages.resuming_levels)."""
        return resuming_levels(self.outcomes.get((namespace, suspension), {}), but, held)

    def retag(self, namespace: str, suspension: str, pod: str, generation: int | None) -> None:
        """The pod's outcome answers this generation of the suspension too."""
        records = self.outcomes.get((namespace, suspension), {})
        record = records.get(pod)
        if record is None or record.generation == generation:
            return
        # A new record, not a changed one: what a status write showed stays what it showed.
        records[pod] = dataclasses.replace(record, generation=generation)
        self.wake(namespace, suspension)

    def wake(self, namespace: str, suspension: str) -> None:
        """Make a suspension's status daemon look again."""
        event = self.wakeups.get((namespace, suspension))
        if event is not None:
            event.set()

    @contextlib.contextmanager
    def daemon_wakeup(self, namespace: str, suspension: str) -> Iterator[asyncio.Event]:
        """The event that wakes the suspension's status daemon, for as long as the daemon runs."""
        key = (namespace, suspension)
        wake = self.wakeups.setdefault(key, asyncio.Event())
        try:
            yield wake
        finally:
            if self.wakeups.get(key) is wake:
                del self.wakeups[key]

    def status_shown(self, namespace: str, suspension: str, records: Mapping[str, PodRecord]) -> None:
        """The status daemon wrote (or found written) a status built from these outcomes."""
        self.shown[(namespace, suspension)] = records  # the daemon's own copy: no second one per write
        self.status_written.setdefault((namespace, suspension), asyncio.Event()).set()

    async def wait_shown(self, namespace: str, suspension: str, pod: str, record: PodRecord, timeout_s: float) -> bool:
        """Wait until a status showing this outcome of the pod is written; False when it was not within timeout_s
        (no daemon runs, or the API server refuses the write: the caller goes on, it has said it in an event)."""
        key = (namespace, suspension)
        self.wake(namespace, suspension)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.shown.get(key, {}).get(pod) is not record:
            written = self.status_written.setdefault(key, asyncio.Event())
            written.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await written.wait()
        return True

    def run_ended(self, namespace: str, suspension: str) -> None:
        """The object says `suspend: false` (or `preview: true`): a later `true` is a new run."""
        self.runs_ended.add((namespace, suspension))

    def take_run_ended(self, namespace: str, suspension: str) -> bool:
        """Whether a run ended since the last call (the status daemon's, before it builds a status)."""
        key = (namespace, suspension)
        ended = key in self.runs_ended
        self.runs_ended.discard(key)
        return ended

    def forget(self, namespace: str, suspension: str) -> None:
        """The suspension is gone: nothing of it is reported or shown any more."""
        key = (namespace, suspension)
        self.runs_ended.discard(key)
        self.outcomes.pop(key, None)
        self.shown.pop(key, None)
        self.status_written.pop(key, None)


def _gating(record: PodRecord | None) -> tuple[int, bool, bool] | None:
    """What of an outcome the stage gates read."""
    if record is None or record.stage is None:
        return None
    return record.stage, record.suspending, record.failed
