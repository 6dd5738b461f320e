"""Leader election and its fence (issue 24), against an in-memory Lease API that honours resourceVersion as the API
server does, and, for what a worker does with it, the in-memory world of conftest.py with real containerrun
processes. Lease durations are a fraction of a second; the tests assert what happens, and in which order, never
how fast."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from processcontrol.exceptions import ApiError, Conflict, NotFound
from processcontrol.ledger import HOLDS_ANNOTATION
from processcontrol.reconcile.dispatch import Dispatch
from processcontrol.reconcile.leader import EPOCH_ANNOTATION, Leadership, LeaseRecord, State
from processcontrol.reconcile.runtime import Runtime
from processcontrol.settings import ProcessControlSettings

from .conftest import JOBS, NAMESPACE, FakePod, LocalExecutor, World, eventually

LEASE = ("processcontrol-system", "processcontrol")
# Short enough for a test, long against the event loop's own delays.
LEASE_DURATION_S, RENEW_DEADLINE_S, RETRY_PERIOD_S = 0.6, 0.4, 0.05


class FakeLeases:
    """Leases in memory: create fails when one exists, replace when the resourceVersion is not the current one.
    `down` makes every call of the named holder fail (a partition); `pause` makes them wait (a frozen process)."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.writes: list[tuple[str, int]] = []  # (holder, epoch) of every successful write

    def _stored(self, body: Mapping[str, Any]) -> dict[str, Any]:
        self.version += 1
        stored = copy.deepcopy(dict(body))
        stored["metadata"]["resourceVersion"] = str(self.version)
        stored["metadata"].setdefault("uid", "lease-uid")
        record = LeaseRecord.of(stored)
        self.writes.append((record.holder, record.epoch))
        return stored

    def client(self, who: str) -> Client:
        return Client(self, who)


class Client:
    """One replica's view of the Lease API."""

    def __init__(self, leases: FakeLeases, who: str) -> None:
        self.leases = leases
        self.who = who
        self.down = False
        self.paused: asyncio.Event | None = None

    async def _gate(self) -> None:
        if self.paused is not None:
            await self.paused.wait()
        if self.down:
            raise ApiError(f"{self.who}: cannot reach the API server")

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any]:
        await self._gate()
        if (namespace, name) not in self.leases.leases:
            raise NotFound(f"lease {namespace}/{name}")
        return copy.deepcopy(self.leases.leases[(namespace, name)])

    async def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        await self._gate()
        key = (namespace, body["metadata"]["name"])
        if key in self.leases.leases:
            raise Conflict("already exists")
        self.leases.leases[key] = self.leases._stored(body)
        return copy.deepcopy(self.leases.leases[key])

    async def replace_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        await self._gate()
        key = (namespace, body["metadata"]["name"])
        current = self.leases.leases.get(key)
        if current is None:
            raise NotFound("gone")
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise Conflict("the object has been modified")
        self.leases.leases[key] = self.leases._stored(body)
        return copy.deepcopy(self.leases.leases[key])


