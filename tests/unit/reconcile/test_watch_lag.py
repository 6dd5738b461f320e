"""The watch-lag metric: a ledger write's answer to its pod version's event, observed once, bounded per pod."""

from __future__ import annotations

from prometheus_client import REGISTRY

from processcontrol.reconcile.metrics import WatchLag


def observed() -> float:
    return REGISTRY.get_sample_value("processcontrol_watch_lag_seconds_count") or 0.0


def test_only_the_written_version_is_observed_and_only_once() -> None:
    lag, before = WatchLag(), observed()
    lag.wrote("ns", "db-0", "41")
    lag.seen("ns", "db-0", "40")  # an older event still on its way: not the write's
    lag.seen("ns", "db-1", "41")  # another pod's
    assert observed() == before
    lag.seen("ns", "db-0", "41")
    lag.seen("ns", "db-0", "41")
    assert observed() == before + 1
    assert lag.pending == {}


def test_a_later_write_replaces_the_earlier_and_a_deleted_pod_is_forgotten() -> None:
    lag, before = WatchLag(), observed()
    lag.wrote("ns", "db-0", "41")
    lag.wrote("ns", "db-0", "45")
    lag.seen("ns", "db-0", "41")  # the watch skipped to a later version of the first write: not observed
    assert observed() == before and set(lag.pending) == {("ns", "db-0")}
    lag.seen("ns", "db-0", "47", gone=True)
    assert lag.pending == {}, "one entry per pod, none for a pod that is gone"
    lag.wrote("ns", "db-1", "")  # an answer without a version: nothing to wait for
    assert lag.pending == {}
