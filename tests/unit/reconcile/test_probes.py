"""Probes a suspension makes fail: what is found in a pod, and what the pod worker does with each policy.

The worker cases use real containerrun processes and the in-memory API of conftest.py; the pod's mysql container
(`pxc-mysql-mysql`, kubecf's name for pxc-mysql/mysql) gets a liveness probe, galera-agent runs unprobed.
"""

from __future__ import annotations

from typing import Any

import pytest

from processcontrol.probes import (
    ContainerProcess,
    PodProbes,
    container_probes,
    container_processes,
    kubelet_reason,
    pod_probes,
)
from processcontrol.reconcile.plan import Mode
from processcontrol.reconcile.runtime import Runtime

from .conftest import CONTAINER, JOBS, NAMESPACE, FakePod, LocalExecutor, World, eventually

World3 = tuple[World, LocalExecutor, Runtime]
MYSQL, AGENT = JOBS
LIVENESS = {"exec": {"command": ["test", "-f", "/var/vcap/data/pxc-mysql/mysql_containerrun.running"]}}
DESCRIBED = f"{CONTAINER}: livenessProbe exec test -f /var/vcap/data/pxc-mysql/mysql_containerrun.running"


# --- what a pod says -------------------------------------------------------------------------------------------


def test_each_kind_of_restarting_probe_is_described() -> None:
    containers = [
        {"name": "a", "livenessProbe": {"httpGet": {"port": 8080, "path": "/healthz"}}},
        {"name": "b", "startupProbe": {"tcpSocket": {"port": "http"}}},
        {"name": "c", "livenessProbe": {"grpc": {"port": 9000}}},
        {"name": "d", "readinessProbe": {"httpGet": {"port": 80}}},  # only takes the pod out of Services
        {"name": "e", "livenessProbe": LIVENESS},
    ]
    assert [p.describe() for p in container_probes(containers)] == [
        "a: livenessProbe httpGet :8080/healthz",
        "b: startupProbe tcpSocket :http",
        "c: livenessProbe grpc :9000",
        "e: livenessProbe exec test -f /var/vcap/data/pxc-mysql/mysql_containerrun.running",
    ]


def test_the_process_of_a_container_comes_from_containerruns_arguments() -> None:
    containers = [
        {"name": "x", "command": ["/usr/bin/dumb-init", "--"], "args": ["containerrun", "--job-name", "api"]},
        {"name": "y", "args": ["containerrun", "--job-name=cc", "--process-name=worker", "--", "run"]},
        # After `--` is the child's command line, not containerrun's options.
        {"name": "z", "args": ["containerrun", "--job-name", "j", "--", "p", "--process-name", "q"]},
    ]
    assert container_processes(containers) == (ContainerProcess("y", "cc", "worker"),)


def test_a_process_maps_to_its_container_by_arguments_then_by_kubecf_name() -> None:
    probes = PodProbes(
        containers=("runs-it", "pxc-mysql-galera-agent", "cloud-controller-ng-ccng"),
        processes=(ContainerProcess("runs-it", "pxc-mysql", "mysql"),),
    )
    assert probes.container_of("pxc-mysql", "mysql") == "runs-it"
    assert probes.container_of("pxc-mysql", "galera-agent") == "pxc-mysql-galera-agent"
    assert probes.container_of("cloud_controller_ng", "ccng") == "cloud-controller-ng-ccng"
    assert probes.container_of("pxc-mysql", "other") is None


def test_conflicts_are_the_probes_of_the_targeted_processes_containers() -> None:
    probes = pod_probes(
        {
            "containers": [
                {"name": CONTAINER, "livenessProbe": LIVENESS},
                {"name": "pxc-mysql-galera-agent"},
                {"name": "logs", "livenessProbe": {"tcpSocket": {"port": 1}}},
            ]
        },
        {"containerStatuses": [{"name": CONTAINER, "restartCount": 4}]},
    )
    assert [p.describe() for p in probes.conflicts(JOBS)] == [DESCRIBED]
    assert probes.conflicts([AGENT]) == ()
    assert probes.probed(JOBS) == [MYSQL]
    assert probes.restarts_of(CONTAINER) == 4 and probes.restarts_of("logs") == 0


def _event(reason: str, container: str, message: str, at: str) -> dict[str, Any]:
    return {
        "reason": reason,
        "message": message,
        "lastTimestamp": at,
        "involvedObject": {"fieldPath": f"spec.containers{{{container}}}"},
    }


def test_the_kubelets_reason_is_its_latest_probe_failure_of_that_container() -> None:
    events = [
        _event("Unhealthy", CONTAINER, "Liveness probe failed: old", "2026-11-30T10:00:00Z"),
        _event("Killing", CONTAINER, f"Container {CONTAINER} failed liveness probe, will be restarted", "10:00:01"),
        _event("Unhealthy", "other", "Liveness probe failed: not this one", "2026-11-30T10:00:09Z"),
        _event("Unhealthy", CONTAINER, "Liveness probe failed: new", "2026-11-30T10:00:05Z"),
    ]
    assert kubelet_reason(events, CONTAINER) == "Liveness probe failed: new"
    assert kubelet_reason(events[1:2], CONTAINER).endswith("failed liveness probe, will be restarted")
    assert kubelet_reason([], CONTAINER) == ""


