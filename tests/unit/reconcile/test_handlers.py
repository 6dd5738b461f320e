"""The real kopf operator (our registered handlers) against kmock's Kubernetes emulator and a fake exec transport.

kmock serves a stateful fake API on a loopback port. Both API clients of the operator talk to it over HTTP, as
they would to a cluster, through one kubeconfig: kopf (aiohttp, logged in by its own `login_via_client`) for the
discovery, watches, finalizer and events, and our `KubeClient` (the official client, urllib3) for the
status subresource and the pod labels. Only the exec transport is replaced: a scripted fake that keeps each pod's
processes in memory and prints what the in-pod script prints (STOP/START are sent while the process is still up;
the next look finds it gone or back, as containerrun behaves), so the operator must verify with a look.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import attrs
import jsonpatch
import kmock
import kopf
import kubernetes
import pytest
from typing_extensions import override

import processcontrol.reconcile.handlers  # noqa: F401  (registers the handlers in kopf's default registry)
from processcontrol.api import GROUP, INSTANCE_GROUP_LABEL, PLURAL, SUSPENDED_LABEL, VERSION
from processcontrol.podexec.script import PREFIX
from processcontrol.podexec.transport import Dialogue, ExecResult
from processcontrol.reconcile import runtime as runtime_module
from processcontrol.reconcile import suspension as suspension_module
from processcontrol.reconcile.leader import Leadership

NAMESPACE = "kubecf"
NAME = "db-maintenance"
FINALIZER = "processcontrol.dev/resume"
PODS = ("db-0", "db-1")
PROCESSES = (("pxc-mysql", "mysql"), ("pxc-mysql", "galera-agent"))
SUSPENSIONS = f"{GROUP}/{VERSION}/{PLURAL}"
DEADLINE_S = 10.0
IMAGE = "kubecf/pxc:1"


# The fake API -----------------------------------------------------------------------------------------------------


@attrs.define(kw_only=True)
class Cluster(kmock.KubernetesEmulator):
    """kmock's emulator with the two API server behaviours kopf relies on and kmock leaves out.

    - `metadata.resourceVersion` changes on every write, and a JSON patch whose `test` of it fails is answered
      422, so kopf's optimistic finalizer patches work as on a real API server;
    - `metadata.generateName` is honoured, so kopf can post more than one event.
    """

    _versions: Iterator[int] = attrs.field(factory=lambda: itertools.count(1), init=False)
    _names: Iterator[int] = attrs.field(factory=lambda: itertools.count(1), init=False)

    @override
    async def _handle(self, request: kmock.Request) -> Any:
        data = request.data
        if request.resource is not None and request.action == kmock.action.CREATE and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{next(self._names)}"
            meta["resourceVersion"] = str(next(self._versions))
        elif request.resource is not None and request.action == kmock.action.UPDATE and request.name is not None:
            if isinstance(data, list):  # a JSON patch: kopf's `test` of the version runs first, then the bump
                data.append({"op": "replace", "path": "/metadata/resourceVersion", "value": str(next(self._versions))})
            elif isinstance(data, dict):  # a merge patch, as our KubeClient and kopf's annotations send
                data.setdefault("metadata", {})["resourceVersion"] = str(next(self._versions))
        return await super()._handle(request)

    @override
    async def _render_error(self, exc: Exception) -> Any:
        if isinstance(exc, jsonpatch.JsonPatchTestFailed):  # the object changed since the patcher read it
            exc = kmock.KubernetesError(status=422, reason="Invalid", message=f"the object has changed: {exc}")
        return await super()._render_error(exc)

    def suspension(self) -> Any:
        return self.objects[SUSPENSIONS, NAMESPACE, NAME]

    def pod(self, name: str) -> Any:
        return self.objects["v1/pods", NAMESPACE, name]

    def writes(self, *, subresource: str | None = None, plural: str | None = None) -> list[kmock.Request]:
        """The PATCH requests the operator sent, oldest first."""
        return [
            r
            for r in list(self)
            if r.method == kmock.method.PATCH
            and r.subresource == subresource
            and (plural is None or (r.resource is not None and r.resource.plural == plural))
        ]

    def event_messages(self) -> dict[str, str]:
        return {
            r.data.get("reason", ""): r.data.get("message", "")
            for r in list(self)
            if r.method == kmock.method.POST and r.resource is not None and r.resource.plural == "events"
        }

    def event_reasons(self) -> list[str]:
        return [
            r.data.get("reason", "")
            for r in list(self)
            if r.method == kmock.method.POST and r.resource is not None and r.resource.plural == "events"
        ]


def _official_client(request: kmock.Request) -> bool:
    return str(request.headers.get("User-Agent", "")).startswith("OpenAPI-Generator")


def pod_body(name: str, restarts: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": f"uid-{name}",
            "labels": {INSTANCE_GROUP_LABEL: "db"},
        },
        "spec": {
            "containers": [
                {"name": "logs", "image": IMAGE, "volumeMounts": [{"name": "logs", "mountPath": "/var/vcap/sys/log"}]},
                {
                    "name": "pxc-mysql",
                    "image": IMAGE,
                    "volumeMounts": [{"name": "data", "mountPath": "/var/vcap/data"}],
                },
            ]
        },
        "status": {
            "phase": "Running",
            "containerStatuses": [
                {"name": c, "image": IMAGE, "imageID": IMAGE, "ready": True, "restartCount": n}
                for c, n in (("logs", 0), ("pxc-mysql", restarts))
            ],
        },
    }


def suspension_body() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ProcessSuspension",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "uid": "uid-suspension",
            "generation": 1,
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"instanceGroup": "db", "suspend": True, "reason": "backup", "requestedBy": {"username": "alice"}},
    }


# The fake exec transport ------------------------------------------------------------------------------------------


@dataclass
class ScriptedPod:
    """One pod's containerrun processes: whether each runs, and what the last STOP/START asked for."""

    running: dict[tuple[str, str], bool] = field(default_factory=lambda: dict.fromkeys(PROCESSES, True))
    requested: dict[tuple[str, str], bool] = field(default_factory=dict)


