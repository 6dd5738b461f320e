"""The pod index entry: its hold ledger holders are parsed once, when kopf builds the entry.

`Dispatch.wake_pods_of` looks at every pod of the namespace each time a suspension's spec, deletion or expiry
changes; parsing the ledger JSON there made that O(pods x ledger size) per change.
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import pytest

from processcontrol import targets
from processcontrol.api import INSTANCE_GROUP_LABEL
from processcontrol.api.timestamps import format_time
from processcontrol.ledger import (
    HOLDS_ANNOTATION,
    Hold,
    Ledger,
    LedgerSummary,
    Observed,
    dump_ledger,
    holders_in,
    take_hold,
)
from processcontrol.reconcile.dispatch import Dispatch
from processcontrol.reconcile.handlers import pods_by_namespace
from processcontrol.reconcile.runtime import Runtime, SuspensionInfo, suspension_info
from processcontrol.reconcile.suspension import pods_holding
from processcontrol.settings import ProcessControlSettings
from processcontrol.targets import PodInfo

NAMESPACE = "kubecf"


def body(name: str, group: str, holds: str | None) -> kopf.Body:
    raw: dict[str, Any] = {
        "metadata": {
            "namespace": NAMESPACE,
            "name": name,
            "uid": f"uid-{name}",
            "labels": {INSTANCE_GROUP_LABEL: group},
            "annotations": {} if holds is None else {HOLDS_ANNOTATION: holds},
        },
        "spec": {"containers": [{"name": "pxc-mysql", "volumeMounts": [{"mountPath": "/var/vcap/data"}]}]},
        "status": {"phase": "Running"},
    }
    return kopf.Body(raw)  # type: ignore[arg-type]


def entry(name: str, group: str = "database", holds: str | None = None) -> PodInfo:
    """The entry exactly as the `pods` index function builds it."""
    (info,) = pods_by_namespace(namespace=NAMESPACE, body=body(name, group, holds)).values()  # type: ignore[call-arg, attr-defined]
    assert isinstance(info, PodInfo)
    return info


def ledger_of(*uids: str) -> str:
    ledger = Ledger()
    for uid in uids:
        ledger = take_hold(
            ledger, uid, Hold(name=f"name-{uid}"), [Observed("pxc-mysql", "mysql", True)], since="2026-12-01T10:00:00Z"
        )
    raw = dump_ledger(ledger)
    assert raw is not None
    return raw


def api_suspension(uid: str, group: str) -> SuspensionInfo:
    return suspension_info(f"name-{uid}", uid, 1, {"instanceGroup": group, "suspend": True}, {}, False)


class WakeRecorder(Dispatch):
    """A dispatch that records which pod workers it would start or wake, instead of starting them."""

    woken: list[str]

    def ensure_worker(self, namespace: str, pod: str, wake: bool = True) -> None:
        self.woken.append(pod)


def dispatch_over(pods: list[PodInfo]) -> WakeRecorder:
    runtime = Runtime(settings=ProcessControlSettings(metrics_port=0), executor=None, kube=None)  # type: ignore[arg-type]
    runtime.pods_of = lambda namespace: pods if namespace == NAMESPACE else []
    runtime.pod = lambda namespace, name: next((p for p in runtime.pods_of(namespace) if p.name == name), None)
    made = WakeRecorder(runtime)
    made.woken = []
    return made


def test_the_index_entry_carries_the_parsed_holders(monkeypatch: pytest.MonkeyPatch) -> None:
    parses: list[object] = []
    real = targets.holders_in  # type: ignore[attr-defined]

    def counting(annotations: Any) -> LedgerSummary:
        parses.append(annotations)
        result: LedgerSummary = real(annotations)
        return result

    monkeypatch.setattr(targets, "holders_in", counting)
    held = entry("database-0", holds=ledger_of("uid-b", "uid-a"))
    free = entry("database-1")
    assert len(parses) == 2, "parsed when the entry is built"

    assert held.holders == ("uid-a", "uid-b")
    assert free.holders == ()
    for _ in range(100):
        assert held.holders == ("uid-a", "uid-b")
    dispatch_over([held, free]).wake_pods_of(api_suspension("uid-other", "api"), NAMESPACE)
    assert len(parses) == 2, "reading the holders, and waking pods, parses nothing again"


def test_the_index_keeps_the_holders_never_the_annotation() -> None:
    """Issue 27: the pod index kept every pod's raw annotation, up to 256 KiB each: now only who holds something
    (at most 64 uids) and whether the ledger can be read. The worker reads the ledger itself from the pod."""
    raw = ledger_of("uid-a")
    held = entry("database-0", holds=raw)
    kept = [getattr(held, f.name) for f in fields(held)]
    assert not any(isinstance(value, str) and raw in value for value in kept)
    assert "holds" not in {f.name for f in fields(held)}
    assert held.ledger == LedgerSummary(present=True, readable=True, holders=("uid-a",))
    huge = entry("database-1", holds='{"holds": {"uid-a": {}}, "pad": "' + "x" * 300_000 + '"}')
    assert huge.ledger == LedgerSummary(present=True, readable=False, holders=())
    assert sum(len(uid) for uid in huge.holders) == 0


def test_waking_pods_uses_the_parsed_holders() -> None:
    held = entry("database-0", group="database", holds=ledger_of("uid-restore"))
    other = entry("api-0", group="api")
    dispatch = dispatch_over([held, other])

    # A suspension of another group still wakes the pod its ledger says it holds something in.
    dispatch.wake_pods_of(api_suspension("uid-restore", "router"), NAMESPACE)
    assert dispatch.woken == ["database-0"]
    dispatch.woken.clear()
    dispatch.wake_pods_of(api_suspension("uid-else", "api"), NAMESPACE)
    assert dispatch.woken == ["api-0"]
    assert pods_holding(dispatch, NAMESPACE, "uid-restore") == ["database-0"]
    assert pods_holding(dispatch, NAMESPACE, "uid-else") == []


def test_a_deletion_between_full_scans_looks_only_at_the_pods_that_held() -> None:
    held = entry("database-0", group="database", holds=ledger_of("uid-restore"))
    also = entry("database-1", group="database", holds=ledger_of("uid-restore"))
    dispatch = dispatch_over([held, also, entry("api-0", group="api")])
    assert pods_holding(dispatch, NAMESPACE, "uid-restore", among=["database-1", "gone-0"]) == ["database-1"]
    assert pods_holding(dispatch, NAMESPACE, "uid-restore", among=[]) == []
    assert pods_holding(dispatch, NAMESPACE, "uid-restore") == ["database-0", "database-1"]


@pytest.mark.parametrize("raw", ["{not json", '{"v": 2}', "[]"])
def test_a_malformed_ledger_still_surfaces(raw: str) -> None:
    broken = entry("database-0", group="database", holds=raw)
    assert broken.ledger.present and not broken.ledger.readable, "unreadable, not empty"
    dispatch = dispatch_over([broken, entry("api-0", group="api")])

    # Any suspension's change wakes the pod whose ledger cannot be read: its worker reports it (LedgerUnreadable).
    dispatch.wake_pods_of(api_suspension("uid-else", "router"), NAMESPACE)
    assert dispatch.woken == ["database-0"]


def test_a_deletion_waits_for_an_unreadable_ledger_only_when_its_holds_name_the_suspension() -> None:
    """Issue 27: a ledger that merely contained the uid as text (here in a broken tail, or a name) kept the finalizer
    for ever; it names nobody. One whose `holds` names it keeps the deletion waiting until it is mended."""
    mentions = entry("database-0", holds='{"holds": {"uid-restore": ')
    in_a_name = entry("database-1", holds='{"holds": {"u": {"name": "uid-restore"}}, "processes": 1}')
    names = entry("database-2", holds='{"holds": {"uid-restore": {"name": 7}}}')
    dispatch = dispatch_over([mentions, in_a_name, names])
    assert pods_holding(dispatch, NAMESPACE, "uid-restore") == ["database-2"]


def test_a_copy_with_another_ledger_parses_its_own() -> None:
    held = entry("database-0", holds=ledger_of("uid-a"))
    assert replace(held, ledger=holders_in({HOLDS_ANNOTATION: ledger_of("uid-b")})).holders == ("uid-b",)
    assert replace(held, ledger=holders_in(None)).holders == ()


def test_the_workers_expiry_comes_from_the_spec_and_suspended_at_not_the_last_expires_at() -> None:
    """Seed 5305: a suspension's duration removed while its status still had the old expiresAt; the pod workers
    took it for expired, started its processes and stopped them again once the status caught up."""
    now = datetime.now(UTC)
    began = format_time(now - timedelta(seconds=30))
    stale = {"suspendedAt": began, "expiresAt": format_time(now - timedelta(seconds=15))}
    spec: dict[str, Any] = {"instanceGroup": "database", "suspend": True}
    assert suspension_info("s", "u", 2, spec, stale, False).holding(now), "no duration: it holds"
    info = suspension_info("s", "u", 3, {**spec, "duration": "1h"}, stale, False)
    assert info.holding(now) and info.expires_at == format_time(now - timedelta(seconds=30) + timedelta(hours=1))
    assert not suspension_info("s", "u", 4, {**spec, "duration": "10s"}, stale, False).holding(now)
    assert suspension_info("s", "u", 5, {**spec, "duration": "10s"}, {"suspendedAt": "garbage"}, False).holding(now)
