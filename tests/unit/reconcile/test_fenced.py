"""Fenced transitions (issue 22): every STOP and START tied to the ledger entry that asked for it, in one exec.

Each numbered case of the issue's "Why" is brought about here on real containerrun processes, with only the
Kubernetes API in memory (conftest.py), and each fails on the code before that issue.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import REGISTRY

from processcontrol.api import ProcessSuspensionStatus
from processcontrol.api.reasons import Reason
from processcontrol.api.timestamps import format_time, parse_time
from processcontrol.exceptions import ApiError
from processcontrol.ledger import HOLDS_ANNOTATION, LEDGER_VERSION
from processcontrol.reconcile.plan import Intent, Mode, PodRecord, build_status
from processcontrol.reconcile.runtime import Runtime
from processcontrol.reconcile.suspension import pods_holding
from processcontrol.targets import PodInfo

from .conftest import JOBS, NAMESPACE, FakePod, LocalExecutor, World, eventually

World3 = tuple[World, LocalExecutor, Runtime]
MYSQL, AGENT = JOBS
Events = list[tuple[str, str, str]]


def state(runtime: Runtime, suspension: str, pod: str) -> str | None:
    record = runtime.board.record(NAMESPACE, suspension, pod)
    return None if record is None else f"{record.mode.value}:{record.state.value}"


def record(runtime: Runtime, suspension: str, pod: str) -> PodRecord | None:
    return runtime.board.record(NAMESPACE, suspension, pod)


def everything_runs(pods: dict[str, FakePod]) -> bool:
    return all(pod.running(*key) for pod in pods.values() for key in JOBS)


async def suspended(api: World, runtime: Runtime, name: str = "restore", **spec: Any) -> None:
    api.suspend(name, **spec)
    for pod in ("db-0", "db-1"):
        await eventually(lambda p=pod: state(runtime, name, p) == "Suspend:Suspended", f"{pod} suspended")  # type: ignore[misc]


async def released(api: World, runtime: Runtime, name: str = "restore") -> None:
    """Deleted, and the finalizer gone once no pod holds anything for it (what release_on_delete waits for)."""
    api.suspend(name, deleting=True)
    await eventually(lambda: not pods_holding(api.dispatch, NAMESPACE, f"uid-{name}"), "every hold given back")
    api.forget(name)


def fill_queue(pod: FakePod, job: str, process: str) -> socket.socket:
    """Freeze the containerrun and fill its socket's receive queue: a send to it times out (EAGAIN)."""
    os.kill(pod.runners[(job, process)].pid, signal.SIGSTOP)
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setblocking(False)
    sender.connect(str(pod.base / "data" / job / f"{process}_containerrun.sock"))
    try:
        while True:
            sender.send(b"NOOP\n")
    except BlockingIOError:
        pass
    return sender


def thaw(pod: FakePod, job: str, process: str) -> None:
    os.kill(pod.runners[(job, process)].pid, signal.SIGCONT)


async def test_1_a_start_that_is_not_delivered_is_sent_again_until_it_is(
    world: World3, pods: dict[str, FakePod], events: Events
) -> None:
    api, _executor, runtime = world
    await suspended(api, runtime)
    blocked = fill_queue(pods["db-0"], *MYSQL)
    try:
        api.suspend("restore", deleting=True)
        await eventually(
            lambda: getattr(record(runtime, "restore", "db-0"), "reason", "") == "StartUndelivered", "shown"
        )
        assert pods_holding(api.dispatch, NAMESPACE, "uid-restore") == ["db-0"], "the finalizer stays"
        assert api.ledger("db-0").processes["pxc-mysql/mysql"].holders == ("uid-restore",)
        assert api.label("db-0") == "true"
        assert any(name == "db-0" and reason == "StartUndelivered" for name, reason, _ in events), "an event on the pod"
    finally:
        thaw(pods["db-0"], *MYSQL)
        blocked.close()
    await eventually(
        lambda: not pods_holding(api.dispatch, NAMESPACE, "uid-restore"), "given back once it could be sent"
    )
    await eventually(lambda: everything_runs(pods), "every process running again")
    assert api.annotation("db-0") is None and api.label("db-0") is None