class Replica:
    """One operator process's Leadership, with a clock that a pause can move on and a record of its end."""

    def __init__(self, leases: FakeLeases, identity: str, last_send_s: float = 0.3) -> None:
        self.api = leases.client(identity)
        self.offset = 0.0
        self.lost: list[str] = []
        self.announced: list[str] = []
        self.leadership = Leadership(
            self.api,
            *LEASE,
            identity,
            lease_duration_s=LEASE_DURATION_S,
            renew_deadline_s=RENEW_DEADLINE_S,
            retry_period_s=RETRY_PERIOD_S,
            last_send_s=last_send_s,
            lost=self.lost.append,
            announce=lambda _lease, message: self.announced.append(message),
            clock=lambda: asyncio.get_running_loop().time() + self.offset,
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> Replica:
        self.task = asyncio.create_task(self.leadership.run())
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
def leases() -> FakeLeases:
    return FakeLeases()


async def replicas(leases: FakeLeases, *names: str) -> list[Replica]:
    return [Replica(leases, name).start() for name in names]


def lease(leases: FakeLeases) -> LeaseRecord:
    return LeaseRecord.of(leases.leases[LEASE])


async def test_a_lone_replica_leads_at_once_on_a_lease_nobody_held(leases: FakeLeases) -> None:
    (a,) = await replicas(leases, "a")
    try:
        await eventually(lambda: a.leadership.is_leading, "a leads", within=5)
        record = lease(leases)
        assert (record.holder, record.epoch) == ("a", 1)
        assert a.leadership.epoch == 1 and a.leadership.since == record.acquire_time
        assert a.announced and "a leads (epoch 1)" in a.announced[0]
    finally:
        await a.stop()


async def test_the_standby_never_leads_while_the_leader_renews(leases: FakeLeases) -> None:
    a, b = await replicas(leases, "a", "b")
    try:
        await eventually(lambda: a.leadership.is_leading or b.leadership.is_leading, "one leads", within=5)
        leader, standby = (a, b) if a.leadership.is_leading else (b, a)
        renewals = len(leases.writes)
        # Several lease durations: the leader renews, the standby watches and never takes it.
        await eventually(lambda: len(leases.writes) >= renewals + 30, "renewals", within=20)
        assert leader.leadership.is_leading and standby.leadership.state is State.STANDBY
        assert {holder for holder, _ in leases.writes} == {leader.leadership.identity}
        assert not leader.lost and not standby.lost
    finally:
        await a.stop()
        await b.stop()


async def test_a_leader_cut_off_loses_at_its_renew_deadline_and_the_standby_takes_over_with_a_new_epoch(
    leases: FakeLeases,
) -> None:
    a = Replica(leases, "a").start()
    await eventually(lambda: a.leadership.is_leading, "a leads", within=5)
    b = Replica(leases, "b").start()
    try:
        a.api.down = True
        await eventually(lambda: bool(a.lost), "a gives up", within=5)
        assert "could not renew" in a.lost[0] and not a.leadership.is_leading
        assert lease(leases).holder == "a", "a gave up before b could take the Lease"
        await eventually(lambda: b.leadership.is_leading, "b leads", within=10)
        record = lease(leases)
        assert (record.holder, record.epoch, record.transitions) == ("b", 2, 1)
        assert leases.writes.index(("b", 2)) > max(i for i, (holder, _) in enumerate(leases.writes) if holder == "a")
    finally:
        await a.stop()
        await b.stop()


async def test_a_leader_whose_lease_was_taken_loses_at_its_next_renewal(leases: FakeLeases) -> None:
    (a,) = await replicas(leases, "a")
    try:
        await eventually(lambda: a.leadership.is_leading, "a leads", within=5)
        stolen = copy.deepcopy(leases.leases[LEASE])
        stolen["spec"]["holderIdentity"] = "intruder"
        stolen["metadata"]["annotations"][EPOCH_ANNOTATION] = "9"
        leases.leases[LEASE] = leases._stored(stolen)
        await eventually(lambda: bool(a.lost), "a gives up", within=5)
        assert "held by intruder (epoch 9)" in a.lost[0]
    finally:
        await a.stop()


async def test_a_change_to_the_lease_that_keeps_holder_and_epoch_is_no_loss(leases: FakeLeases) -> None:
    (a,) = await replicas(leases, "a")
    try:
        await eventually(lambda: a.leadership.is_leading, "a leads", within=5)
        labelled = copy.deepcopy(leases.leases[LEASE])
        labelled["metadata"]["labels"] = {"team": "db"}
        leases.leases[LEASE] = leases._stored(labelled)
        writes = len(leases.writes)
        await eventually(lambda: len(leases.writes) > writes + 3, "renewals go on", within=5)
        assert not a.lost and a.leadership.is_leading
    finally:
        await a.stop()


async def test_a_paused_leader_writes_no_go_ahead_and_no_ledger_once_past_its_renew_deadline(
    leases: FakeLeases,
) -> None:
    (a,) = await replicas(leases, "a")
    try:
        await eventually(lambda: a.leadership.is_leading, "a leads", within=5)
        assert a.leadership.may_send()
        gate = asyncio.Event()
        a.api.paused = gate
        a.offset += 60  # SIGSTOP for a minute: the monotonic clock went on, nothing ran
        assert not a.leadership.may_send() and not a.leadership.valid()
        assert not await a.leadership.renewed_after(asyncio.get_running_loop().time() + a.offset)
        gate.set()
    finally:
        await a.stop()


async def test_a_go_ahead_waits_for_a_renewal_sent_after_its_look(leases: FakeLeases) -> None:
    (a,) = await replicas(leases, "a")
    try:
        await eventually(lambda: a.leadership.is_leading, "a leads", within=5)
        gate = asyncio.Event()
        a.api.paused = gate
        looked = asyncio.get_running_loop().time() + a.offset
        waiting = asyncio.create_task(a.leadership.renewed_after(looked))
        await asyncio.sleep(0.1)
        assert not waiting.done(), "a go-ahead went ahead without a renewal after its look"
        before = len(leases.writes)
        gate.set()
        a.api.paused = None
        assert await waiting
        assert len(leases.writes) > before
    finally:
        await a.stop()


async def test_a_restarted_replica_takes_its_own_lease_back_at_once_and_waits_out_its_predecessors_sends(
    leases: FakeLeases,
) -> None:
    first = Replica(leases, "pod-a").start()
    await eventually(lambda: first.leadership.is_leading, "first leads", within=5)
    await first.stop()  # SIGKILL: nothing given back
    again = Replica(leases, "pod-a", last_send_s=0.5).start()
    try:
        await eventually(lambda: again.leadership.state is not State.STANDBY, "it takes the Lease", within=5)
        assert lease(leases).epoch == 2 and lease(leases).holder == "pod-a"
        assert not again.leadership.is_leading, "acting before its predecessor's last sends could have landed"
        await eventually(lambda: again.leadership.is_leading, "it leads", within=5)
    finally:
        await again.stop()


async def test_a_lease_given_back_on_shutdown_is_taken_at_once_by_the_standby(leases: FakeLeases) -> None:
    a = Replica(leases, "a").start()
    await eventually(lambda: a.leadership.is_leading, "a leads", within=5)
    b = Replica(leases, "b").start()
    try:
        await asyncio.sleep(0.1)
        assert b.leadership.state is State.STANDBY
        a.leadership.sent(asyncio.get_running_loop().time() + 0.2)  # a go-ahead whose exec has not reported
        assert a.leadership.step_down()
        assert not a.leadership.is_leading and not a.leadership.may_send(), "a replica stepping down acts no more"
        await a.stop()
        released = asyncio.create_task(a.leadership.release())
        await asyncio.sleep(0.05)
        assert lease(leases).holder == "a", "given back while its last go-ahead could still act"
        await released
        # Given back: empty, or b's already (its next look may come before this line does).
        assert lease(leases).holder in ("", "b")
        # Within the lease duration its holder wrote (1 s): b did not wait for it to expire.
        await eventually(lambda: b.leadership.is_leading, "b leads", within=0.9)
        assert lease(leases).epoch == 2
    finally:
        await b.stop()


async def test_on_shutdown_a_go_ahead_whose_exec_reported_does_not_delay_the_hand_over(leases: FakeLeases) -> None:
    """A SIGTERM (a pod deleted, a rollout) during a transition: the exec reports within a second or two, and the
    Lease goes back then, not after the go-ahead's whole window and send grace (issue 24's 15 s goal)."""
    a = Replica(leases, "a").start()
    await eventually(lambda: a.leadership.is_leading, "a leads", within=5)
    try:
        now = asyncio.get_running_loop().time()
        done = a.leadership.sent(now + 30)
        in_doubt = a.leadership.sent(now + 0.3)
        assert a.leadership.step_down()
        a.leadership.reported(done)
        drained = asyncio.create_task(a.leadership.drain())
        await asyncio.sleep(0.1)
        assert not drained.done(), "an exec that never reported may still act until its window and grace end"
        await asyncio.wait_for(drained, timeout=1)
        a.leadership.reported(in_doubt)  # late: harmless
        await a.stop()
        await asyncio.wait_for(a.leadership.release(), timeout=1)
        assert lease(leases).holder == ""
    finally:
        await a.stop()


async def test_release_gives_nothing_back_without_stepping_down_first(leases: FakeLeases) -> None:
    a = Replica(leases, "a").start()
    await eventually(lambda: a.leadership.is_leading, "a leads", within=5)
    try:
        await a.leadership.release()
        assert lease(leases).holder == "a" and a.leadership.is_leading
    finally:
        await a.stop()


async def test_a_lease_long_expired_at_first_sight_is_taken_without_waiting(leases: FakeLeases) -> None:
    old = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": LEASE[1], "namespace": LEASE[0], "annotations": {EPOCH_ANNOTATION: "4"}},
        "spec": {"holderIdentity": "gone", "leaseDurationSeconds": 15, "renewTime": old, "acquireTime": old},
    }
    leases.leases[LEASE] = leases._stored(body)
    (a,) = await replicas(leases, "a")
    try:
        # A lease duration of 15 s as its holder wrote it: taken at once all the same, it is an hour old.
        await eventually(lambda: a.leadership.is_leading, "a leads", within=3)
        assert lease(leases).epoch == 5
    finally:
        await a.stop()


