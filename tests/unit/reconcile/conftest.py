"""The pod workers without a cluster: real in-pod script, real containerrun processes, an in-memory API.

`LocalExecutor` runs the exec command here with the pod's base directory, as kwok does in the e2e tests. `World`
stands in for the API server and kopf's indexes: pods (whose metadata patches honour resourceVersion as the API
server does) and suspensions. Only the Kubernetes API is replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
import pytest

from harness.base import kill_marked, parent_pid
from harness.fakepods import CONTAINER_ENV
from processcontrol.api import INSTANCE_GROUP_LABEL, SUSPENDED_LABEL
from processcontrol.containerrun.protocol import Endpoint
from processcontrol.exceptions import ApiError, Conflict, ExecError, ExecTimeout, NotFound
from processcontrol.ledger import HOLDS_ANNOTATION, Ledger, parse_ledger
from processcontrol.podexec.transport import Dialogue, ExecResult, prompted
from processcontrol.reconcile.dispatch import Dispatch
from processcontrol.reconcile.runtime import Runtime, SuspensionInfo, suspension_info
from processcontrol.settings import ProcessControlSettings
from processcontrol.targets import PodInfo, pod_info_from_body

CONTAINERRUN = Path(sys.executable).parent / "containerrun"
JOBS = (("pxc-mysql", "mysql"), ("pxc-mysql", "galera-agent"))
NAMESPACE = "kubecf"
CONTAINER = "pxc-mysql-mysql"


@dataclass
class FakePod:
    """A pod's /var/vcap on this machine with one real containerrun per process."""

    name: str
    base: Path
    runners: dict[tuple[str, str], subprocess.Popen[bytes]] = field(default_factory=dict)

    def container(self, job: str, process: str) -> str:
        """The environment entry every process of this container carries (containerrun and its main process)."""
        return f"{CONTAINER_ENV}={self.base}/{job}/{process}"

    def start(self, job: str, process: str) -> None:
        sock = self.base / "data" / job / f"{process}_containerrun.sock"
        name, value = self.container(job, process).split("=", 1)
        self.runners[(job, process)] = subprocess.Popen(
            [
                *(str(CONTAINERRUN), "--job-name", job, "--process-name", process, "--base-dir", str(self.base)),
                *("--stop-timeout", "5", "--", "sleep", "1000"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, name: value},
        )
        deadline = time.monotonic() + 20
        while not (sock.is_socket() and self.running(job, process) and self._serves(job, process)):
            assert time.monotonic() < deadline, f"containerrun {job}/{process} did not come up"
            time.sleep(0.02)

    def _serves(self, job: str, process: str) -> bool:
        """Whether the pid file names a child of this containerrun: after a restart, the socket, sentinel and pid
        file the killed one left are still there until the new one replaces them."""
        pid = Endpoint(self.base, job, process).read_pid()
        return pid is not None and parent_pid(pid) == self.runners[(job, process)].pid

    def restart(self, job: str, process: str) -> None:
        """A container restart: everything in the container killed (containerrun and its main process, which runs
        in a session of its own), containerrun started again, its process running."""
        kill_marked(self.container(job, process))
        self.runners[(job, process)].wait()
        self.start(job, process)

    def send(self, job: str, process: str, command: str) -> None:
        """What a person does with `processcontrol send` inside the pod."""
        sock = self.base / "data" / job / f"{process}_containerrun.sock"
        subprocess.run(
            [str(Path(sys.executable).parent / "processcontrol"), "send", command, str(sock)],
            check=True,
            capture_output=True,
        )

    def running(self, job: str, process: str) -> bool:
        return (self.base / "data" / job / f"{process}_containerrun.running").exists()

    def all_running(self) -> dict[tuple[str, str], bool]:
        return {key: self.running(*key) for key in self.runners}

    def close(self) -> None:
        for (job, process), runner in self.runners.items():
            runner.terminate()
            runner.wait(10)
            # A main process the test left stopped-but-not-gone, or one containerrun did not wait for.
            kill_marked(self.container(job, process))


async def end_exec(process: asyncio.subprocess.Process) -> None:
    """Kill an exec's whole process group, not only its shell: the script's watchdog is a subshell with a `sleep`
    of the window's length, which would outlive a killed shell and the test (its leak check allows 5 s)."""
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await asyncio.shield(process.wait())


class LocalExecutor:
    """Runs the exec command here, with the pod's base dir as CONTAINERRUN_BASE_DIR (what kwok's Exec does), stdin
    open when the exec has a dialogue, as the websocket exec has it.

    `hold[pod]`, when set, is awaited before that pod's next exec runs: a slow or hanging pod on demand.
    `fail[pod]` fails that pod's execs. `calls` has (pod, what each exec did): the go-ahead's STOP or START, or
    LOOK when it was told nothing."""

    def __init__(self, pods: Mapping[str, FakePod], path: str | None = None) -> None:
        self.pods = pods
        self.path = path
        self.calls: list[tuple[str, str]] = []
        self.hold: dict[str, asyncio.Event] = {}
        self.fail: dict[str, ExecError] = {}
        self.waiting: set[str] = set()  # pods whose exec waits at its `hold` gate
        # pod -> seconds: its next exec times out at once for the operator, and its command starts that much later
        # in the pod, on a stream nobody answers (a slow kubelet; kwok does not kill what an exec left running).
        self.late: dict[str, float] = {}
        self.stragglers: list[asyncio.Task[None]] = []
        self.timeline: list[tuple[str, str, int]] = []  # (pod, "go STOP"/"go START", seq); the World adds writes

    async def run(
        self,
        namespace: str,
        pod: str,
        container: str,
        command: list[str],
        dialogue: Dialogue | None = None,
        *,
        background: bool = False,
    ) -> ExecResult:
        gate = self.hold.get(pod)
        if gate is not None:
            self.waiting.add(pod)
            try:
                await gate.wait()
            finally:
                self.waiting.discard(pod)
        if pod in self.fail:
            self.calls.append((pod, "FAILED"))
            raise self.fail[pod]
        if pod in self.late:
            self.calls.append((pod, "TIMEOUT"))
            self.stragglers.append(asyncio.create_task(self._straggle(pod, command, self.late.pop(pod))))
            raise ExecTimeout(f"exec into {pod}: no answer")
        env = dict(os.environ, CONTAINERRUN_BASE_DIR=str(self.pods[pod].base))
        if self.path is not None:
            env["PATH"] = self.path
        started = time.monotonic()
        self.calls.append((pod, "EXEC"))  # what it did is known at its end
        call = len(self.calls) - 1
        # Like kwok (Go's exec), the program is found on this process's PATH; the pod's PATH is what it sees.
        argv = [shutil.which(command[0]) or command[0], *command[1:]]
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if dialogue is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        try:
            assert process.stdout is not None and process.stderr is not None
            stdout = b""
            did = "LOOK"
            if dialogue is not None:
                assert process.stdin is not None
                while not prompted(stdout, dialogue):
                    line = await process.stdout.readline()
                    if not line:
                        break
                    stdout += line
                if prompted(stdout, dialogue):
                    answer = await dialogue.answer(stdout.decode())
                    if answer:
                        did, seq = answer.split("\t")[:2]
                        self.timeline.append((pod, f"go {did}", int(seq)))
                    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                        process.stdin.write((answer or "\n").encode())
                        await process.stdin.drain()
                        process.stdin.close()
            rest, errors = await process.communicate()
        finally:
            await end_exec(process)  # cancelled (the worker stopped): the exec goes with it
        if call < len(self.calls) and self.calls[call] == (pod, "EXEC"):
            self.calls[call] = (pod, did)
        return ExecResult((stdout + rest).decode(), errors.decode(), process.returncode, time.monotonic() - started)

    def actions(self, pod: str) -> list[str]:
        return [action for name, action in self.calls if name == pod]

    async def _straggle(self, pod: str, command: list[str], delay: float) -> None:
        """The command of an exec its operator gave up on: it starts late, its stdin open and never written."""
        await asyncio.sleep(delay)
        env = dict(os.environ, CONTAINERRUN_BASE_DIR=str(self.pods[pod].base))
        argv = [shutil.which(command[0]) or command[0], *command[1:]]
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        try:
            await process.wait()
        finally:
            await end_exec(process)


def pod_body(name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": f"uid-{name}",
            "resourceVersion": "1",
            "labels": {INSTANCE_GROUP_LABEL: "db", **(labels or {})},
        },
        "spec": {"containers": [{"name": CONTAINER, "volumeMounts": [{"mountPath": "/var/vcap/data"}]}]},
        "status": {"phase": "Running", "containerStatuses": [{"name": CONTAINER, "restartCount": 0}]},
    }


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping):
            _merge(target.setdefault(key, {}), value)
        else:
            target[key] = value


