"""Prometheus metrics of the operator."""

from __future__ import annotations

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
