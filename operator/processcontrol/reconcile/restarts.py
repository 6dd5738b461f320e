"""Container restarts of a held pod: counted for the metric, and found in loops (a probe the stopped process
fails, most likely), which are announced with the kubelet's reason. One `RestartWatch` per pod worker owns what it
has seen; it does no exec and writes nothing to the pod."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from processcontrol.api.reasons import Reason
from processcontrol.exceptions import ApiError
from processcontrol.k8s import KubeClient
from processcontrol.ledger import Ledger
from processcontrol.probes import kubelet_reason
from processcontrol.reconcile.metrics import RESTARTS_UNDER_SUSPENSION
from processcontrol.reconcile.reporting import Reporter, logger
from processcontrol.reconcile.runtime import SuspensionInfo
from processcontrol.targets import PodInfo


@dataclass(frozen=True)
class Loop:
    """A hold whose containers restart too often: which container, how often, and when the loop may end."""

    container: str
    restarts: int
    ends_in: float  # seconds until fewer than the limit are left in the window


@dataclass
class RestartWatch:
    """Container restarts as last seen, when each was seen (monotonic), and the loops found."""

    namespace: str
    window_s: float
    limit: int
    kube: KubeClient
    reporter: Reporter
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

    async def check_loops(
        self,
        pod: PodInfo,
        wanted: Mapping[str, SuspensionInfo],
        ledger: Ledger,
        publish: Callable[[SuspensionInfo], None],
    ) -> float | None:
        """Find the holds whose containers restarted `limit` times within the window; announce each once per pod,
        with the kubelet's reason, and `publish` each hold whose loop began or ended. Returns when a loop may end
        (to show that), if one lasts."""
        ends: list[float] = []
        for uid, suspension in wanted.items():
            loop = self.looping(uid, ledger)
            if loop is None:
                if self.loops.pop(uid, None) is not None:
                    publish(suspension)
                continue
            ends.append(loop.ends_in)
            if uid in self.loops:
                continue
            why = await self._kubelet_reason(pod, loop.container)
            message = f"container {loop.container} restarted {loop.restarts} times in {self.window_s / 60:g} min"
            message += " while suspended" + (f" (kubelet: {why})" if why else "")
            self.loops[uid] = message
            if uid not in self.warned:
                self.warned.add(uid)
                self.reporter.event(
                    suspension,
                    "Warning",
                    Reason.RESTART_LOOP,
                    f"pod {pod.name}: {message}; resuming ends it, or probes: Skip leaves such processes running",
                )
            publish(suspension)
        return max(0.0, min(ends)) + 0.1 if ends else None

    def loop_message(self, uid: str) -> str:
        """What the hold's restart loop is, while it lasts; empty when it has none."""
        return self.loops.get(uid, "")

    async def _kubelet_reason(self, pod: PodInfo, container: str) -> str:
        try:
            events = await self.kube.pod_events(self.namespace, pod.uid)
        except ApiError as error:
            logger.info(f"pod {self.namespace}/{pod.name}: cannot read its events: {error}")
            return ""
        return kubelet_reason(events, container)

    def forget(self) -> None:
        """The pod was replaced: its restarts say nothing of the new one."""
        self.counts = None
        self.times.clear()
        self.loops.clear()
        self.warned.clear()
