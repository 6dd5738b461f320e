"""Pod workers and the hold ledger, with real containerrun processes: each case of issue 11's "Why" is here.

The in-memory `World` (conftest.py) stands in for the API server and kopf's indexes; the exec runs the real
in-pod script against real containerrun sockets.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from processcontrol.exceptions import ExecForbidden
from processcontrol.ledger import HOLDS_ANNOTATION
from processcontrol.podexec.transport import Dialogue, ExecResult
from processcontrol.reconcile.outcomes import OutcomeBoard
from processcontrol.reconcile.plan import Mode
from processcontrol.reconcile.runtime import Runtime
from processcontrol.reconcile.suspension import pods_holding

from .conftest import JOBS, NAMESPACE, FakePod, LocalExecutor, World, eventually

World3 = tuple[World, LocalExecutor, Runtime]
MYSQL, AGENT = JOBS


def stopped(pods: dict[str, FakePod], *keys: tuple[str, str]) -> bool:
    return all(not pod.running(*key) for pod in pods.values() for key in keys or JOBS)


def running(pods: dict[str, FakePod], *keys: tuple[str, str]) -> bool:
    return all(pod.running(*key) for pod in pods.values() for key in keys or JOBS)


def state(runtime: Runtime, suspension: str, pod: str) -> str | None:
    record = runtime.board.record(NAMESPACE, suspension, pod)
    return None if record is None else f"{record.mode.value}:{record.state.value}"


async def test_hold_is_written_before_the_stop_and_verified(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    api, executor, runtime = world
    api.suspend("restore")

    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Suspended", "db-0 suspended")
    await eventually(lambda: state(runtime, "restore", "db-1") == "Suspend:Suspended", "db-1 suspended")

    assert stopped(pods)
    for name in pods:
        ledger = api.ledger(name)
        assert set(ledger.holds) == {"uid-restore"}
        assert ledger.holds["uid-restore"].verified_restarts == 0
        assert {key: (e.holders, e.was_running) for key, e in ledger.processes.items()} == {
            "pxc-mysql/mysql": (("uid-restore",), True),
            "pxc-mysql/galera-agent": (("uid-restore",), True),
        }
        assert api.label(name) == "true"
        # One exec: it looked, the ledger was written, and only then did its go-ahead name that write.
        assert executor.actions(name) == ["STOP"]
        order = [(what, seq) for pod, what, seq in api.timeline if pod == name]
        assert order[:3] == [("write", 1), ("go STOP", 1), ("write", 1)], order  # the last: verified
        # The write its exec waits for has the API client's urgent pool; the write after it does not need it.
        assert [urgent for pod, urgent in api.urgent_writes if pod == name][:2] == [True, False]


async def test_deletion_while_a_stop_is_in_flight_leaves_nothing_stopped(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    """Why 1: the STOP still in flight when the suspension is deleted must not land after the START."""
    api, executor, runtime = world
    gate = executor.hold["db-1"] = asyncio.Event()
    api.suspend("restore")
    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Suspended", "db-0 suspended")
    await eventually(lambda: executor.waiting == {"db-1"}, "db-1's first exec waiting")

    api.suspend("restore", deleting=True)
    gate.set()

    await eventually(lambda: not pods_holding(api.dispatch, NAMESPACE, "uid-restore"), "every hold given back")
    await eventually(lambda: running(pods), "every process running again")
    api.forget("restore")  # every hold given back: the finalizer goes, and the object with it
    # The pod workers are the only ones that exec; once every one has ended (nothing held, nothing left to report),
    # a STOP still to land would have landed.
    await eventually(lambda: not api.dispatch.workers, "every pod worker done")
    assert running(pods)
    # Its exec looked, was told nothing (the suspension went meanwhile), and sent nothing.
    assert "STOP" not in executor.actions("db-1"), executor.actions("db-1")
    assert api.annotation("db-0") is None and api.annotation("db-1") is None
    assert api.label("db-0") is None and api.label("db-1") is None


async def test_a_pod_that_leaves_the_selector_is_given_back(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    """Why 2: a failover relabels the old primary; it must run again and lose its label."""
    api, _executor, runtime = world
    for name in pods:
        api.relabel(name, {"role": "primary" if name == "db-0" else "replica"})
    api.suspend("primary", instanceGroup=None, selector={"matchLabels": {"role": "primary"}})
    await eventually(lambda: state(runtime, "primary", "db-0") == "Suspend:Suspended", "primary suspended")
    assert not pods["db-0"].running(*MYSQL)

    api.relabel("db-0", {"role": "replica"})
    api.relabel("db-1", {"role": "primary"})

    await eventually(lambda: pods["db-0"].running(*MYSQL) and pods["db-0"].running(*AGENT), "old primary runs")
    await eventually(lambda: not pods["db-1"].running(*MYSQL), "new primary stopped")
    await eventually(lambda: api.label("db-0") is None, "old primary unlabelled")
    assert api.annotation("db-0") is None
    await eventually(lambda: state(runtime, "primary", "db-0") is None, "old primary no longer reported")
    # Giving back: the write-ahead (releasing) waits its turn, the write the START's go-ahead waits for does not.
    given_back = [urgent for pod, urgent in api.urgent_writes if pod == "db-0"][2:]
    assert given_back == [False, True, False], given_back  # releasing, the START's seq, delivered


async def test_failed_rechecks_keep_the_evidence_and_deletion_waits(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    """Why 3: exec forbidden after the stop: the ledger stays, the finalizer must wait, nothing is dropped."""
    api, executor, runtime = world
    api.suspend("restore")
    await eventually(lambda: state(runtime, "restore", "db-1") == "Suspend:Suspended", "suspended")
    executor.fail["db-1"] = ExecForbidden('pods "db-1" is forbidden: cannot create resource "pods/exec"')
    attempts = len(executor.actions("db-1"))

    api.suspend("restore", deleting=True)

    await eventually(lambda: running(pods_only(pods, "db-0")), "db-0 given back")
    # Not a pause: two failed attempts to give db-1 back, the second made after the first one's failure was seen.
    await eventually(
        lambda: len(executor.actions("db-1")) >= attempts + 2 and state(runtime, "restore", "db-1") == "Resume:Failed",
        "db-1's give-back failed and was retried",
        within=30,
    )
    assert pods_holding(api.dispatch, NAMESPACE, "uid-restore") == ["db-1"]
    assert "uid-restore" in json.loads(api.annotation("db-1") or "{}")["holds"]
    assert state(runtime, "restore", "db-1") == "Resume:Failed"
    assert stopped(pods_only(pods, "db-1"))

    del executor.fail["db-1"]  # the grant comes back
    await eventually(lambda: not pods_holding(api.dispatch, NAMESPACE, "uid-restore"), "db-1 given back", within=20)
    assert running(pods)


async def test_a_suspension_deleted_before_it_held_anything_is_owed_no_exec(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    """An operator that takes over a suspension already being deleted, which holds nothing in its pods (its first
    exec lost its operator before the go-ahead), execs into none of them: a look there would be for a status that
    goes with the object, and on the real node it outlived the deletion (a slow look, still running after it)."""
    api, executor, runtime = world
    api.suspend("restore", deleting=True)
    assert api.dispatch.workers, "the pods' workers started"

    await eventually(lambda: not api.dispatch.workers, "every pod worker done, nothing to do")
    assert executor.calls == [], executor.calls
    assert running(pods)
    assert state(runtime, "restore", "db-0") is None and state(runtime, "restore", "db-1") is None


def pods_only(pods: dict[str, FakePod], name: str) -> dict[str, FakePod]:
    return {name: pods[name]}


async def test_a_process_stopped_by_hand_before_stays_stopped(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    """Why 4: release must not START what this suspension never stopped."""
    api, _executor, runtime = world
    pods["db-0"].send(*AGENT, "STOP")
    await eventually(lambda: not pods["db-0"].running(*AGENT), "agent stopped by hand")

    api.suspend("restore")
    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Suspended", "suspended")
    assert not api.ledger("db-0").processes["pxc-mysql/galera-agent"].was_running

    api.suspend("restore", generation=2, suspend=False)
    await eventually(lambda: state(runtime, "restore", "db-0") == "Resume:Resumed", "resumed")
    await eventually(lambda: state(runtime, "restore", "db-1") == "Resume:Resumed", "resumed")
    assert pods["db-0"].running(*MYSQL)
    assert not pods["db-0"].running(*AGENT), "stopped by hand before the suspension: left stopped"
    assert running(pods_only(pods, "db-1"))
    record = runtime.board.outcomes[(NAMESPACE, "restore")]["db-0"]
    assert record.generation == 2
    assert api.annotation("db-0") is None


async def test_overlap_the_last_hold_to_go_starts_the_process(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    api, _executor, runtime = world
    api.suspend("everything")
    api.suspend("agents", processes=["galera-agent"])
    for name in pods:
        await eventually(lambda n=name: state(runtime, "agents", n) == "Suspend:Suspended", "agents held")  # type: ignore[misc]
        await eventually(lambda n=name: state(runtime, "everything", n) == "Suspend:Suspended", "all held")  # type: ignore[misc]
    assert api.ledger("db-0").processes["pxc-mysql/galera-agent"].holders == ("uid-agents", "uid-everything")
    # Both saw the agent running before the first hold, whichever came first.
    assert api.ledger("db-0").processes["pxc-mysql/galera-agent"].was_running

    api.suspend("everything", generation=2, suspend=False)
    await eventually(lambda: running(pods, MYSQL), "mysql runs once its only hold goes")
    await eventually(lambda: state(runtime, "everything", "db-1") == "Resume:Resumed", "everything resumed")
    assert stopped(pods, AGENT), "the agents suspension still holds the agent"
    assert api.label("db-0") == "true"

    api.forget("agents")  # its finalizer removed by hand: an orphan hold
    await eventually(lambda: running(pods), "the orphan's processes run again")
    await eventually(lambda: api.annotation("db-0") is None and api.label("db-0") is None, "ledger cleared")
    assert any(reason == "OrphanReleased" and "agents" in message for _, reason, message in events)


async def test_a_hold_whose_suspension_the_index_lost_is_kept_while_the_api_server_has_it(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    """Issue 27: an orphan is confirmed by a live read before its START. A suspension the index does not show (a
    watch that lags, an operator just started) but the API server still has keeps its processes stopped."""
    api, _executor, runtime = world
    api.suspend("restore")
    for name in pods:
        await eventually(lambda n=name: state(runtime, "restore", n) == "Suspend:Suspended", "held")  # type: ignore[misc]
    api.unindex("restore")
    # Every worker looks (the wake-up above) and reads the API: give them a few of their backoff rounds.
    await asyncio.sleep(2.0)
    assert stopped(pods, MYSQL) and stopped(pods, AGENT), "a live suspension's processes were started"
    assert "uid-restore" in api.ledger("db-0").holds and not api.ledger("db-0").holds["uid-restore"].releasing
    assert not any(reason == "OrphanReleased" for _, reason, _ in events)

    api.forget("restore")  # now it is gone from the API server too: a real orphan
    await eventually(lambda: running(pods), "the orphan's processes run again")
    await eventually(
        lambda: any(reason == "OrphanReleased" and "restore" in message for _, reason, message in events),
        "the release said in an event",
    )


async def test_a_restarted_container_and_a_new_pod_are_stopped_again(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    api, executor, runtime = world
    api.suspend("restore")
    for name in pods:
        await eventually(lambda n=name: state(runtime, "restore", n) == "Suspend:Suspended", "verified")  # type: ignore[misc]

    pods["db-1"].restart(*MYSQL)
    assert pods["db-1"].running(*MYSQL)
    executor.calls.clear()
    api.restart("db-1")

    await eventually(lambda: not pods["db-1"].running(*MYSQL), "restarted process stopped again")
    assert {pod for pod, _ in executor.calls} == {"db-1"}, f"only the restarted pod is exec'ed into: {executor.calls}"
    assert api.ledger("db-1").processes["pxc-mysql/mysql"].was_running, "the state before the first hold stays"
    await eventually(lambda: any(r == "Resuspended" for _, r, _ in events), "a Resuspended event")


async def test_a_start_sent_by_hand_is_undone_by_the_recheck(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    api, executor, runtime = world
    runtime.settings = runtime.settings.model_copy(update={"reverify_interval_s": 0.5})
    api.suspend("restore")
    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Suspended", "suspended")

    pods["db-0"].send(*MYSQL, "START")
    await eventually(lambda: pods["db-0"].running(*MYSQL), "started by hand")

    await eventually(lambda: not pods["db-0"].running(*MYSQL), "stopped again by the re-check", within=5)
    await eventually(lambda: executor.actions("db-0")[1:3] == ["LOOK", "STOP"], "a look finds it, then a STOP")


async def test_after_an_operator_restart_verified_holds_count_without_an_exec(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    """Why 5 (second half): a restart must not flip verified pods back to Suspending."""
    api, executor, runtime = world
    api.suspend("restore")
    for name in pods:
        await eventually(lambda n=name: state(runtime, "restore", n) == "Suspend:Suspended", "suspended")  # type: ignore[misc]
    await api.dispatch.stop_workers()
    runtime.board = OutcomeBoard()
    executor.calls.clear()

    for name in pods:
        api.dispatch.ensure_worker(NAMESPACE, name)
    for name in pods:
        await eventually(lambda n=name: state(runtime, "restore", n) == "Suspend:Suspended", "known again")  # type: ignore[misc]
    assert executor.calls == [], "a hold verified at the current restart count needs no exec to be believed"


async def test_a_slow_pod_delays_only_itself(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    """Why 6: no round barrier; the hanging pod does not delay the others' suspension or resume."""
    api, executor, runtime = world
    executor.hold["db-1"] = asyncio.Event()
    api.suspend("restore")
    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Suspended", "db-0 suspended")
    api.suspend("restore", generation=2, suspend=False)
    await eventually(lambda: state(runtime, "restore", "db-0") == "Resume:Resumed", "db-0 resumed meanwhile")
    assert running(pods_only(pods, "db-0"))


