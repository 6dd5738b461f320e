"""Previews (spec.preview): what one look per pod finds, the status it makes, and that nothing is ever held.

The pure cases build looks by hand; the others run the status daemon over real containerrun processes and the
in-memory API of conftest.py, with the pod workers of a real Dispatch.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aioenums
from kopf._core.intents import stoppers

from processcontrol.api import INSTANCE_GROUP_LABEL, PodState, ProcessSuspensionSpec, ProcessSuspensionStatus
from processcontrol.api.reasons import FailureReason, Reason
from processcontrol.exceptions import ExecForbidden
from processcontrol.podexec.script import ScriptReport, SocketReport, SocketResult
from processcontrol.probes import PodProbes, pod_probes
from processcontrol.reconcile import conditions as cond
from processcontrol.reconcile import suspension
from processcontrol.reconcile.plan import Intent, Mode, PodRecord, build_status, intent_of
from processcontrol.reconcile.preview import build_preview, found, key_of
from processcontrol.reconcile.runtime import Runtime
from processcontrol.targets import PodInfo

from .conftest import CONTAINER, JOBS, NAMESPACE, FakePod, LocalExecutor, World, eventually

World3 = tuple[World, LocalExecutor, Runtime]
MYSQL, AGENT = JOBS
NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
LIVENESS = {"exec": {"command": ["test", "-f", "/var/vcap/data/pxc-mysql/mysql_containerrun.running"]}}


def spec(**fields: Any) -> ProcessSuspensionSpec:
    return ProcessSuspensionSpec.model_validate({"instanceGroup": "db", "preview": True, **fields})


def pod(name: str = "db-0", probed: bool = False, phase: str = "Running") -> PodInfo:
    container: dict[str, Any] = {"name": CONTAINER}
    if probed:
        container["livenessProbe"] = LIVENESS
    probes = pod_probes({"containers": [container]}, {})
    return PodInfo(
        namespace=NAMESPACE,
        name=name,
        uid=f"uid-{name}",
        labels={INSTANCE_GROUP_LABEL: "db"},
        phase=phase,
        terminating=False,
        containers=(CONTAINER,),
        data_containers=(CONTAINER,),
        probes=probes if probed else PodProbes(containers=(CONTAINER,)),
    )


def socket(job: str, process: str, running: bool = True, stale: bool = False) -> SocketReport:
    result = SocketResult.STALE if stale else SocketResult.PROBED
    return SocketReport(job=job, process=process, result=result, running=running, pid=7, was_running=running)


def report(*sockets: SocketReport, tool: str | None = "perl") -> ScriptReport:
    return ScriptReport(sockets=list(sockets), tool=tool)


# --- what a look finds -----------------------------------------------------------------------------------------


def test_a_look_says_what_would_be_stopped_kept_stopped_and_stale() -> None:
    seen = report(socket(*MYSQL), socket(*AGENT, running=False), socket("bpm", "gone", stale=True))
    preview = found(spec(processes=["mysql", "galera-agent", "gone", "nosuch"]), pod(), CONTAINER, seen)
    assert preview.reason == ""
    assert preview.stop == ["pxc-mysql/mysql"]
    assert preview.keep_stopped == ["pxc-mysql/galera-agent"]
    assert preview.stale == ["bpm/gone"]
    assert preview.missing == ["process nosuch"]
    assert preview.skip == [] and preview.probe_conflicts == []
    assert preview.container == CONTAINER
    assert "would stop 1, keep 1 stopped" in preview.message and "stale sockets" in preview.message


@pytest.mark.parametrize(
    ("policy", "stop", "skip", "reason"),
    [
        ("Warn", ["pxc-mysql/galera-agent", "pxc-mysql/mysql"], [], ""),
        ("Skip", ["pxc-mysql/galera-agent"], ["pxc-mysql/mysql"], ""),
        ("Refuse", [], ["pxc-mysql/galera-agent", "pxc-mysql/mysql"], FailureReason.PROBE_CONFLICT),
    ],
)
def test_the_probes_policy_decides_what_a_probed_pod_would_stop(
    policy: str, stop: list[str], skip: list[str], reason: str
) -> None:
    preview = found(spec(probes=policy), pod(probed=True), CONTAINER, report(socket(*MYSQL), socket(*AGENT)))
    assert (preview.stop, preview.skip, preview.reason) == (stop, skip, reason)
    assert preview.probe_conflicts == [f"{CONTAINER}: livenessProbe exec {' '.join(LIVENESS['exec']['command'])}"]


def test_a_pod_without_sockets_or_sender_stops_nothing_and_says_why() -> None:
    empty = found(spec(jobs=["pxc-mysql"]), pod(), CONTAINER, report())
    assert (empty.reason, empty.stop) == (FailureReason.NO_SOCKETS, [])
    assert empty.missing == ["job pxc-mysql"]
    assert "no containerrun sockets" in empty.message
    mute = found(spec(), pod(), CONTAINER, report(socket(*MYSQL), tool=None))
    assert (mute.reason, mute.stop, mute.keep_stopped) == (FailureReason.NO_SENDER_TOOL, [], [])


def test_the_preview_counts_every_pod_lists_those_needing_attention_first_and_stays_small() -> None:
    """1,000 pods of 10 processes: counts for all, a bounded list (the status also has `pods`)."""
    pods = [pod(f"db-{i}") for i in range(1000)]
    many = report(*(socket(f"job-{j}", f"process-{j}") for j in range(10)))
    looks = {
        p.name: (key_of(p, 1), found(spec(), p, CONTAINER, many if i % 100 else report())) for i, p in enumerate(pods)
    }
    preview = build_preview(1, pods, looks, NOW)
    assert (preview.targets, preview.looked, preview.would_stop) == (1000, 1000, 990 * 10)
    assert preview.cannot_by_reason == {"NoSockets": 10}
    assert [p.reason for p in preview.pods[:10]] == ["NoSockets"] * 10
    assert len(json.dumps(preview.model_dump(by_alias=True, mode="json"))) < 200_000
    # A look of an older generation, or of the pod before a container restart, is no look of this one.
    assert build_preview(2, pods, looks, NOW).looked == 0
    pending = [pod("db-x", phase="Pending")]
    assert build_preview(1, pending, {}, NOW).pods[0].reason == FailureReason.POD_NOT_RUNNING


# --- the status a preview makes ---------------------------------------------------------------------------------


def test_a_preview_is_ready_only_once_looked_at_and_holding_nothing_and_never_suspended() -> None:
    asked = spec()
    intent = intent_of(asked, ProcessSuspensionStatus(), NOW)
    assert intent == Intent(Mode.RESUME, Reason.PREVIEW_REQUESTED)
    target = pod()
    resumed = {"db-0": PodRecord(uid="uid-db-0", state=PodState.RESUMED, mode=Mode.RESUME, generation=1)}
    looked = build_preview(1, [target], {"db-0": (key_of(target, 1), found(asked, target, CONTAINER, report()))}, NOW)
    unlooked = build_preview(1, [target], {}, NOW)

    def conditions(preview: Any, records: dict[str, PodRecord]) -> dict[str, tuple[str, str]]:
        status = build_status(asked, 1, intent, [target], records, ProcessSuspensionStatus(), NOW, preview)
        assert status.suspended_at is None
        return {c.type: (c.status.value, c.reason) for c in status.conditions}

    assert conditions(unlooked, resumed)[cond.READY] == ("False", Reason.PREVIEWING)
    assert conditions(unlooked, resumed)[cond.PREVIEWED] == ("False", Reason.PREVIEWING)
    assert conditions(looked, {})[cond.READY] == ("False", Reason.PREVIEWING)  # the pod not heard from
    status = build_status(asked, 1, intent, [target], resumed, ProcessSuspensionStatus(), NOW, looked)
    previewed = cond.find(status.conditions, cond.PREVIEWED)
    assert previewed is not None
    assert previewed.message == "1 pod: would stop 0 processes; cannot act fully in 1 pod (NoSockets: 1)"
    done = conditions(looked, resumed)
    assert done[cond.READY] == ("True", Reason.PREVIEWED)
    assert done[cond.PREVIEWED] == ("True", Reason.PREVIEWED)
    assert done[cond.SUSPENDED] == ("False", Reason.PREVIEW_REQUESTED)
    # Not a preview: no preview block, no Previewed condition.
    live = ProcessSuspensionSpec.model_validate({"instanceGroup": "db"})
    status = build_status(
        live, 1, intent_of(live, ProcessSuspensionStatus(), NOW), [target], {}, ProcessSuspensionStatus(), NOW
    )
    assert status.preview is None and cond.find(status.conditions, cond.PREVIEWED) is None


# --- the status daemon and the pod workers ----------------------------------------------------------------------


def body(preview: bool, generation: int, **spec_fields: Any) -> dict[str, Any]:
    return {
        "apiVersion": "processcontrol.dev/v1alpha1",
        "kind": "ProcessSuspension",
        "metadata": {"name": "restore", "namespace": NAMESPACE, "uid": "uid-restore", "generation": generation},
        "spec": {"instanceGroup": "db", "suspend": True, "preview": preview, **spec_fields},
        "status": {},
    }


class Daemon:
    """The suspension as kopf hands it to its status daemon, which runs until the test ends."""

    def __init__(self, api: World, runtime: Runtime) -> None:
        self.api, self.runtime = api, runtime
        self.raw = body(True, 1)
        self.stopper = aioenums.FlagSetter[stoppers.DaemonStoppingReason]()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.api.suspend("restore", generation=1, preview=True)
        self.task = asyncio.create_task(
            suspension.run_status_daemon(
                self.api.dispatch,
                kopf.Body(self.raw),  # type: ignore[arg-type]
                self.stopper.async_waiter,
                logging.getLogger("test"),
            )
        )

    def change(self, preview: bool, generation: int) -> None:
        """A patch of spec.preview: the object kopf's body shows, the index the workers read."""
        self.raw["metadata"]["generation"] = generation
        self.raw["spec"]["preview"] = preview
        self.api.suspend("restore", generation=generation, preview=preview)
        self.runtime.board.wake(NAMESPACE, "restore")

    def status(self) -> ProcessSuspensionStatus:
        return ProcessSuspensionStatus.model_validate(self.api.statuses[-1] if self.api.statuses else {})

    def condition(self, type_: str) -> tuple[str, str, int | None]:
        found_ = cond.find(self.status().conditions, type_)
        return ("", "", None) if found_ is None else (found_.status.value, found_.reason, found_.observed_generation)

    async def stop(self) -> None:
        self.stopper.set(stoppers.DaemonStoppingReason.DAEMON_SIGNALLED)
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)