def test_settings_refuse_a_renew_deadline_past_the_lease() -> None:
    with pytest.raises(ValidationError, match="retry_period_s < renew_deadline_s < lease_duration_s"):
        ProcessControlSettings(lease_duration_s=10, renew_deadline_s=10)
    assert ProcessControlSettings().lease_duration_s == 15


# What the workers do with it -----------------------------------------------------------------------------------


@pytest.fixture
async def elected(
    world: tuple[World, LocalExecutor, Runtime], leases: FakeLeases
) -> AsyncIterator[tuple[World, LocalExecutor, Runtime, Replica]]:
    api, executor, runtime = world
    replica = Replica(leases, "a").start()
    await eventually(lambda: replica.leadership.is_leading, "a leads", within=5)
    runtime.leader = replica.leadership
    yield api, executor, runtime, replica
    await replica.stop()


def _running(pods: dict[str, FakePod]) -> bool:
    return all(pod.running(*key) for pod in pods.values() for key in JOBS)


async def test_a_standby_starts_no_worker_and_takes_over_every_pod_once_it_leads(
    world: tuple[World, LocalExecutor, Runtime], pods: dict[str, FakePod], leases: FakeLeases
) -> None:
    api, executor, runtime = world
    runtime.namespaces = lambda: [NAMESPACE]
    standby = Replica(leases, "b")
    leases.leases[LEASE] = leases._stored(
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": LEASE[1], "namespace": LEASE[0], "annotations": {EPOCH_ANNOTATION: "1"}},
            "spec": {"holderIdentity": "a", "renewTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
        }
    )
    runtime.leader = standby.leadership
    dispatch: Dispatch = api.dispatch
    standby.leadership.on_lead(dispatch.take_over)
    api.suspend("restore")
    await asyncio.sleep(0.2)
    assert dispatch.workers == {} and executor.calls == [] and _running(pods)
    assert all(api.annotation(name) is None for name in pods), "a standby wrote a ledger"
    standby.start()  # the holder "a" never renews: b takes over after the lease duration
    try:
        await eventually(lambda: standby.leadership.is_leading, "b leads", within=10)
        await eventually(lambda: not any(p.running(*k) for p in pods.values() for k in JOBS), "all stopped", 20)
        for name in pods:
            assert json.loads(api.annotation(name) or "{}")["epoch"] == 2
    finally:
        await standby.stop()