@dataclass
class ScriptedExecutor:
    """Answers the in-pod script's command line with the lines the script prints, from in-memory process states.

    STOP/START report `sent` with the process as it was (containerrun takes a moment); the next look reports
    the requested state. Every call is recorded as (pod, container, what it did: STOP, START or LOOK).
    """

    pods: dict[str, ScriptedPod] = field(default_factory=lambda: {name: ScriptedPod() for name in PODS})
    calls: list[tuple[str, str, str]] = field(default_factory=list)

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
        assert namespace == NAMESPACE
        jobs, processes, only = command[4], command[5], command[8]
        state = self.pods[pod]
        for key in list(state.requested):
            state.running[key] = state.requested.pop(key)
        selected = []
        for job, process in PROCESSES:
            if (jobs and job not in jobs.split(",")) or (processes and process not in processes.split(",")):
                continue
            if only != "*" and f"{job}/{process}" not in only.split("\n"):
                continue
            selected.append((job, process))
        lines = [f"{PREFIX}\ttool\tncat"]
        for job, process in selected:
            running = state.running[(job, process)]
            pid = "4242" if running else "-"
            lines.append(f"{PREFIX}\tsocket\t{job}\t{process}\tprobed\t{int(running)}\t{pid}\t{int(running)}")
        lines.append(f"{PREFIX}\tready\t{len(selected)}")
        answer = await dialogue.answer("\n".join(lines) + "\n") if dialogue is not None else None
        if not answer:
            self.calls.append((pod, container, "LOOK"))
            lines += [f"{PREFIX}\tidle\teof", f"{PREFIX}\tend\t0"]
            return ExecResult("\n".join(lines) + "\n", "", 0, 0.001)
        action, seq, *pairs = answer.rstrip("\n").split("\t")
        self.calls.append((pod, container, action))
        lines += [f"{PREFIX}\tgo\t{action}\t{seq}", f"{PREFIX}\ttool\tncat"]
        sent = [pair for pair in selected if "/".join(pair) in pairs]
        for key in sent:
            state.requested[key] = action == "START"
            running = state.running[key]
            # STOP/START do not change `running` here (containerrun takes a moment): the next look sees it.
            pid = "4242" if running else "-"
            lines.append(f"{PREFIX}\tsocket\t{key[0]}\t{key[1]}\tsent\t{int(running)}\t{pid}\t{int(running)}")
        lines.append(f"{PREFIX}\tend\t{len(sent)}")
        return ExecResult("\n".join(lines) + "\n", "", 0, 0.001)

    def restart(self, pod: str) -> None:
        """A container restart: containerrun comes back with its processes running."""
        self.pods[pod] = ScriptedPod()

    def actions(self, pod: str) -> list[str]:
        return [action for name, _, action in self.calls if name == pod]