@pytest.fixture
async def daemon(world: World3, events: list[tuple[str, str, str]]) -> AsyncIterator[Daemon]:
    api, _executor, runtime = world
    made = Daemon(api, runtime)
    yield made
    await made.stop()


async def test_a_preview_looks_into_every_pod_and_holds_nothing(
    world: World3, pods: dict[str, FakePod], daemon: Daemon
) -> None:
    api, executor, _runtime = world
    api.pods["db-0"]["spec"]["containers"][0]["livenessProbe"] = LIVENESS
    api.changed("db-0")
    daemon.start()
    await eventually(lambda: daemon.condition(cond.READY)[:2] == ("True", Reason.PREVIEWED), "Ready: Previewed")

    preview = daemon.status().preview
    assert preview is not None and (preview.targets, preview.looked, preview.would_stop) == (2, 2, 4)
    shown = {p.name: p for p in preview.pods}
    assert shown["db-0"].probe_conflicts and shown["db-0"].reason == ""
    assert shown["db-1"].stop == ["pxc-mysql/galera-agent", "pxc-mysql/mysql"]
    assert daemon.condition(cond.PREVIEWED) == ("True", Reason.PREVIEWED, 1)
    assert daemon.condition(cond.SUSPENDED)[0] == "False"
    assert all(all(p.all_running().values()) for p in pods.values())
    assert api.annotation("db-0") is None and api.annotation("db-1") is None
    assert set(executor.actions("db-0")) == {"LOOK"} and set(executor.actions("db-1")) == {"LOOK"}