async def test_a_ledger_of_a_newer_epoch_stops_the_leader_before_it_writes_or_sends(
    elected: tuple[World, LocalExecutor, Runtime, Replica], pods: dict[str, FakePod]
) -> None:
    api, executor, _runtime, replica = elected
    api.suspend("restore")
    await eventually(lambda: not pods["db-0"].running(*JOBS[0]), "db-0 stopped", 20)
    await eventually(lambda: json.loads(api.annotation("db-0") or "{}").get("epoch") == 1, "epoch 1 written")
    newer = json.loads(api.annotation("db-0") or "{}")
    newer["epoch"] = 2  # the next leader's write (it resumed the pod by hand, say)
    api.edit_annotations("db-0", {HOLDS_ANNOTATION: json.dumps(newer)})
    calls = len(executor.calls)
    api.suspend("restore", suspend=False)
    await eventually(lambda: bool(replica.lost), "the stale leader stops", 10)
    assert "epoch 2, after this replica's epoch 1" in replica.lost[0]
    assert json.loads(api.annotation("db-0") or "{}") == newer, "written over a newer term's ledger"
    assert ("db-0", "START") not in executor.calls[calls:]


async def test_a_leader_paused_past_its_term_sends_nothing(
    elected: tuple[World, LocalExecutor, Runtime, Replica], pods: dict[str, FakePod]
) -> None:
    api, executor, _runtime, replica = elected
    replica.api.paused = asyncio.Event()  # its renewals hang, as in a frozen process
    replica.offset += 60  # and its clock says a minute went by
    api.suspend("restore")
    await asyncio.sleep(0.5)
    assert _running(pods)
    assert not any(action in ("STOP", "START") for _, action in executor.calls), executor.calls
    assert all(api.annotation(name) is None for name in pods), "a ledger written outside the term"
    replica.api.paused.set()
