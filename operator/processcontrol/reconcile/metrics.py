"""Prometheus metrics of the operator."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge, Histogram

SUSPENDED_PODS = Gauge(
    "processcontrol_suspended_pods", "Pods verified suspended, per suspension.", ["namespace", "suspension"]
)
SUSPENDED_PROCESSES = Gauge(
    "processcontrol_suspended_processes", "Processes verified stopped, per suspension.", ["namespace", "suspension"]
)
RESTARTS_UNDER_SUSPENSION = Counter(
    "processcontrol_restarts_under_suspension_total",
    "Restarts of containers whose processes a suspension holds stopped (a probe the stopped process fails, most "
    "likely), per suspension.",
    ["namespace", "suspension"],
)
EXEC_SECONDS = Histogram(
    "processcontrol_exec_seconds",
    "Wall time of one exec into a pod.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
EXEC_FAILURES = Counter("processcontrol_exec_failures_total", "Execs that failed, by reason.", ["reason"])
# Not an exec failure (the exec itself went well), so counted apart: each is an exec spent for nothing, and many mean
# the operator or the API server answers slower than the window allows.
GO_AHEADS_LATE = Counter(
    "processcontrol_go_aheads_late_total",
    "Transitions whose go-ahead reached the in-pod script after its window: nothing was sent, and the transition "
    "is tried again.",
)


def observe_exec(duration_s: float, ok: bool, reason: str = "") -> None:
    """Record one exec."""
    EXEC_SECONDS.observe(duration_s)
    if not ok:
        EXEC_FAILURES.labels(reason=reason or "Unknown").inc()


LEADER = Gauge(
    "processcontrol_leader",
    "1 while this replica leads (holds the Lease and acts), 0 while it is a standby or has let go.",
)
LEADER_EPOCH = Gauge("processcontrol_leader_epoch", "The epoch of this replica's term as leader (0: it never led).")

WATCH_LAG_SECONDS = Histogram(
    "processcontrol_watch_lag_seconds",
    "From the API server's answer to a ledger write to that pod version's watch event reaching the handlers: how far "
    "the operator's view of its pods trails its own writes.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)


class WatchLag:
    """Times each pod's latest ledger write until its watch event arrives. One entry per pod at most (a later
    write replaces it; a version the watch skips is never observed), so it is bounded by the pods written."""

    def __init__(self) -> None:
        self.pending: dict[tuple[str, str], tuple[str, float]] = {}

    def wrote(self, namespace: str, pod: str, resource_version: str) -> None:
        if resource_version:
            self.pending[(namespace, pod)] = (resource_version, time.monotonic())

    def seen(self, namespace: str, pod: str, resource_version: str, gone: bool = False) -> None:
        key = (namespace, pod)
        pending = self.pending.get(key)
        if pending is not None and pending[0] == resource_version:
            WATCH_LAG_SECONDS.observe(time.monotonic() - pending[1])
            del self.pending[key]
        elif gone:
            self.pending.pop(key, None)