async def test_one_patch_makes_a_preview_real_and_another_gives_its_holds_back(
    world: World3, pods: dict[str, FakePod], daemon: Daemon
) -> None:
    api, executor, _runtime = world
    daemon.start()
    await eventually(lambda: daemon.condition(cond.PREVIEWED)[:2] == ("True", Reason.PREVIEWED), "previewed")

    daemon.change(preview=False, generation=2)
    await eventually(lambda: daemon.condition(cond.READY) == ("True", Reason.SUSPENDED, 2), "suspended", 30)
    assert not any(pods["db-0"].all_running().values())
    assert daemon.status().preview is None and daemon.condition(cond.PREVIEWED) == ("", "", None)
    assert api.ledger("db-0").holds

    daemon.change(preview=True, generation=3)
    await eventually(lambda: daemon.condition(cond.READY) == ("True", Reason.PREVIEWED, 3), "previewed again", 30)
    assert all(all(p.all_running().values()) for p in pods.values())
    assert not api.ledger("db-0").holds and not api.ledger("db-1").holds
    preview = daemon.status().preview
    assert preview is not None and preview.would_stop == 4 and preview.observed_generation == 3
    assert "STOP" in executor.actions("db-0") and "START" in executor.actions("db-0")


async def test_a_pod_the_operator_may_not_exec_into_is_named_with_its_reason(world: World3, daemon: Daemon) -> None:
    api, executor, _runtime = world
    executor.fail["db-1"] = ExecForbidden('pods "db-1" is forbidden: cannot create resource "pods/exec"')
    daemon.start()
    await eventually(lambda: daemon.condition(cond.PREVIEWED)[:2] == ("True", Reason.PREVIEWED), "previewed")
    preview = daemon.status().preview
    assert preview is not None and preview.cannot_by_reason == {"ExecForbidden": 1}
    assert preview.pods[0].name == "db-1" and "forbidden" in preview.pods[0].message
    assert api.annotation("db-0") is None