@dataclass
class World:
    """The API server and kopf's indexes, in memory."""

    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    suspensions: dict[str, SuspensionInfo] = field(default_factory=dict)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    version: int = 1
    dispatch: Dispatch = field(init=False)  # the pod workers the world's changes wake, set by the fixture
    events: list[dict[str, Any]] = field(default_factory=list)  # every pod's, as the kubelet posts them
    # Shared with the executor: every ledger write (pod, "write", seq) and go-ahead, in order.
    timeline: list[tuple[str, str, int]] = field(default_factory=list)
    refuse_writes: set[str] = field(default_factory=set)  # pods whose metadata patches fail (an API outage)
    urgent_writes: list[tuple[str, bool]] = field(default_factory=list)  # (pod, urgent) of every metadata patch
    on_write: Callable[[str], None] | None = None  # called with the pod's name after each patch is applied
    before_write: Callable[[str], None] | None = None  # called before; it may raise (the write fails)
    # pod -> seconds its next urgent write (a go-ahead's) takes: an overloaded API server, once.
    slow_urgent_writes: dict[str, float] = field(default_factory=dict)
    # Suspensions the API server has that the index does not show (yet): kopf's watch lags behind it.
    unindexed: dict[str, SuspensionInfo] = field(default_factory=dict)

    def pods_of(self, namespace: str) -> list[PodInfo]:
        return [pod_info_from_body(body) for body in self.pods.values()]

    def pod(self, namespace: str, name: str) -> PodInfo | None:
        return pod_info_from_body(self.pods[name]) if name in self.pods else None

    def suspensions_of(self, namespace: str) -> list[SuspensionInfo]:
        return list(self.suspensions.values())

    def _bump(self, name: str) -> None:
        self.version += 1
        self.pods[name]["metadata"]["resourceVersion"] = str(self.version)

    def changed(self, name: str) -> None:
        """The pod changed: tell its worker, as the pod watch does."""
        self.dispatch.ensure_worker(NAMESPACE, name)

    # What the operator calls (KubeClient's interface).

    async def get_pod(self, namespace: str, name: str, *, urgent: bool = False) -> dict[str, Any]:
        if name not in self.pods:
            raise NotFound(f"pod {name}")
        return copy.deepcopy(self.pods[name])

    async def patch_pod_metadata(
        self,
        namespace: str,
        name: str,
        metadata: Mapping[str, Any],
        resource_version: str | None,
        uid: str | None = None,
        *,
        urgent: bool = False,
    ) -> dict[str, Any]:
        if name not in self.pods:
            raise NotFound(f"pod {name}")
        if self.before_write is not None:
            self.before_write(name)
        if urgent and name in self.slow_urgent_writes:
            await asyncio.sleep(self.slow_urgent_writes.pop(name))
        if name in self.refuse_writes:
            raise ApiError(f"pod {name}: the API server is unavailable")
        meta = self.pods[name]["metadata"]
        if resource_version is not None and resource_version != meta["resourceVersion"]:
            raise Conflict(f"pod {name} changed")
        if uid is not None and uid != meta["uid"]:
            raise Conflict(f"Precondition failed: UID in precondition: {uid}, UID in object meta: {meta['uid']}")
        _merge(meta, metadata)
        self._bump(name)
        self.timeline.append((name, "write", self.ledger(name).seq))
        self.urgent_writes.append((name, urgent))
        written = copy.deepcopy(self.pods[name])
        if self.on_write is not None:
            self.on_write(name)
        return written

    async def pod_events(self, namespace: str, pod_uid: str) -> list[dict[str, Any]]:
        return copy.deepcopy(self.events)

    async def patch_suspension_status(self, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        self.statuses.append(dict(status))

    # What the tests do.

    def add_pod(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        self.pods[name] = pod_body(name, labels)
        self.changed(name)

    def recreate(self, name: str) -> None:
        """The pod deleted and created again under its name (a StatefulSet): a new uid, no ledger, no label."""
        body = pod_body(name)
        self.version += 1
        body["metadata"]["uid"] = f"uid-{name}-{self.version}"
        body["metadata"]["resourceVersion"] = str(self.version)
        self.pods[name] = body
        self.changed(name)

    def relabel(self, name: str, labels: Mapping[str, str | None]) -> None:
        _merge(self.pods[name]["metadata"], {"labels": dict(labels)})
        self._bump(name)
        self.changed(name)

    def restart(self, name: str) -> None:
        self.pods[name]["status"]["containerStatuses"][0]["restartCount"] += 1
        self._bump(name)
        self.changed(name)

    def terminate(self, name: str) -> None:
        """The pod is being deleted (deletionTimestamp set), its containers still up."""
        self.pods[name]["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z"
        self._bump(name)
        self.changed(name)

    def edit_annotations(self, name: str, annotations: Mapping[str, str | None]) -> None:
        """A person (or a tool) changes the pod's annotations."""
        _merge(self.pods[name]["metadata"], {"annotations": dict(annotations)})
        self._bump(name)
        self.changed(name)

    def delete_pod(self, name: str) -> None:
        del self.pods[name]
        self.changed(name)

    def suspend(self, name: str, generation: int = 1, deleting: bool = False, **spec: Any) -> SuspensionInfo:
        info = suspension_info(name, f"uid-{name}", generation, {"instanceGroup": "db", **spec}, {}, deleting=deleting)
        self.suspensions[name] = info
        self.dispatch.wake_pods_of(info, NAMESPACE)
        return info

    def forget(self, name: str) -> None:
        """The suspension object is gone (finalizer removed by hand)."""
        info = self.suspensions.pop(name, None) or self.unindexed.pop(name)
        self.dispatch.wake_pods_of(info, NAMESPACE)

    def unindex(self, name: str) -> None:
        """The suspension is still there, but the index no longer shows it (a watch that lags)."""
        info = self.unindexed[name] = self.suspensions.pop(name)
        self.dispatch.wake_pods_of(info, NAMESPACE)

    async def find_suspension(self, namespace: str, name: str) -> dict[str, Any] | None:
        info = self.suspensions.get(name) or self.unindexed.get(name)
        return None if info is None else {"metadata": {"name": name, "namespace": namespace, "uid": info.uid}}

    def ledger(self, pod: str) -> Ledger:
        return parse_ledger(self.pods[pod]["metadata"].get("annotations"))

    def label(self, pod: str) -> str | None:
        value: str | None = self.pods[pod]["metadata"].get("labels", {}).get(SUSPENDED_LABEL)
        return value

    def annotation(self, pod: str) -> str | None:
        value: str | None = self.pods[pod]["metadata"].get("annotations", {}).get(HOLDS_ANNOTATION)
        return value


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Events the operator posts: (object name, reason, message)."""
    posted: list[tuple[str, str, str]] = []

    def record(body: Mapping[str, Any], *, type: str, reason: str, message: str = "") -> None:
        posted.append((body["metadata"]["name"], reason, message))

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


SETTINGS = ProcessControlSettings(
    verify_timeout_s=15, verify_interval_s=0.02, failure_backoff_s=0.5, status_interval_s=0.05, metrics_port=0
)


@pytest.fixture
async def world(pods: dict[str, FakePod]) -> AsyncIterator[tuple[World, LocalExecutor, Runtime]]:
    """The in-memory API with the two pods, and the runtime whose workers act on them."""
    made = World()
    executor = LocalExecutor(pods)
    executor.timeline = made.timeline
    runtime = Runtime(settings=SETTINGS, executor=executor, kube=made)  # type: ignore[arg-type]
    runtime.pods_of = made.pods_of
    runtime.pod = made.pod
    runtime.suspensions_of = made.suspensions_of
    made.dispatch = Dispatch(runtime)
    for name in pods:
        made.add_pod(name)
    yield made, executor, runtime
    for gate in executor.hold.values():
        gate.set()
    await made.dispatch.stop_workers()
    for straggler in executor.stragglers:
        straggler.cancel()
    await asyncio.gather(*executor.stragglers, return_exceptions=True)


async def eventually(check: Callable[[], bool | Awaitable[bool]], what: str, within: float = 15.0) -> None:
    """Poll a condition until it holds, or fail naming it."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"timed out after {within:g}s waiting for: {what}"
        await asyncio.sleep(0.02)
