"""Container restarts of a held pod: counted for the metric, and found in loops (a probe the stopped process
fails, most likely). One `RestartWatch` per pod worker owns what it has seen; it does no exec and writes nothing."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from processcontrol.reconcile.ledger import Ledger
from processcontrol.reconcile.metrics import RESTARTS_UNDER_SUSPENSION
from processcontrol.reconcile.targets import PodInfo


@dataclass(frozen=True)
class Loop:
    """A hold whose containers restart too often: which container, how often, and when the loop may end."""

    container: str
    restarts: int
    ends_in: float  # seconds until fewer than the limit are left in the window


@dataclass
class RestartWatch:
    """Container restarts as last seen, and when each was seen (monotonic)."""

    namespace: str
    window_s: float
    limit: int
    counts: dict[str, int] | None = None
    times: dict[str, list[float]] = field(default_factory=dict)
    loops: dict[str, str] = field(default_factory=dict)  # suspension uid -> what its restart loop is, while it lasts
    warned: set[str] = field(default_factory=set)  # suspension uids whose loop here was announced in an event

    def track(self, pod: PodInfo, wanted: Mapping[str, str], ledger: Ledger) -> None:
        """Note each container restart the pod shows since the last look; `wanted`: uid -> suspension name."""
        counts = dict(pod.probes.restarts)
        previous, self.counts = self.counts, counts
        if previous is None:
            return
        monotonic = time.monotonic()
        for container, restarts in counts.items():
            grown = restarts - previous.get(container, restarts)
            times = [t for t in self.times.get(container, []) if monotonic - t <= self.window_s]
            self.times[container] = times + [monotonic] * max(0, grown)
            if grown <= 0:
                continue
            for uid, name in wanted.items():
                hold = ledger.holds.get(uid)
                if hold is not None and container in hold.restart_base:
                    RESTARTS_UNDER_SUSPENSION.labels(self.namespace, name).inc(grown)

    def looping(self, uid: str, ledger: Ledger) -> Loop | None:
        """The first container of this hold that restarted `limit` times within the window, if any."""
        monotonic = time.monotonic()
        hold = ledger.holds.get(uid)
        for container in sorted(hold.restart_base if hold is not None else {}):
            recent = sorted(t for t in self.times.get(container, []) if monotonic - t <= self.window_s)
            if len(recent) >= self.limit:
                ends_in = recent[len(recent) - self.limit] + self.window_s - monotonic
                return Loop(container, len(recent), ends_in)
        return None

    def forget(self) -> None:
        """The pod was replaced: its restarts say nothing of the new one."""
        self.counts = None
        self.times.clear()
        self.loops.clear()
        self.warned.clear()