async def test_2_a_start_delivered_but_not_recorded_is_not_believed_when_suspend_comes_back(
    world: World3, pods: dict[str, FakePod], events: Events
) -> None:
    api, executor, runtime = world
    await suspended(api, runtime)

    def fail_after_the_start(pod: str) -> None:
        if pod == "db-0" and any(p == "db-0" and what == "go START" for p, what, _ in api.timeline):
            raise ApiError("the operator died after its START: nothing more is written")

    api.before_write = fail_after_the_start
    api.suspend("restore", suspend=False, generation=2)
    await eventually(lambda: pods["db-0"].running(*MYSQL) and pods["db-0"].running(*AGENT), "started, not recorded")
    assert api.ledger("db-0").holds["uid-restore"].releasing, "the START's write-ahead is on the pod"
    api.before_write = None

    api.suspend("restore", suspend=True, generation=3)
    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Suspended", "suspended again")
    assert not pods["db-0"].running(*MYSQL) and not pods["db-0"].running(*AGENT), "Suspended means stopped"
    actions = executor.actions("db-0")
    assert "STOP" in actions[actions.index("START") :], f"a new STOP, not belief: {actions}"


async def test_a_go_ahead_past_its_window_sends_nothing_is_counted_and_sent_again(
    world: World3, pods: dict[str, FakePod], events: Events
) -> None:
    """An overloaded API server: the ledger write a START's go-ahead waits for takes longer than the script's
    window. That script sends nothing, the metric counts it, and the START goes out in a new exec."""
    api, executor, runtime = world
    runtime.settings = runtime.settings.model_copy(update={"go_ahead_window_s": 0.5})
    await suspended(api, runtime)
    late_before = REGISTRY.get_sample_value("processcontrol_go_aheads_late_total") or 0.0
    api.slow_urgent_writes["db-0"] = 1.5
    await released(api, runtime)
    await eventually(lambda: everything_runs(pods), "every process running again")
    assert REGISTRY.get_sample_value("processcontrol_go_aheads_late_total") == late_before + 1
    assert executor.actions("db-0").count("START") == 2, executor.actions("db-0")
    assert executor.actions("db-1").count("START") == 1, executor.actions("db-1")
    assert api.annotation("db-0") is None


async def test_3_an_exec_that_timed_out_never_acts_late(
    world: World3, pods: dict[str, FakePod], events: Events
) -> None:
    api, executor, runtime = world
    runtime.settings = runtime.settings.model_copy(update={"go_ahead_window_s": 1.0})
    executor.late["db-0"] = 0.5  # the first exec into db-0 times out; its command starts in the pod later
    api.suspend("restore")
    await eventually(lambda: "TIMEOUT" in executor.actions("db-0"), "the first exec timed out")
    await released(api, runtime)  # released while the late exec is on its way
    await eventually(lambda: all(t.done() for t in executor.stragglers), "the late exec ended", within=10)
    assert everything_runs(pods), "the late exec sent nothing: no process stays stopped"
    assert api.annotation("db-0") is None


async def test_4_a_stop_into_a_pod_replaced_under_its_name_is_recorded_there(
    world: World3, pods: dict[str, FakePod], events: Events
) -> None:
    api, _executor, runtime = world

    def replace_after_the_hold(pod: str) -> None:
        if pod == "db-0" and api.ledger("db-0").holds:
            api.on_write = None
            api.recreate("db-0")  # a StatefulSet pod deleted and created again; its exec reaches the new one

    api.on_write = replace_after_the_hold
    api.suspend("restore")
    await eventually(lambda: api.pods["db-0"]["metadata"]["uid"] != "uid-db-0", "db-0 re-created")
    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Suspended", "the new db-0 suspended")
    ledger = api.ledger("db-0")
    assert ledger.processes["pxc-mysql/mysql"].was_running, "the STOP that may have landed here counts as ours"
    await released(api, runtime)
    await eventually(lambda: everything_runs(pods), "every process running again")


