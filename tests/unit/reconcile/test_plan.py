"""Pure planning and status logic: targets, intent, due pods, overlap, conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from processcontrol.api import (
    INSTANCE_GROUP_LABEL,
    PodState,
    ProcessState,
    ProcessStatus,
    ProcessSuspensionSpec,
    ProcessSuspensionStatus,
)
from processcontrol.reconcile import conditions as cond
from processcontrol.reconcile.plan import (
    Intent,
    Mode,
    OtherSuspension,
    PodRecord,
    build_status,
    held_by_others,
    intent_of,
    needs_work,
    process_state,
    reverify_spread,
    sockets_to_start,
)
from processcontrol.reconcile.targets import PodInfo, exec_container, pod_info_from_body, select_targets

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)


def pod(name: str, group: str = "database", phase: str = "Running", **labels: str) -> PodInfo:
    return PodInfo(
        namespace="kubecf",
        name=name,
        uid=f"uid-{name}",
        labels={INSTANCE_GROUP_LABEL: group, **labels},
        phase=phase,
        terminating=False,
        containers=("logs", "pxc-mysql"),
        data_containers=("pxc-mysql",),
    )


def spec(**fields: object) -> ProcessSuspensionSpec:
    return ProcessSuspensionSpec.model_validate({"instanceGroup": "database", **fields})


def record(name: str, state: PodState, mode: Mode = Mode.SUSPEND, checked_at: float = 100.0) -> PodRecord:
    return PodRecord(uid=f"uid-{name}", state=state, mode=mode, checked_at=checked_at, transition_time=NOW)


def test_pod_summary_finds_the_data_container_and_counts_restarts() -> None:
    body = {
        "metadata": {"namespace": "kubecf", "name": "database-0", "uid": "u1", "labels": {"a": "b"}},
        "spec": {
            "nodeName": "n",
            "containers": [
                {"name": "logs", "volumeMounts": [{"mountPath": "/var/vcap/sys"}]},
                {"name": "pxc-mysql", "volumeMounts": [{"mountPath": "/var/vcap/data/"}]},
            ],
        },
        "status": {"phase": "Running", "containerStatuses": [{"restartCount": 2}, {"restartCount": 1}]},
    }
    info = pod_info_from_body(body)
    assert info.data_containers == ("pxc-mysql",)
    assert info.restarts == 3
    assert exec_container(info, None) == "pxc-mysql"
    assert exec_container(info, "logs") == "logs"
    assert exec_container(info, "nope") is None


def test_targets_are_running_matching_pods_only() -> None:
    terminating = PodInfo(**{**pod("database-2").__dict__, "terminating": True})
    pods = [
        pod("database-1"),
        pod("database-0"),
        pod("api-0", group="api"),
        pod("database-3", phase="Pending"),
        terminating,
    ]
    assert [p.name for p in select_targets(spec(), pods)] == ["database-0", "database-1"]


def test_selector_expressions() -> None:
    chosen = ProcessSuspensionSpec.model_validate(
        {
            "selector": {
                "matchLabels": {"tier": "db"},
                "matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a", "b"]},
                    {"key": "canary", "operator": "DoesNotExist"},
                ],
            }
        }
    )
    pods = [
        pod("p-0", tier="db", zone="a"),
        pod("p-1", tier="db", zone="c"),
        pod("p-2", tier="db", zone="b", canary="yes"),
        pod("p-3", tier="web", zone="a"),
    ]
    assert [p.name for p in select_targets(chosen, pods)] == ["p-0"]


def test_intent_follows_suspend_and_expiry() -> None:
    status = ProcessSuspensionStatus()
    assert intent_of(spec(), status, NOW) == Intent(Mode.SUSPEND, "SuspendRequested")
    assert intent_of(spec(suspend=False), status, NOW) == Intent(Mode.RESUME, "ResumeRequested")
    expired = ProcessSuspensionStatus(expires_at=cond.format_time(NOW - timedelta(seconds=1)))
    assert intent_of(spec(duration="1h"), expired, NOW) == Intent(Mode.RESUME, "Expired")
    later = ProcessSuspensionStatus(expires_at=cond.format_time(NOW + timedelta(hours=1)))
    assert intent_of(spec(duration="1h"), later, NOW).mode is Mode.SUSPEND


@pytest.mark.parametrize(
    ("existing", "restarts", "now", "expected"),
    [
        (None, 0, 101.0, True),  # new pod
        (record("p", PodState.SUSPENDED), 1, 101.0, True),  # a container restarted
        (record("p", PodState.SUSPENDED), 0, 101.0, False),  # verified recently
        (record("p", PodState.SUSPENDED), 0, 138.0, True),  # re-verification due (30 s, spread up to 1.25x)
        (record("p", PodState.FAILED), 0, 105.0, False),  # failed: backing off
        (record("p", PodState.FAILED), 0, 111.0, True),  # failed: retry due
        (record("p", PodState.SUSPENDING), 0, 101.0, True),  # unsettled
        (record("p", PodState.RESUMED, Mode.RESUME), 0, 1000.0, True),  # mode switched to suspend
    ],
)
def test_needs_work(existing: PodRecord | None, restarts: int, now: float, expected: bool) -> None:
    target = PodInfo(**{**pod("p").__dict__, "restarts": restarts})
    assert needs_work(existing, target, Mode.SUSPEND, now, reverify_s=30.0, retry_s=10.0) is expected


def test_reverification_is_spread_over_pods() -> None:
    factors = [reverify_spread(f"uid-{i}") for i in range(200)]
    assert all(0.75 <= f < 1.25 for f in factors)
    assert max(factors) - min(factors) > 0.4
    assert reverify_spread("uid-7") == reverify_spread("uid-7")


def test_resumed_pods_are_left_alone() -> None:
    existing = record("p", PodState.RESUMED, Mode.RESUME)
    assert not needs_work(existing, pod("p"), Mode.RESUME, 10_000.0, reverify_s=30.0, retry_s=10.0)


def test_overlap_resumes_only_what_no_other_suspension_holds() -> None:
    target = pod("database-0")
    known = [
        ProcessStatus(job="pxc-mysql", process="galera-agent", state=ProcessState.STOPPED),
        ProcessStatus(job="pxc-mysql", process="mysql", state=ProcessState.STOPPED),
        ProcessStatus(job="bpm", process="bpm", state=ProcessState.STOPPED),
    ]
    holder = OtherSuspension("other", spec(jobs=["pxc-mysql"]), holding=True)
    released = OtherSuspension("released", spec(), holding=False)
    assert sockets_to_start(target, spec(), known, [released]) is None
    assert sockets_to_start(target, spec(), known, [holder, released]) == [("bpm", "bpm")]
    assert held_by_others(target, [holder])
    assert not held_by_others(target, [released])
    assert not held_by_others(pod("api-0", group="api"), [holder])


def test_status_all_suspended_is_ready_and_sets_times() -> None:
    targets = [pod("database-0"), pod("database-1")]
    records = {p.name: record(p.name, PodState.SUSPENDED) for p in targets}
    status = build_status(
        spec(duration="90m"),
        3,
        Intent(Mode.SUSPEND, "SuspendRequested"),
        targets,
        records,
        ProcessSuspensionStatus(),
        NOW,
    )
    by_type = {c.type: c for c in status.conditions}
    assert by_type["Ready"].status == "True"
    assert by_type["Suspended"].status == "True"
    assert by_type["Reconciling"].status == "False"
    assert by_type["Stalled"].status == "False"
    assert all(c.observed_generation == 3 for c in status.conditions)
    assert status.summary == "2/2"
    assert status.observed_generation == 3
    assert status.suspended_at == "2026-11-28T12:00:00Z"
    assert status.expires_at == "2026-11-28T13:30:00Z"


def test_status_in_progress_is_reconciling_and_keeps_transition_times() -> None:
    targets = [pod("database-0"), pod("database-1")]
    records = {"database-0": record("database-0", PodState.SUSPENDED)}
    intent = Intent(Mode.SUSPEND, "SuspendRequested")
    first = build_status(spec(), 1, intent, targets, records, ProcessSuspensionStatus(), NOW)
    by_type = {c.type: c for c in first.conditions}
    assert by_type["Ready"].status == "False"
    assert by_type["Reconciling"].status == "True"
    assert first.summary == "1/2"
    assert [p.state for p in first.pods] == [PodState.SUSPENDED, PodState.SUSPENDING]
    assert first.suspended_at is None
    later = build_status(spec(), 1, intent, targets, records, first, NOW + timedelta(minutes=1))
    assert later.conditions == first.conditions  # nothing changed, so no transition time moved
    records["database-1"] = record("database-1", PodState.SUSPENDED)
    done = build_status(spec(), 1, intent, targets, records, later, NOW + timedelta(minutes=2))
    ready = cond.find(done.conditions, "Ready")
    assert ready is not None and ready.last_transition_time == "2026-11-28T12:02:00Z"


def test_status_failed_pod_stalls_with_its_reason() -> None:
    targets = [pod("database-0"), pod("database-1")]
    failed = record("database-1", PodState.FAILED)
    failed.reason, failed.message = "NoSenderTool", "no tool to send datagrams; tried processcontrol,ncat,nc"
    records = {"database-0": record("database-0", PodState.SUSPENDED), "database-1": failed}
    status = build_status(
        spec(), 1, Intent(Mode.SUSPEND, "SuspendRequested"), targets, records, ProcessSuspensionStatus(), NOW
    )
    stalled = cond.find(status.conditions, "Stalled")
    ready = cond.find(status.conditions, "Ready")
    assert stalled is not None and stalled.status == "True" and stalled.reason == "NoSenderTool"
    assert "database-1" in stalled.message and "ncat" in stalled.message
    assert ready is not None and ready.status == "False" and ready.reason == "NoSenderTool"
    reconciling = cond.find(status.conditions, "Reconciling")
    assert reconciling is not None and reconciling.status == "False"


def test_status_without_pods_says_so() -> None:
    status = build_status(spec(), 1, Intent(Mode.SUSPEND, "SuspendRequested"), [], {}, ProcessSuspensionStatus(), NOW)
    stalled = cond.find(status.conditions, "Stalled")
    assert stalled is not None and stalled.status == "True" and stalled.reason == "NoMatchingPods"
    assert status.summary == "0/0"


def test_resume_clears_suspension_times_but_expiry_keeps_them() -> None:
    targets = [pod("database-0")]
    records = {"database-0": record("database-0", PodState.RESUMED, Mode.RESUME)}
    previous = ProcessSuspensionStatus(suspended_at="2026-11-28T10:00:00Z", expires_at="2026-11-28T11:00:00Z")
    resumed = build_status(
        spec(suspend=False), 2, Intent(Mode.RESUME, "ResumeRequested"), targets, records, previous, NOW
    )
    assert resumed.suspended_at is None and resumed.expires_at is None
    expired = build_status(spec(duration="1h"), 1, Intent(Mode.RESUME, "Expired"), targets, records, previous, NOW)
    assert expired.expires_at == "2026-11-28T11:00:00Z"
    ready = cond.find(expired.conditions, "Ready")
    suspended = cond.find(expired.conditions, "Suspended")
    assert ready is not None and ready.status == "True" and ready.reason == "Expired"
    assert suspended is not None and suspended.status == "False" and suspended.reason == "Expired"


def test_pods_that_left_are_listed_as_gone_for_a_while() -> None:
    intent = Intent(Mode.SUSPEND, "SuspendRequested")
    targets = [pod("database-0"), pod("database-1")]
    records = {p.name: record(p.name, PodState.SUSPENDED) for p in targets}
    before = build_status(spec(), 1, intent, targets, records, ProcessSuspensionStatus(), NOW)
    after = build_status(spec(), 1, intent, targets[:1], records, before, NOW + timedelta(seconds=5))
    assert [(p.name, p.state) for p in after.pods] == [
        ("database-0", PodState.SUSPENDED),
        ("database-1", PodState.GONE),
    ]
    much_later = build_status(spec(), 1, intent, targets[:1], records, after, NOW + timedelta(minutes=10))
    assert [p.name for p in much_later.pods] == ["database-0"]


@pytest.mark.parametrize(
    ("mode", "result", "running", "settled", "expected"),
    [
        (Mode.SUSPEND, "sent", True, False, ProcessState.STOPPING),
        (Mode.SUSPEND, "sent", True, True, ProcessState.RUNNING),
        (Mode.SUSPEND, "probed", False, False, ProcessState.STOPPED),
        (Mode.SUSPEND, "refused", False, False, ProcessState.STALE),
        (Mode.RESUME, "sent", True, False, ProcessState.RUNNING),
        (Mode.RESUME, "failed", False, False, ProcessState.UNKNOWN),
    ],
)
def test_process_state(mode: Mode, result: str, running: bool, settled: bool, expected: ProcessState) -> None:
    assert process_state(mode, result, running, settled) is expected
