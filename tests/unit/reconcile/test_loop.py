"""The suspension loop without a cluster: real in-pod script, real containerrun processes, a fake API client.

The fake executor runs the exec command locally with the pod's base directory, as kwok does in the e2e tests;
only the Kubernetes API (status, labels, events) is replaced by recorders.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import kopf
import pytest

from processcontrol.api import INSTANCE_GROUP_LABEL, SUSPENDED_LABEL
from processcontrol.podexec.transport import ExecResult
from processcontrol.reconcile.settings import OperatorSettings
from processcontrol.reconcile.suspension import Runtime, SuspensionLoop, release_suspension, suspension_info
from processcontrol.reconcile.targets import PodInfo

CONTAINERRUN = Path(sys.executable).parent / "containerrun"
JOBS = (("pxc-mysql", "mysql"), ("pxc-mysql", "galera-agent"))


@dataclass
class FakePod:
    """A pod's /var/vcap on this machine with one real containerrun per process."""

    name: str
    base: Path
    runners: dict[tuple[str, str], subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, job: str, process: str) -> None:
        sock = self.base / "data" / job / f"{process}_containerrun.sock"
        self.runners[(job, process)] = subprocess.Popen(
            [
                *(str(CONTAINERRUN), "--job-name", job, "--process-name", process, "--base-dir", str(self.base)),
                *("--stop-timeout", "5", "--", "sleep", "1000"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while not (sock.is_socket() and self.running(job, process)):
            assert time.monotonic() < deadline, f"containerrun {job}/{process} did not come up"
            time.sleep(0.02)

    def restart(self, job: str, process: str) -> None:
        """A container restart: containerrun killed and started again, its process running."""
        self.runners[(job, process)].kill()
        self.runners[(job, process)].wait()
        self.start(job, process)

    def running(self, job: str, process: str) -> bool:
        return (self.base / "data" / job / f"{process}_containerrun.running").exists()

    def close(self) -> None:
        for runner in self.runners.values():
            runner.terminate()
            runner.wait(10)


class LocalExecutor:
    """Runs the exec command here, with the pod's base dir as CONTAINERRUN_BASE_DIR (what kwok's Exec does)."""

    def __init__(self, pods: Mapping[str, FakePod], path: str | None = None) -> None:
        self.pods = pods
        self.path = path
        self.calls: list[tuple[str, str]] = []

    async def run(self, namespace: str, pod: str, container: str, command: list[str]) -> ExecResult:
        self.calls.append((pod, command[4]))
        env = dict(os.environ, CONTAINERRUN_BASE_DIR=str(self.pods[pod].base))
        if self.path is not None:
            env["PATH"] = self.path
        started = time.monotonic()
        # Like kwok (Go's exec), the program is found on this process's PATH; the pod's PATH is what it sees.
        argv = [shutil.which(command[0]) or command[0], *command[1:]]
        done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, env=env, check=False)
        return ExecResult(done.stdout, done.stderr, done.returncode, time.monotonic() - started)


@dataclass
class FakeKube:
    """Records what the loop writes to the API."""

    statuses: list[dict[str, Any]] = field(default_factory=list)
    labels: dict[str, dict[str, str | None]] = field(default_factory=dict)

    async def patch_suspension_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.statuses.append(dict(status))

    async def patch_pod_labels(self, namespace: str, name: str, labels: Mapping[str, str | None]) -> None:
        self.labels.setdefault(name, {}).update(labels)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    posted: list[tuple[str, str]] = []

    def record(body: object, *, type: str, reason: str, message: str = "") -> None:
        posted.append((reason, message))

    monkeypatch.setattr(kopf, "event", record)
    return posted


@pytest.fixture
def pods() -> Iterator[dict[str, FakePod]]:
    # Short paths: a unix socket path must fit in 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="pcl"))
    made = {name: FakePod(name, root / name) for name in ("db-0", "db-1")}
    for pod in made.values():
        for job, process in JOBS:
            pod.start(job, process)
    yield made
    for pod in made.values():
        pod.close()
    shutil.rmtree(root, ignore_errors=True)


def pod_info(name: str, restarts: int = 0, labels: Mapping[str, str] | None = None) -> PodInfo:
    return PodInfo(
        namespace="kubecf",
        name=name,
        uid=f"uid-{name}",
        labels={INSTANCE_GROUP_LABEL: "db", **(labels or {})},
        phase="Running",
        terminating=False,
        containers=("pxc-mysql-mysql",),
        data_containers=("pxc-mysql-mysql",),
        restarts=restarts,
    )


def make_loop(executor: LocalExecutor, kube: FakeKube, name: str = "s", **spec: Any) -> SuspensionLoop:
    body = kopf.Body(
        {
            "apiVersion": "processcontrol.dev/v1alpha1",
            "kind": "ProcessSuspension",
            "metadata": {"name": name, "namespace": "kubecf", "uid": f"uid-{name}", "generation": 1},
            "spec": {"instanceGroup": "db", "suspend": True, **spec},
            "status": {},
        }
    )
    settings = OperatorSettings(verify_timeout_s=15, failure_backoff_s=1, status_interval_s=0.2)
    runtime = Runtime(settings=settings, executor=executor, kube=kube)  # type: ignore[arg-type]
    return SuspensionLoop(runtime, body, kopf.LocalObjectLogger(body=body, settings=kopf.OperatorSettings()))


def conditions(status: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


async def test_suspends_verifies_labels_and_reports(pods: dict[str, FakePod], events: list[tuple[str, str]]) -> None:
    kube = FakeKube()
    loop = make_loop(LocalExecutor(pods), kube, reason="restore")
    infos = [pod_info(name) for name in pods]

    wait = await loop.round(infos, [])

    assert not any(pod.running(job, process) for pod in pods.values() for job, process in JOBS)
    final = kube.statuses[-1]
    assert conditions(final)["Ready"] == ("True", "Suspended")
    assert final["summary"] == "2/2"
    assert {p["state"] for p in final["pods"]} == {"Suspended"}
    assert kube.labels == {name: {SUSPENDED_LABEL: "true"} for name in pods}
    assert ("Suspended", "2/2 pods suspended, verified (reason: restore)") in events
    assert wait is not None
    assert 0 < wait <= 1.25 * OperatorSettings().reverify_interval_s


async def test_a_restarted_container_is_stopped_again(pods: dict[str, FakePod], events: list[tuple[str, str]]) -> None:
    kube = FakeKube()
    executor = LocalExecutor(pods)
    loop = make_loop(executor, kube)
    await loop.round([pod_info(name) for name in pods], [])
    pods["db-1"].restart("pxc-mysql", "mysql")
    assert pods["db-1"].running("pxc-mysql", "mysql")

    executor.calls.clear()
    await loop.round([pod_info("db-0"), pod_info("db-1", restarts=1)], [])

    assert not pods["db-1"].running("pxc-mysql", "mysql")
    assert {pod for pod, _ in executor.calls} == {"db-1"}, "only the restarted pod is exec'ed into"
    assert any(reason == "Resuspended" for reason, _ in events)


async def test_resume_leaves_what_another_suspension_holds(
    pods: dict[str, FakePod], events: list[tuple[str, str]]
) -> None:
    kube = FakeKube()
    executor = LocalExecutor(pods)
    everything = make_loop(executor, kube, name="everything")
    infos = [pod_info(name) for name in pods]
    await everything.round(infos, [])
    holder = suspension_info("agents", {"instanceGroup": "db", "processes": ["galera-agent"]}, {}, deleting=False)

    # kopf replaces a daemon's live body in place when the object changes.
    raw = {**everything.body, "spec": {"instanceGroup": "db", "suspend": False}}
    everything.body._replace_with(raw)
    await everything.round(infos, [holder])

    assert all(pod.running("pxc-mysql", "mysql") for pod in pods.values())
    assert not any(pod.running("pxc-mysql", "galera-agent") for pod in pods.values())
    assert conditions(kube.statuses[-1])["Ready"] == ("True", "Resumed")
    assert kube.labels["db-0"][SUSPENDED_LABEL] == "true", "the pod stays labelled while another suspension holds it"


async def test_image_without_sender_tools_fails_with_the_reason(
    pods: dict[str, FakePod], events: list[tuple[str, str]]
) -> None:
    kube = FakeKube()
    loop = make_loop(LocalExecutor(pods, path="/nonexistent"), kube)

    wait = await loop.round([pod_info(name) for name in pods], [])

    assert all(pod.running(job, process) for pod in pods.values() for job, process in JOBS)
    final = kube.statuses[-1]
    assert conditions(final)["Stalled"] == ("True", "NoSenderTool")
    assert {p["state"] for p in final["pods"]} == {"Failed"}
    assert "perl,python3,processcontrol,ncat,nc,socat" in final["pods"][0]["message"]
    assert any(reason == "NoSenderTool" for reason, _ in events)
    assert wait is not None
    assert wait <= 1.0, "a failed pod is retried after the failure backoff"
    assert kube.labels == {}


async def test_invalid_spec_stalls_without_exec(pods: dict[str, FakePod], events: list[tuple[str, str]]) -> None:
    kube = FakeKube()
    executor = LocalExecutor(pods)
    loop = make_loop(executor, kube, jobs=["$(id)"])

    assert await loop.round([pod_info(name) for name in pods], []) is None

    assert executor.calls == []
    assert conditions(kube.statuses[-1])["Stalled"] == ("True", "InvalidSpec")


def test_index_entry_of_an_expired_or_deleted_suspension_holds_nothing() -> None:
    live = suspension_info("a", {"instanceGroup": "db"}, {"expiresAt": "2999-01-01T00:00:00Z"}, deleting=False)
    now = datetime.now(UTC)
    assert live.holding(now)
    assert not replace(live, expires_at="2000-01-01T00:00:00Z").holding(now)
    assert not replace(live, deleting=True).holding(now)
    assert not suspension_info("b", {"instanceGroup": "db", "suspend": False}, {}, deleting=False).holding(now)
    assert not suspension_info("c", {"jobs": ["no-target"]}, {}, deleting=False).holding(now)


async def test_deletion_resumes_once_even_when_kopf_calls_the_handler_again(
    pods: dict[str, FakePod], events: list[tuple[str, str]]
) -> None:
    kube = FakeKube()
    executor = LocalExecutor(pods)
    loop = make_loop(executor, kube)
    infos = [pod_info(name) for name in pods]
    await loop.round(infos, [])
    index: Any = {"kubecf": infos}
    none: Any = {"kubecf": []}

    await release_suspension(loop.runtime, loop.body, index, none, loop.logger)
    assert all(pod.running(job, process) for pod in pods.values() for job, process in JOBS)
    executor.calls.clear()
    await release_suspension(loop.runtime, loop.body, index, none, loop.logger)

    assert executor.calls == []
