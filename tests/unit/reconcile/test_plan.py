"""Pure planning and status logic: targets, intent, due pods, overlap, conditions."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from processcontrol.api import (
    INSTANCE_GROUP_LABEL,
    MAX_LISTED_PODS,
    PodState,
    ProcessState,
    ProcessStatus,
    ProcessSuspensionSpec,
    ProcessSuspensionStatus,
)
from processcontrol.api.reasons import Reason
from processcontrol.api.timestamps import format_time, format_time_up, parse_time
from processcontrol.podexec.script import SocketResult
from processcontrol.reconcile import conditions as cond
from processcontrol.reconcile.plan import (
    Intent,
    Mode,
    PodRecord,
    build_status,
    intent_of,
    process_state,
    reverify_spread,
)
from processcontrol.targets import PodInfo, exec_container, pod_info_from_body, select_targets

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


def record(name: str, state: PodState, mode: Mode = Mode.SUSPEND, generation: int | None = 1) -> PodRecord:
    return PodRecord(uid=f"uid-{name}", state=state, mode=mode, generation=generation, transition_time=NOW)


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
    terminating = replace(pod("database-2"), terminating=True)
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
    assert intent_of(spec(), status, NOW) == Intent(Mode.SUSPEND, Reason("SuspendRequested"))
    assert intent_of(spec(suspend=False), status, NOW) == Intent(Mode.RESUME, Reason("ResumeRequested"))
    began = format_time(NOW - timedelta(hours=1, seconds=1))
    expired = ProcessSuspensionStatus(suspended_at=began, expires_at=format_time(NOW - timedelta(seconds=1)))
    assert intent_of(spec(duration="1h"), expired, NOW) == Intent(Mode.RESUME, Reason("Expired"))
    later = ProcessSuspensionStatus(suspended_at=format_time(NOW), expires_at=format_time(NOW + timedelta(hours=1)))
    assert intent_of(spec(duration="1h"), later, NOW).mode is Mode.SUSPEND


def test_a_duration_removed_or_changed_after_expiry_counts_from_the_spec_not_the_last_expires_at() -> None:
    """Seed 509 of the promise soak: the duration of an expired suspension removed, and one status round said
    Ready/Expired for the new generation (the intent was taken from the previous status's expiresAt)."""
    began = format_time(NOW - timedelta(seconds=30))
    expired = ProcessSuspensionStatus(suspended_at=began, expires_at=format_time(NOW - timedelta(seconds=24)))
    assert intent_of(spec(duration="6s"), expired, NOW) == Intent(Mode.RESUME, Reason("Expired"))
    assert intent_of(spec(), expired, NOW) == Intent(Mode.SUSPEND, Reason("SuspendRequested"))
    assert intent_of(spec(duration="1h"), expired, NOW).mode is Mode.SUSPEND
    # And the other way: shortened below the time it has held, it is over at once.
    held = ProcessSuspensionStatus(suspended_at=began, expires_at=format_time(NOW + timedelta(hours=1)))
    assert intent_of(spec(duration="10s"), held, NOW) == Intent(Mode.RESUME, Reason("Expired"))


def test_reverification_is_spread_over_pods() -> None:
    factors = [reverify_spread(f"uid-{i}") for i in range(200)]
    assert all(0.75 <= f < 1.25 for f in factors)
    assert max(factors) - min(factors) > 0.4
    assert reverify_spread("uid-7") == reverify_spread("uid-7")


def test_status_all_suspended_is_ready_and_sets_times() -> None:
    targets = [pod("database-0"), pod("database-1")]
    records = {p.name: record(p.name, PodState.SUSPENDED, generation=3) for p in targets}
    status = build_status(
        spec(duration="90m"),
        3,
        Intent(Mode.SUSPEND, Reason("SuspendRequested")),
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
    intent = Intent(Mode.SUSPEND, Reason("SuspendRequested"))
    first = build_status(spec(), 1, intent, targets, records, ProcessSuspensionStatus(), NOW)
    by_type = {c.type: c for c in first.conditions}
    assert by_type["Ready"].status == "False"
    assert by_type["Reconciling"].status == "True"
    assert first.summary == "1/2"
    assert [p.state for p in first.pods] == [PodState.SUSPENDING, PodState.SUSPENDED], "in progress first"
    assert first.suspended_at == "2026-11-28T12:00:00Z", "duration counts from the first pod that took effect"
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
        spec(), 1, Intent(Mode.SUSPEND, Reason("SuspendRequested")), targets, records, ProcessSuspensionStatus(), NOW
    )
    stalled = cond.find(status.conditions, "Stalled")
    ready = cond.find(status.conditions, "Ready")
    assert stalled is not None and stalled.status == "True" and stalled.reason == "NoSenderTool"
    assert "database-1" in stalled.message and "ncat" in stalled.message
    assert ready is not None and ready.status == "False" and ready.reason == "NoSenderTool"
    reconciling = cond.find(status.conditions, "Reconciling")
    assert reconciling is not None and reconciling.status == "False"


def test_status_without_pods_says_so() -> None:
    status = build_status(
        spec(), 1, Intent(Mode.SUSPEND, Reason("SuspendRequested")), [], {}, ProcessSuspensionStatus(), NOW
    )
    stalled = cond.find(status.conditions, "Stalled")
    assert stalled is not None and stalled.status == "True" and stalled.reason == "NoMatchingPods"
    assert status.summary == "0/0"


def test_resume_clears_suspension_times_but_expiry_keeps_them() -> None:
    targets = [pod("database-0")]
    records = {"database-0": record("database-0", PodState.RESUMED, Mode.RESUME, generation=2)}
    previous = ProcessSuspensionStatus(suspended_at="2026-11-28T10:00:00Z", expires_at="2026-11-28T11:00:00Z")
    resumed = build_status(
        spec(suspend=False), 2, Intent(Mode.RESUME, Reason("ResumeRequested")), targets, records, previous, NOW
    )
    assert resumed.suspended_at is None and resumed.expires_at is None
    expired = build_status(
        spec(duration="1h"), 2, Intent(Mode.RESUME, Reason("Expired")), targets, records, previous, NOW
    )
    assert expired.expires_at == "2026-11-28T11:00:00Z"
    ready = cond.find(expired.conditions, "Ready")
    suspended = cond.find(expired.conditions, "Suspended")
    assert ready is not None and ready.status == "True" and ready.reason == "Expired"
    assert suspended is not None and suspended.status == "False" and suspended.reason == "Expired"


def test_a_re_suspend_counts_its_duration_from_its_own_first_hold_not_the_run_before() -> None:
    """Seed 2404: `suspend: false`, then `true` again while a pod of the first run had not answered the resume
    yet; its outcome still showed the first run's hold, and `expiresAt` came before the request + duration."""
    targets = [pod("database-0"), pod("database-1")]
    stale = record("database-0", PodState.SUSPENDED, generation=1)
    stale.held_since = NOW - timedelta(minutes=10)
    fresh = record("database-1", PodState.SUSPENDING, generation=3)
    fresh.held_since = NOW - timedelta(seconds=2)
    intent = Intent(Mode.SUSPEND, Reason("SuspendRequested"))
    resumed = ProcessSuspensionStatus()  # the resume of generation 2 cleared the times
    status = build_status(
        spec(duration="15s"), 3, intent, targets, {"database-0": stale, "database-1": fresh}, resumed, NOW
    )
    assert status.suspended_at == format_time(NOW - timedelta(seconds=2))
    assert status.expires_at == format_time(NOW + timedelta(seconds=13))


def test_a_re_suspend_never_counts_from_a_hold_its_pod_kept_from_the_run_before() -> None:
    """Seed 4102: `suspend: false` while a pod's worker could not give its hold back (its exec in doubt), then
    `true` again: that pod's outcome shows the first run's hold, in force, for the new generation."""
    targets = [pod("database-0")]
    kept = record("database-0", PodState.SUSPENDED, generation=3)
    kept.held_since = NOW - timedelta(seconds=30)
    intent = Intent(Mode.SUSPEND, Reason("SuspendRequested"))
    began = NOW - timedelta(seconds=1)
    status = build_status(
        spec(duration="40s"), 3, intent, targets, {"database-0": kept}, ProcessSuspensionStatus(), NOW, run_began=began
    )
    assert status.suspended_at == format_time(began)
    unclamped = build_status(
        spec(duration="40s"), 3, intent, targets, {"database-0": kept}, ProcessSuspensionStatus(), NOW
    )
    assert unclamped.suspended_at == format_time(kept.held_since), "without a run seen to end, the hold's time"


def test_outcomes_of_an_older_generation_never_make_the_new_request_ready() -> None:
    """Issue 11, why 5: `suspend: false` arrives mid-round; the old round's results answer generation 1 only."""
    targets = [pod("database-0"), pod("database-1")]
    records = {p.name: record(p.name, PodState.SUSPENDED, generation=1) for p in targets}
    intent = Intent(Mode.RESUME, Reason("ResumeRequested"))
    status = build_status(spec(suspend=False), 2, intent, targets, records, ProcessSuspensionStatus(), NOW)
    ready = cond.find(status.conditions, "Ready")
    assert ready is not None and ready.status == "False" and ready.reason == "Resuming"
    assert status.observed_generation == 2
    assert status.summary == "0/2"
    # A resumed outcome tagged with the old generation does not count either.
    records["database-0"] = record("database-0", PodState.RESUMED, Mode.RESUME, generation=1)
    status = build_status(spec(suspend=False), 2, intent, targets, records, status, NOW)
    assert status.summary == "0/2"
    records = {p.name: record(p.name, PodState.RESUMED, Mode.RESUME, generation=2) for p in targets}
    status = build_status(spec(suspend=False), 2, intent, targets, records, status, NOW)
    ready = cond.find(status.conditions, "Ready")
    assert ready is not None and ready.status == "True" and ready.reason == "Resumed"


def test_duration_counts_from_the_first_pod_that_took_effect() -> None:
    """Issue 11, why 7: one pod that never gets there must not keep the others stopped for ever."""
    targets = [pod("database-0"), pod("database-1")]
    failed = record("database-1", PodState.FAILED)
    failed.reason, failed.message = "ExecForbidden", "forbidden"
    records = {"database-0": record("database-0", PodState.SUSPENDED), "database-1": failed}
    status = build_status(
        spec(duration="1h"),
        1,
        Intent(Mode.SUSPEND, Reason("SuspendRequested")),
        targets,
        records,
        ProcessSuspensionStatus(),
        NOW,
    )
    assert status.suspended_at == "2026-11-28T12:00:00Z"
    assert status.expires_at == "2026-11-28T13:00:00Z"


def test_status_stays_small_at_a_thousand_pods_of_ten_processes() -> None:
    """Issue 11, why 7: counts for every pod, a bounded list; far below etcd's 1.5 MiB request limit."""
    targets = [pod(f"database-{i}") for i in range(1000)]
    processes = [ProcessStatus(job=f"job-{j}", process=f"process-{j}", state=ProcessState.STOPPED) for j in range(10)]
    records = {}
    for i, target in enumerate(targets):
        state = PodState.FAILED if i % 100 == 7 else PodState.SUSPENDED
        records[target.name] = record(target.name, state)
        records[target.name].processes = processes
        records[target.name].reason = "ExecTimeout" if state is PodState.FAILED else ""
    status = build_status(
        spec(), 1, Intent(Mode.SUSPEND, Reason("SuspendRequested")), targets, records, ProcessSuspensionStatus(), NOW
    )
    size = len(json.dumps(status.model_dump(by_alias=True, mode="json")))
    assert size < 100_000, size
    assert status.counts is not None
    assert (status.counts.targets, status.counts.done, status.counts.failed) == (1000, 990, 10)
    assert status.counts.failed_by_reason == {"ExecTimeout": 10}
    assert len(status.pods) == MAX_LISTED_PODS
    assert [p.state for p in status.pods[:10]] == [PodState.FAILED] * 10, "those that need attention come first"
    assert status.summary == "990/1000"


def test_pods_being_given_back_are_listed_not_counted() -> None:
    intent = Intent(Mode.SUSPEND, Reason("SuspendRequested"))
    targets = [pod("database-0")]
    records = {
        "database-0": record("database-0", PodState.SUSPENDED),
        "database-1": record("database-1", PodState.RESUMING, Mode.RESUME),
    }
    records["database-1"].targeted = False
    status = build_status(spec(), 1, intent, targets, records, ProcessSuspensionStatus(), NOW)
    assert [(p.name, p.state) for p in status.pods] == [
        ("database-1", PodState.RESUMING),
        ("database-0", PodState.SUSPENDED),
    ]
    assert status.summary == "1/1"
    assert status.counts is not None and status.counts.releasing == 1
    ready = cond.find(status.conditions, "Ready")
    assert ready is not None and ready.status == "True"


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
    assert process_state(mode, SocketResult(result), running, settled) is expected


def test_a_long_failure_message_never_breaks_the_status() -> None:
    """An exec error can quote a whole API answer; the status must still validate (its limit is 4,096)."""
    failed = record("database-0", PodState.FAILED)
    failed.reason, failed.message = "ExecFailed", "x" * 20_000
    status = build_status(
        spec(),
        1,
        Intent(Mode.SUSPEND, Reason("SuspendRequested")),
        [pod("database-0")],
        {"database-0": failed},
        ProcessSuspensionStatus(),
        NOW,
    )
    assert len(status.pods[0].message) <= 1000
    ProcessSuspensionStatus.model_validate(status.model_dump(by_alias=True, mode="json"))


def test_a_duration_never_ends_before_its_time_from_a_first_effect_within_a_second() -> None:
    """Seed 7305: a 6 s suspension's hold was taken at 13:33:02.95 and recorded to the second, rounded down, as
    13:33:02, so it expired at 13:33:08, 5.05 s after its first effect. Rounded up, it ends at most a second late."""
    moment = NOW + timedelta(seconds=2, milliseconds=950)
    assert format_time_up(moment) == format_time(NOW + timedelta(seconds=3))
    assert format_time_up(NOW) == format_time(NOW), "a whole second stays as it is"
    targets = [pod("database-0")]
    held = record("database-0", PodState.SUSPENDED, generation=1)
    held.held_since = moment
    intent = Intent(Mode.SUSPEND, Reason("SuspendRequested"))
    status = build_status(spec(duration="6s"), 1, intent, targets, {"database-0": held}, ProcessSuspensionStatus(), NOW)
    assert status.expires_at is not None
    assert moment + timedelta(seconds=6) <= parse_time(status.expires_at) < moment + timedelta(seconds=7)
    began = NOW + timedelta(seconds=3, milliseconds=400)  # a run seen to begin later than the pod's hold shows
    clamped = build_status(
        spec(duration="6s"), 1, intent, targets, {"database-0": held}, ProcessSuspensionStatus(), NOW, run_began=began
    )
    assert clamped.expires_at is not None and parse_time(clamped.expires_at) >= began + timedelta(seconds=6)