async def test_5_a_ledger_removed_by_hand_is_written_back(
    world: World3, pods: dict[str, FakePod], events: Events
) -> None:
    api, _executor, runtime = world
    await suspended(api, runtime)
    api.edit_annotations("db-0", {HOLDS_ANNOTATION: None})
    await eventually(lambda: api.annotation("db-0") is not None, "written back")
    assert any(name == "db-0" and reason == "LedgerRestored" for name, reason, _ in events)
    assert api.ledger("db-0").processes["pxc-mysql/mysql"].was_running
    await released(api, runtime)
    await eventually(lambda: everything_runs(pods), "every process running again")


async def test_5_a_ledger_lost_across_an_operator_restart_counts_what_is_stopped_as_ours(
    world: World3, pods: dict[str, FakePod], events: Events
) -> None:
    api, _executor, runtime = world
    await suspended(api, runtime)
    await api.dispatch.stop_workers()  # the operator restarts: nothing of its memory survives
    api.dispatch.workers.clear()
    api.pods["db-0"]["metadata"]["annotations"].pop(HOLDS_ANNOTATION)  # lost meanwhile; the label stays
    api.changed("db-0")
    api.dispatch.wake_pods_of(api.suspensions["restore"], NAMESPACE)
    await eventually(lambda: api.annotation("db-0") is not None, "held again")
    assert api.ledger("db-0").processes["pxc-mysql/mysql"].was_running, "its own STOP is not a stop by hand"
    await released(api, runtime)
    await eventually(lambda: everything_runs(pods), "every process running again")


async def test_6_a_hand_over_never_runs_the_process(world: World3, pods: dict[str, FakePod], events: Events) -> None:
    api, executor, runtime = world
    await suspended(api, runtime, "old")
    pids = {name: pod.runners[MYSQL].pid for name, pod in pods.items()}
    executor.calls.clear()
    # A rename in Git: the new object appears as the old one is deleted.
    api.suspend("new")
    api.suspend("old", deleting=True)
    for pod in ("db-0", "db-1"):
        await eventually(lambda p=pod: state(runtime, "new", p) == "Suspend:Suspended", f"{pod} held by new")  # type: ignore[misc]
    await eventually(lambda: not pods_holding(api.dispatch, NAMESPACE, "uid-old"), "old gave back")
    assert all(action != "START" for _, action in executor.calls), executor.calls
    assert all(not pod.running(*MYSQL) for pod in pods.values())
    assert pids == {name: pod.runners[MYSQL].pid for name, pod in pods.items()}, "no containerrun restarted"


async def test_7_a_duration_runs_from_the_first_hold_even_if_no_pod_verifies(
    world: World3, pods: dict[str, FakePod], events: Events
) -> None:
    api, _executor, runtime = world
    runtime.settings = runtime.settings.model_copy(update={"verify_timeout_s": 0.5, "in_pod_wait_s": 0.2})
    os.kill(pods["db-0"].runners[MYSQL].pid, signal.SIGSTOP)  # its STOP is never carried out
    try:
        api.suspend("restore", duration="1h")
        await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Failed", "db-0 never verifies")
        failed = record(runtime, "restore", "db-0")
        assert failed is not None and failed.held_since is not None, "the hold was written: the duration runs"
        spec = api.suspensions["restore"].spec
        assert spec is not None
        status = build_status(
            spec,
            1,
            Intent(Mode.SUSPEND, Reason.SUSPEND_REQUESTED),
            [PodInfo(NAMESPACE, "db-0", "uid-db-0", {}, "Running", False, ("c",), ("c",))],
            {"db-0": failed},
            ProcessSuspensionStatus(),
            datetime.now(UTC),
        )
        assert status.suspended_at == format_time(failed.held_since)
        assert status.expires_at is not None
        assert parse_time(status.expires_at) - failed.held_since == timedelta(hours=1)
    finally:
        os.kill(pods["db-0"].runners[MYSQL].pid, signal.SIGCONT)