# The operator -----------------------------------------------------------------------------------------------------


@dataclass
class Operator:
    api: Cluster
    executor: ScriptedExecutor


async def until(predicate: Callable[[], bool], what: str, within: float = DEADLINE_S) -> None:
    """Poll a condition until it holds, or fail naming it."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {within:g}s waiting for: {what}"
        await asyncio.sleep(0.02)


def _write_kubeconfig(path: Path, url: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": url}}],
        "users": [{"name": "test", "user": {"token": "test-token"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "test", "namespace": NAMESPACE}}],
        "current-context": "kmock",
    }
    path.write_text(json.dumps(config))


@pytest.fixture
async def operator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Operator]:
    async with Cluster() as api, kmock.Server(api) as server:
        info = kmock.ResourceInfo
        verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
        api.resources[SUSPENSIONS] = info(
            kind="ProcessSuspension",
            singular="processsuspension",
            namespaced=True,
            verbs=verbs,
            subresources=["status"],
        )
        api.resources["v1/pods"] = info(kind="Pod", singular="pod", namespaced=True, verbs=verbs)
        api.resources["v1/events"] = info(kind="Event", singular="event", namespaced=True, verbs=verbs)
        api.resources["v1/namespaces"] = info(kind="Namespace", singular="namespace", namespaced=False, verbs=verbs)

        # One kubeconfig for both clients: kopf's login_via_client and our load_configuration() read it.
        kubeconfig = tmp_path / "kubeconfig"
        _write_kubeconfig(kubeconfig, f"http://{server.host}:{server.port}")
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.setattr(kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig))
        monkeypatch.setenv("PROCESSCONTROL_METRICS_PORT", "0")
        monkeypatch.setenv("PROCESSCONTROL_VERIFY_INTERVAL_S", "0.02")
        monkeypatch.setenv("PROCESSCONTROL_STATUS_INTERVAL_S", "0.2")

        # The one replacement: start_runtime builds our fake instead of the websocket exec transport.
        executor = ScriptedExecutor()
        built: list[Any] = []

        def fake_transport(configuration: Any, **options: Any) -> ScriptedExecutor:
            built.append((configuration, options))
            return executor

        monkeypatch.setattr(runtime_module, "KubernetesPodExecutor", fake_transport)
        # And it leads from the start, with no Lease (kmock's emulator does not replace Leases as the API server
        # does): election has its own tests (test_leader.py, tests/e2e/test_leader.py).
        monkeypatch.setattr(runtime_module, "Leadership", lambda *_, **__: Leadership.solo())

        for name in PODS:
            await api.post(f"/api/v1/namespaces/{NAMESPACE}/pods", json=pod_body(name))

        # kopf runs in its own thread and event loop, as in production: on exit it waits up to 5 s for every task
        # created after it started, which in a shared loop would include the fake API server's stream handlers.
        stop = threading.Event()
        ready = threading.Event()
        crashed: list[BaseException] = []

        def run() -> None:
            settings = kopf.OperatorSettings()
            settings.scanning.disabled = True  # no CRD or namespace watching: kmock serves what we declared
            try:
                asyncio.run(
                    kopf.operator(
                        registry=kopf.get_default_registry(),
                        settings=settings,
                        standalone=True,
                        clusterwide=False,
                        namespaces=[NAMESPACE],
                        stop_flag=stop,
                        ready_flag=ready,
                    )
                )
            except BaseException as error:
                crashed.append(error)

        thread = threading.Thread(target=run, name="kopf-operator", daemon=True)
        thread.start()
        try:
            assert await asyncio.to_thread(ready.wait, DEADLINE_S), f"the operator did not start: {crashed}"
            assert built, "the operator's startup built its exec transport"
            assert built[0][0].host == f"http://{server.host}:{server.port}"
            yield Operator(api, executor)
        finally:
            stop.set()
            await asyncio.to_thread(thread.join, DEADLINE_S)
        assert not thread.is_alive(), "the operator stops when asked"
        assert not crashed, f"the operator crashed: {crashed}"


# Scenarios --------------------------------------------------------------------------------------------------------


def _conditions(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}


def _suspended(api: Cluster) -> bool:
    status = api.suspension().get("status") or {}
    return _conditions(status).get("Ready") == ("True", "Suspended") and all(
        api.pod(name)["metadata"].get("labels", {}).get(SUSPENDED_LABEL) == "true" for name in PODS
    )


async def create_and_wait_suspended(op: Operator) -> None:
    await op.api.post(f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}", json=suspension_body())
    await until(lambda: _suspended(op.api), "Ready=True/Suspended and both pods labelled")


async def test_create_adds_finalizer_stops_verifies_and_reports(operator: Operator) -> None:
    api, executor = operator.api, operator.executor

    await create_and_wait_suspended(operator)

    # kopf watches exactly the two resources, in the operator's namespace, with the timeout start_runtime set.
    watches = [r for r in list(api) if r.action == kmock.action.WATCH]
    assert {(r.resource and r.resource.plural, r.namespace, r.params.get("timeoutSeconds")) for r in watches} == {
        ("pods", NAMESPACE, "300"),
        (PLURAL, NAMESPACE, "300"),
    }

    suspension = api.suspension()
    assert FINALIZER in suspension["metadata"]["finalizers"]
    finalizer_patches = [r for r in api.writes(plural=PLURAL) if FINALIZER in json.dumps(r.data)]
    assert finalizer_patches, "kopf added our finalizer with a PATCH"
    assert not any(_official_client(r) for r in finalizer_patches)

    for pod in PODS:
        assert executor.actions(pod)[:2] == ["STOP", "LOOK"], f"{pod}: ledger and STOP in one exec, then verified"
        assert {container for name, container, _ in executor.calls if name == pod} == {"pxc-mysql"}
        assert all(not running for running in executor.pods[pod].running.values())

    status_patches = api.writes(subresource="status", plural=PLURAL)
    # A CRD takes no strategic merge patch: the status must go as a JSON merge patch.
    assert {r.headers.get("Content-Type") for r in status_patches} == {"application/merge-patch+json"}
    assert status_patches and all(_official_client(r) for r in status_patches), "status goes through KubeClient"
    status = suspension["status"]
    assert _conditions(status)["Ready"] == ("True", "Suspended")
    assert _conditions(status)["Suspended"][0] == "True"
    assert status["summary"] == "2/2"
    assert status["observedGeneration"] == 1
    assert {p["name"]: p["state"] for p in status["pods"]} == dict.fromkeys(PODS, "Suspended")

    for pod in PODS:
        label_patches = [r for r in api.writes(plural="pods") if r.name == pod and _official_client(r)]
        assert [r.data["metadata"]["labels"] for r in label_patches][:1] == [{SUSPENDED_LABEL: "true"}]
        ledger = json.loads(api.pod(pod)["metadata"]["annotations"]["processcontrol.dev/holds"])
        assert set(ledger["holds"]) == {"uid-suspension"}, "the hold is written down on the pod"
    await until(lambda: "Suspended" in api.event_reasons(), "the Suspended event")
    assert "Suspending" in api.event_reasons()
    # The events about the suspension say why and who asked.
    messages = api.event_messages()
    assert messages["Suspending"] == "Suspending processes (reason: backup; requested by alice)"
    assert messages["Suspended"].endswith(" (reason: backup; requested by alice)")


async def test_a_container_restart_stops_that_pod_again(operator: Operator) -> None:
    api, executor = operator.api, operator.executor
    await create_and_wait_suspended(operator)
    await until(lambda: len(executor.calls) == 4, "the first execs")  # nothing more while all is quiet
    executor.calls.clear()

    executor.restart("db-1")
    restarted = pod_body("db-1", restarts=1)["status"]
    await api.patch(f"/api/v1/namespaces/{NAMESPACE}/pods/db-1", json={"status": restarted})

    await until(lambda: not any(executor.pods["db-1"].running.values()), "db-1's processes stopped again")
    await until(lambda: "Resuspended" in api.event_reasons(), "the Resuspended event")
    assert executor.actions("db-1")[:2] == ["STOP", "LOOK"]
    assert executor.actions("db-0") == [], "the pod that did not restart is left alone"
    assert {p["name"]: p["state"] for p in api.suspension()["status"]["pods"]} == dict.fromkeys(PODS, "Suspended")


async def test_delete_resumes_then_releases_the_finalizer(operator: Operator) -> None:
    api, executor = operator.api, operator.executor
    await create_and_wait_suspended(operator)
    # On loaded cores the pods can be stopped and Ready written before kopf's finalizer lands (the workers act on
    # the object's first event); deleted then, the object goes at once and the orphan path gives the holds back
    # later. That gap is known (not closed yet); this test is about the release through the finalizer.
    await until(lambda: FINALIZER in (api.suspension().last["metadata"].get("finalizers") or []), "the finalizer")
    executor.calls.clear()

    await api.delete(f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}/{NAME}")

    # kopf stops the status daemon first and may run `release` more than once (at-least-once): allow a repeated
    # look, but never a STOP.
    await until(lambda: api.suspension().deleted, "the object gone once the finalizer is removed", within=15.0)
    for pod in PODS:
        actions = executor.actions(pod)
        assert actions[:2] == ["START", "LOOK"], f"{pod}: START, then verified with a look"
        assert set(actions) == {"START", "LOOK"}, f"{pod}: nothing but resuming after deletion: {actions}"
        assert all(executor.pods[pod].running.values())
        assert SUSPENDED_LABEL not in api.pod(pod)["metadata"].get("labels", {})
    last = api.suspension().last
    assert FINALIZER not in last["metadata"].get("finalizers", [])
    finalizer_release = api.writes(plural=PLURAL)[-1]
    assert isinstance(finalizer_release.data, list), "kopf removes its finalizer with a JSON patch"
    assert not _official_client(finalizer_release)
    await until(lambda: "Released" in api.event_reasons(), "the Released event")
    for pod in PODS:
        assert "processcontrol.dev/holds" not in api.pod(pod)["metadata"].get("annotations", {})


async def test_a_slow_look_at_the_holds_spaces_the_deletions_looks(
    operator: Operator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A deletion's look at which pods still hold runs on the event loop and is O(pods): at 10,000 pods it took
    tens of ms, and it came every 0.1 s for the whole resume (up to a third of the operator's loop). Here a look
    takes 50 ms and keeps answering that db-0 holds for 3 s: the operator looked about 20 times in those 3 s."""
    api = operator.api
    await create_and_wait_suspended(operator)
    await until(lambda: FINALIZER in (api.suspension().last["metadata"].get("finalizers") or []), "the finalizer")
    real = suspension_module.pods_holding
    looks: list[float] = []
    first: list[float] = []

    def slow(*args: Any, **kwargs: Any) -> list[str]:
        now = time.monotonic()
        looks.append(now)
        first[:] = first or [now]
        time.sleep(0.05)
        held = real(*args, **kwargs)
        return held if now > first[0] + 3.0 else sorted({*held, "db-0"})

    monkeypatch.setattr(suspension_module, "pods_holding", slow)
    await api.delete(f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}/{NAME}")
    await until(lambda: api.suspension().deleted, "the object gone once the finalizer is removed", within=15.0)
    while_held = [at for at in looks if at <= first[0] + 3.0]
    assert 2 <= len(while_held) <= 5, len(while_held)