# --- what the pod worker does ------------------------------------------------------------------------------------


def probe_pods(api: World) -> None:
    """Give every pod's mysql container a liveness probe (pods are created with it: probes are immutable)."""
    for body in api.pods.values():
        body["spec"]["containers"][0]["livenessProbe"] = LIVENESS


def record_of(runtime: Runtime, pod: str) -> Any:
    return runtime.board.record(NAMESPACE, "restore", pod)


def state_of(runtime: Runtime, pod: str) -> str | None:
    record = record_of(runtime, pod)
    return None if record is None else str(record.state.value)


@pytest.fixture
def patient(world: World3) -> World3:
    """The worker waits as long as needed for the status to show a conflict: the test plays the status daemon."""
    api, executor, runtime = world
    runtime.settings = runtime.settings.model_copy(update={"probe_notice_timeout_s": 60})
    probe_pods(api)
    return api, executor, runtime


async def test_warn_shows_the_conflict_before_the_first_stop(
    patient: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    api, executor, runtime = patient
    api.suspend("restore")

    await eventually(lambda: bool(getattr(record_of(runtime, "db-0"), "probe_conflicts", ())), "conflict published")
    record = record_of(runtime, "db-0")
    assert record.probe_conflicts == (DESCRIBED,)
    assert ("restore", "ProbeConflict") in {(name, reason) for name, reason, _ in events}
    # Until a status showing it is written, no STOP goes out and everything runs.
    assert executor.actions("db-0") == ["LOOK"]
    assert pods["db-0"].running(*MYSQL) and pods["db-0"].running(*AGENT)

    runtime.board.status_shown(NAMESPACE, "restore", runtime.board.outcomes[(NAMESPACE, "restore")])
    await eventually(lambda: not pods["db-0"].running(*MYSQL) and not pods["db-0"].running(*AGENT), "stopped")
    await eventually(lambda: state_of(runtime, "db-0") == "Suspended", "db-0 suspended")
    assert record_of(runtime, "db-0").probe_conflicts == (DESCRIBED,)
    assert api.ledger("db-0").holds["uid-restore"].restart_base == {CONTAINER: 0}


async def test_warn_goes_on_when_no_status_is_written_in_time(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    """No status daemon answers (the API refuses the write): the event said it; the suspension is not blocked."""
    api, _executor, runtime = world
    runtime.settings = runtime.settings.model_copy(update={"probe_notice_timeout_s": 0.2})
    probe_pods(api)
    api.suspend("restore")
    await eventually(lambda: not pods["db-0"].running(*MYSQL), "stopped after the notice timeout")
    assert any(reason == "ProbeConflict" for _, reason, _ in events)


async def test_skip_leaves_the_probed_process_running_and_gives_back_the_rest(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    api, executor, runtime = world
    probe_pods(api)
    api.suspend("restore", probes="Skip")

    for name in pods:
        await eventually(lambda n=name: state_of(runtime, n) == "Suspended", f"{name} suspended")  # type: ignore[misc]
    for name, pod in pods.items():
        assert pod.running(*MYSQL), f"{name}: the probed process was stopped"
        assert not pod.running(*AGENT)
        assert api.ledger(name).holds["uid-restore"].skipped == ("pxc-mysql/mysql",)
        assert set(api.ledger(name).processes) == {"pxc-mysql/galera-agent"}
        assert "left running (probes: Skip): pxc-mysql/mysql" in record_of(runtime, name).message
        assert record_of(runtime, name).probe_conflicts == (DESCRIBED,)

    # A restart of the probed container is not the suspension's business: nothing is stopped again.
    executor.calls.clear()
    pods["db-0"].restart(*MYSQL)
    api.restart("db-0")
    await eventually(lambda: bool(executor.actions("db-0")), "the restart looked at")
    await eventually(lambda: state_of(runtime, "db-0") == "Suspended", "still suspended")
    assert pods["db-0"].running(*MYSQL), "a STOP goes to the held processes only, never to the skipped one"

    api.suspend("restore", deleting=True, probes="Skip")
    await eventually(lambda: all(p.running(*AGENT) for p in pods.values()), "given back")
    assert all(p.running(*MYSQL) for p in pods.values()), ({n: p.all_running() for n, p in pods.items()}, events)


async def test_a_hand_over_to_a_skip_suspension_still_leaves_the_probed_process_running(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    """The promise soak's rename (s3 applied, s0 pruned; both probes: Skip): s3 joined s0's holds with no exec
    (the hand-over), so its first STOP never went through its probe policy, and stopped the probed process."""
    api, _executor, runtime = world
    probe_pods(api)
    api.suspend("restore", probes="Skip")
    for name in pods:
        await eventually(lambda n=name: state_of(runtime, n) == "Suspended", f"{name} suspended")  # type: ignore[misc]
    api.suspend("renamed", probes="Skip")
    api.suspend("restore", deleting=True, probes="Skip")

    def held_by_renamed(name: str) -> bool:
        record = runtime.board.outcomes.get((NAMESPACE, "renamed"), {}).get(name)
        return record is not None and record.state.value == "Suspended" and "uid-restore" not in api.ledger(name).holds

    for name in pods:
        await eventually(lambda n=name: held_by_renamed(n), f"{name} held by renamed alone")  # type: ignore[misc]
    for name, pod in pods.items():
        assert not pod.running(*AGENT)
        assert pod.running(*MYSQL), f"{name}: the probed process was stopped"
        assert set(api.ledger(name).processes) == {"pxc-mysql/galera-agent"}, api.ledger(name)


async def test_a_hand_over_to_a_refuse_suspension_leaves_it_to_its_own_look(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    """A suspension with probes: Refuse stops nothing in a pod whose probed container it selects: it may not take
    over, with no look, what a leaving Skip hold keeps stopped there either (its own look refuses the pod)."""
    api, _executor, runtime = world
    runtime.settings = runtime.settings.model_copy(update={"probe_notice_timeout_s": 0.1})  # no status daemon here
    probe_pods(api)
    api.suspend("restore", probes="Skip")
    for name in pods:
        await eventually(lambda n=name: state_of(runtime, n) == "Suspended", f"{name} suspended")  # type: ignore[misc]
    api.suspend("strict", probes="Refuse")
    api.suspend("restore", deleting=True, probes="Skip")

    def refused(name: str) -> bool:
        record = runtime.board.outcomes.get((NAMESPACE, "strict"), {}).get(name)
        return record is not None and record.reason == "ProbeConflict"

    await eventually(lambda: all(p.running(*k) for p in pods.values() for k in JOBS), "every process running again")
    for name in pods:
        await eventually(lambda n=name: refused(n), f"{name}: refused by its own look")  # type: ignore[misc]
        assert api.annotation(name) is None
        assert pods[name].running(*MYSQL) and pods[name].running(*AGENT)


async def test_refuse_stops_nothing_in_the_pod_until_the_user_decides(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    api, executor, runtime = world
    runtime.settings = runtime.settings.model_copy(update={"probe_notice_timeout_s": 0.1})  # no status daemon here
    probe_pods(api)
    api.suspend("restore", probes="Refuse")

    await eventually(lambda: state_of(runtime, "db-0") == "Failed", "refused")
    record = record_of(runtime, "db-0")
    assert record.reason == "ProbeConflict" and record.probe_conflicts == (DESCRIBED,)
    assert "nothing stopped (probes: Refuse)" in record.message
    assert "STOP" not in executor.actions("db-0") and api.annotation("db-0") is None
    assert pods["db-0"].running(*MYSQL) and pods["db-0"].running(*AGENT)
    statuses = len(executor.actions("db-0"))

    # Retries of a refused pod cost no exec while nothing changes.
    api.dispatch.ensure_worker(NAMESPACE, "db-0")
    await eventually(lambda: bool(api.dispatch.workers[(NAMESPACE, "db-0")].holding.refused), "refusal remembered")
    assert len(executor.actions("db-0")) == statuses

    api.suspend("restore", generation=2, probes="Warn")
    await eventually(lambda: not pods["db-0"].running(*MYSQL) and not pods["db-0"].running(*AGENT), "stopped")


async def test_restarts_of_a_held_container_are_counted_and_a_loop_is_reported_once(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    api, _executor, runtime = world
    runtime.settings = runtime.settings.model_copy(
        update={"probe_notice_timeout_s": 0.1, "restart_loop_restarts": 3, "restart_loop_window_s": 600}
    )
    probe_pods(api)
    api.events = [_event("Unhealthy", CONTAINER, "Liveness probe failed: ", "2026-11-30T10:00:00Z")]
    api.suspend("restore")
    await eventually(lambda: state_of(runtime, "db-1") == "Suspended", "suspended")

    for restart in range(1, 4):
        pods["db-1"].restart(*MYSQL)
        api.restart("db-1")
        await eventually(lambda r=restart: record_of(runtime, "db-1").restarts == r, f"restart {restart} counted")  # type: ignore[misc]
        await eventually(lambda: not pods["db-1"].running(*MYSQL), "stopped again")
        if restart < 3:
            assert record_of(runtime, "db-1").restart_loop == ""

    await eventually(lambda: record_of(runtime, "db-1").restart_loop != "", "loop reported")
    loop = record_of(runtime, "db-1").restart_loop
    assert f"container {CONTAINER} restarted 3 times" in loop and "Liveness probe failed" in loop
    pods["db-1"].restart(*MYSQL)
    api.restart("db-1")
    await eventually(lambda: record_of(runtime, "db-1").restarts == 4, "restart 4 counted")
    assert [reason for _, reason, _ in events].count("RestartLoop") == 1
    assert record_of(runtime, "db-0").restarts == 0 and record_of(runtime, "db-0").restart_loop == ""
    assert record_of(runtime, "db-1").mode is Mode.SUSPEND