async def test_8_a_ledger_with_fields_from_a_newer_operator_is_still_given_back(
    world: World3, pods: dict[str, FakePod], events: Events
) -> None:
    api, _executor, runtime = world
    await suspended(api, runtime)
    raw = json.loads(api.annotation("db-0") or "{}")
    raw["writer"] = {"build": 3}
    raw["holds"]["uid-restore"]["phases"] = ["agents", "db"]
    api.edit_annotations("db-0", {HOLDS_ANNOTATION: json.dumps(raw)})
    await released(api, runtime)
    await eventually(lambda: everything_runs(pods), "every process running again")


async def test_8_a_newer_ledger_format_is_left_alone_and_said_why(
    world: World3, pods: dict[str, FakePod], events: Events
) -> None:
    api, executor, runtime = world
    newer = {"v": LEDGER_VERSION + 1, "whatever": {}}
    api.edit_annotations("db-0", {HOLDS_ANNOTATION: json.dumps(newer)})
    api.suspend("restore")
    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Failed", "db-0 refused")
    assert getattr(record(runtime, "restore", "db-0"), "reason", "") == "LedgerTooNew"
    assert any(name == "db-0" and reason == "LedgerTooNew" for name, reason, _ in events)
    assert executor.actions("db-0") == [] and pods["db-0"].running(*MYSQL)
    assert json.loads(api.annotation("db-0") or "{}") == newer, "left as it was"


async def test_9_a_new_socket_is_recorded_before_it_is_stopped(
    world: World3, pods: dict[str, FakePod], events: Events
) -> None:
    api, executor, runtime = world
    await suspended(api, runtime)
    extra = ("pxc-mysql", "backup")
    api.refuse_writes.add("db-0")  # the ledger cannot be written while the new socket appears
    executor.calls.clear()
    pods["db-0"].start(*extra)
    api.restart("db-0")
    await eventually(lambda: "LOOK" in executor.actions("db-0"), "db-0 looked, and could not write")
    await asyncio.sleep(0.5)
    assert pods["db-0"].running(*extra), "not stopped while it could not be written down"
    api.refuse_writes.clear()
    await eventually(lambda: not pods["db-0"].running(*extra), "stopped once recorded")
    writes = [i for i, (p, what, _) in enumerate(api.timeline) if p == "db-0" and what == "write"]
    assert "pxc-mysql/backup" in api.ledger("db-0").processes
    assert writes, "written before"
    await released(api, runtime)
    await eventually(lambda: everything_runs(pods) and pods["db-0"].running(*extra), "every process running again")


async def test_a_terminating_pod_is_left_alone_and_holds_nothing(
    world: World3, pods: dict[str, FakePod], events: Events
) -> None:
    api, executor, runtime = world
    await suspended(api, runtime)
    executor.calls.clear()
    api.terminate("db-0")
    api.suspend("restore", deleting=True)
    await eventually(lambda: not pods_holding(api.dispatch, NAMESPACE, "uid-restore"), "the deletion can complete")
    await eventually(lambda: pods["db-1"].running(*MYSQL), "the other pod given back")
    await asyncio.sleep(0.3)
    assert executor.actions("db-0") == [], "no START into a pod being deleted"
    assert not pods["db-0"].running(*MYSQL)


async def test_every_go_ahead_names_the_ledger_write_just_before_it(
    world: World3, pods: dict[str, FakePod], events: Events
) -> None:
    """Case 10's groundwork: each exec carries what it was decided from (the ledger's seq)."""
    api, _executor, runtime = world
    await suspended(api, runtime)
    await released(api, runtime)
    await eventually(lambda: everything_runs(pods), "every process running again")
    for pod in ("db-0", "db-1"):
        mine = [(what, seq) for p, what, seq in api.timeline if p == pod]
        for index, (what, seq) in enumerate(mine):
            if what.startswith("go "):
                assert mine[index - 1] == ("write", seq), mine