@pytest.fixture
def kubecf_excluded(monkeypatch: pytest.MonkeyPatch) -> None:
    """PROCESSCONTROL_EXCLUDED_NAMESPACES names the operator's namespace (requested before `operator`)."""
    monkeypatch.setenv("PROCESSCONTROL_EXCLUDED_NAMESPACES", f"kube-system,{NAMESPACE}")


async def test_an_excluded_namespace_is_watched_but_never_acted_on(kubecf_excluded: None, operator: Operator) -> None:
    api, executor = operator.api, operator.executor
    await api.post(f"/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}", json=suspension_body())
    # kopf has the object (its watch delivered it), and a second later, when a watched namespace would long be
    # Ready (the other tests), nothing has happened: no finalizer, no status, no exec, no ledger, no label.
    await until(lambda: any(r.action == kmock.action.WATCH and r.resource and r.resource.plural == PLURAL
                            for r in list(api)), "kopf watches the suspensions")  # fmt: skip
    await asyncio.sleep(1.5)
    suspension = api.suspension()
    assert FINALIZER not in (suspension["metadata"].get("finalizers") or [])
    assert not suspension.get("status")
    assert executor.calls == []
    for pod in PODS:
        metadata = api.pod(pod)["metadata"]
        assert "processcontrol.dev/holds" not in metadata.get("annotations", {})
        assert SUSPENDED_LABEL not in metadata.get("labels", {})
    assert api.writes(plural="pods") == []