async def test_a_new_pod_whose_sockets_come_late_is_retried_quickly(
    world: World3,
    pods: dict[str, FakePod],
    events: list[tuple[str, str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Why 6 (second half): the first failed exec of a young pod is retried well under a second later."""
    api, executor, runtime = world
    api.suspend("restore")
    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Suspended", "suspended")
    late = FakePod("db-2", pods["db-0"].base.parent / "db-2")
    executor.pods = {**pods, "db-2": late}
    try:
        api.add_pod("db-2")
        await eventually(lambda: "db-2" in {p for p, _ in executor.calls}, "a first exec into the new pod")
        late.start(*MYSQL)
        loop = asyncio.get_running_loop()
        appeared = loop.time()
        await eventually(lambda: not late.running(*MYSQL), "the late process stopped", within=5)
        assert loop.time() - appeared < 2.0
    finally:
        late.close()


async def test_a_pod_failing_before_its_hold_is_taken_is_retried_with_backoff(
    world: World3,
    pods: dict[str, FakePod],
    events: list[tuple[str, str, str]],
) -> None:
    """No sockets yet, so no hold: the STATUS exec is retried at 0.25 s doubling, never in a tight loop."""
    api, executor, _runtime = world
    empty = FakePod("db-2", pods["db-0"].base.parent / "db-2")
    (empty.base / "data").mkdir(parents=True)
    executor.pods = {**pods, "db-2": empty}
    api.suspend("restore")
    api.add_pod("db-2")
    await eventually(lambda: "db-2" in {p for p, _ in executor.calls}, "a first exec into the new pod")
    await asyncio.sleep(1.5)  # a rate: retries at 0.25, 0.5, 0.5, 0.5 s (failure_backoff_s is 0.5 here)
    assert 2 <= len(executor.actions("db-2")) <= 6, executor.actions("db-2")


async def test_spec_change_outcomes_answer_their_generation(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    """Why 5: an outcome is tagged with the generation it answers; a change of what may change (the reason, the
    duration) keeps the hold as it is."""
    api, executor, runtime = world
    api.suspend("restore")
    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Suspended", "suspended")
    assert runtime.board.outcomes[(NAMESPACE, "restore")]["db-0"].generation == 1
    held = api.ledger("db-0")
    execs = len(executor.actions("db-0"))

    api.suspend("restore", generation=2, reason="restore, OPS-1234")
    await eventually(
        lambda: (
            runtime.board.outcomes[(NAMESPACE, "restore")]["db-0"].generation == 2
            and runtime.board.outcomes[(NAMESPACE, "restore")]["db-0"].mode is Mode.SUSPEND
        ),
        "outcome of generation 2",
    )
    assert stopped(pods, MYSQL)
    assert stopped(pods, AGENT)
    assert api.ledger("db-0") == held
    assert len(executor.actions("db-0")) == execs, "a new generation of a verified hold costs no exec"


async def test_an_unreadable_ledger_is_reported_and_left_alone(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    api, executor, runtime = world
    api.pods["db-0"]["metadata"]["annotations"] = {HOLDS_ANNOTATION: "{not json"}
    api.suspend("restore")
    await eventually(lambda: state(runtime, "restore", "db-0") == "Suspend:Failed", "db-0 failed")
    record = runtime.board.outcomes[(NAMESPACE, "restore")]["db-0"]
    assert record.reason == "LedgerUnreadable"
    assert "processcontrol.dev/holds" in record.message
    assert running(pods_only(pods, "db-0")), "nothing is done to a pod whose ledger cannot be read"
    assert executor.actions("db-0") == []


async def test_a_re_check_waiting_for_an_exec_slot_gives_way_to_the_release(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    """At 10,000 pods the re-checks of settled holds filled the exec queue, and each pod's worker sat in its own
    queued re-check when the suspension was deleted: its release began only once that look had run, so the STARTs
    waited behind 7,000 looks that sent nothing. A re-check gives way to what wakes its worker."""
    api, executor, runtime = world
    runtime.settings = runtime.settings.model_copy(update={"reverify_interval_s": 0.1})
    api.suspend("restore")
    for name in pods:
        await eventually(lambda n=name: state(runtime, "restore", n) == "Suspend:Suspended", "suspended")  # type: ignore[misc]
    gate = executor.hold["db-0"] = asyncio.Event()  # db-0's execs wait for a slot until the gate opens
    await eventually(lambda: "db-0" in executor.waiting, "db-0's re-check waits for an exec slot")
    api.suspend("restore", deleting=True)
    await eventually(
        lambda: api.ledger("db-0").holds["uid-restore"].releasing, "db-0's release begun while its slot is taken"
    )
    assert stopped(pods_only(pods, "db-0")), "nothing was sent to db-0 yet"
    gate.set()
    await eventually(lambda: not pods_holding(api.dispatch, NAMESPACE, "uid-restore"), "every hold given back")
    assert running(pods)
    assert executor.actions("db-0").count("START") == 1, executor.actions("db-0")


async def test_stop_workers_ends_a_worker_that_lost_its_cancellation(
    world: World3, pods: dict[str, FakePod], events: list[tuple[str, str, str]]
) -> None:
    """Python 3.11's wait_for returns the result when a cancellation comes as what it waits for ends. The exec
    transport awaited through it: a worker cancelled at shutdown ran on, re-checking its pod, the operator never
    exited after its SIGTERM, and its standby waited out the Lease. A worker whose exec loses the cancellation
    this way still ends."""
    api, executor, runtime = world
    runtime.settings = runtime.settings.model_copy(update={"reverify_interval_s": 0.1})
    api.suspend("restore")
    for name in pods:
        await eventually(lambda n=name: state(runtime, "restore", n) == "Suspend:Suspended", "suspended")  # type: ignore[misc]
    gate = executor.hold["db-0"] = asyncio.Event()
    run = executor.run
    lost: list[str] = []

    async def run_losing_a_cancellation(
        namespace: str,
        pod: str,
        container: str,
        command: list[str],
        dialogue: Dialogue | None = None,
        *,
        background: bool = False,
    ) -> ExecResult:
        try:
            return await run(namespace, pod, container, command, dialogue, background=background)
        except asyncio.CancelledError:
            lost.append(pod)  # as wait_for did: the exec ended as the cancellation came, its result is returned
            gate.set()
            return await run(namespace, pod, container, command, dialogue, background=background)

    executor.run = run_losing_a_cancellation  # type: ignore[method-assign]
    await eventually(lambda: "db-0" in executor.waiting, "db-0's re-check waits in its exec")
    async with asyncio.timeout(10):
        await api.dispatch.stop_workers()
    assert lost == ["db-0"], "the cancellation came while the exec ran"
    assert api.dispatch.workers == {}
