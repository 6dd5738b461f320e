"""The packaged Helm chart on its own fresh control plane: bad values refused at install; install, the operator
acting on a suspension; upgrade with a changed setting while it holds; uninstall and what it leaves.

See tests/e2e/local_release.py for what is real here and what the test plays (scheduler and kubelet of the
operator's pod: the operator runs as a host process with the pod's args, env and ServiceAccount token).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import chart, fakepods
from harness.base import kubectl, pid_alive, wait_until

from .local_release import KWOK_PLACEMENT, LocalKubelet, fresh_control_plane

MYSQL = "pxc-mysql/mysql"
AGENT = "pxc-mysql/galera-agent"
BOTH = (MYSQL, AGENT)
WORKLOAD = "helm-e2e"  # the namespace of the fake kubecf pods
SUSPENDED_LABEL = "processcontrol.dev/suspended"
CRD = "crd/processsuspensions.processcontrol.dev"


@pytest.fixture(scope="module")
def plane() -> Iterator[Path]:
    with fresh_control_plane("helm") as state:
        yield state


@pytest.fixture(scope="module")
def package() -> Path:
    """`make dist`'s chart package: the tests install what would be released."""
    _, tgz = chart.build_dist()
    return tgz


@pytest.fixture
def kubelet(plane: Path) -> Iterator[LocalKubelet]:
    runner = LocalKubelet(plane)
    yield runner
    runner.stop_all()


def k(plane: Path, *args: str, check: bool = True) -> str:
    return kubectl(*args, state=plane, check=check).stdout


def psus(plane: Path, name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(k(plane, "get", "psus", name, "-n", WORKLOAD, "-o", "json"))
    return result


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), {})


def running(plane: Path, pod: str, job_process: str) -> bool:
    return fakepods.running_path(WORKLOAD, pod, fakepods.JobProcess.parse(job_process), plane).exists()


def main_pid(plane: Path, pod: str, job_process: str) -> int | None:
    path = fakepods.pid_path(WORKLOAD, pod, fakepods.JobProcess.parse(job_process), plane)
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def any_running(plane: Path, pods: list[str]) -> bool:
    return any(running(plane, p, jp) for p in pods for jp in BOTH)


def resume_events(plane: Path, name: str) -> list[str]:
    items = json.loads(
        k(
            plane,
            "get",
            "events",
            "-n",
            WORKLOAD,
            "-o",
            "json",
            f"--field-selector=involvedObject.kind=ProcessSuspension,involvedObject.name={name}",
        )
    )["items"]
    return [e["reason"] for e in items if e["reason"].startswith("Resum")]


def report(plane: Path, name: str, text: str) -> None:
    """Keep a command's output next to the logs, for the record."""
    (plane / "logs" / name).write_text(text)
    print(f"----- {name}\n{text}")


def test_bad_values_are_refused_by_helm_install(plane: Path, package: Path) -> None:
    result = chart.helm(
        "install", "processcontrol", str(package), "-n", chart.NAMESPACE, "--create-namespace",
        "--set", "scope=namespaced", "--set", "settings.exec_timeout_s=-1",
        kubeconfig=plane / "kubeconfig", check=False,
    )  # fmt: skip
    report(plane, "helm-install-bad-values.txt", result.stderr)
    assert result.returncode == 1
    assert "values don't meet the specifications of the schema" in result.stderr
    assert "at '/namespaces': minItems: got 0, want 1" in result.stderr
    assert "at '/settings/exec_timeout_s': exclusiveMinimum" in result.stderr
    assert chart.helm("list", "-A", "-q", kubeconfig=plane / "kubeconfig").stdout.strip() == ""
    # Nothing of the release was created; but helm 3 creates the crds/ folder's CRDs before it checks the values,
    # so the CRD exists after the failed install (harmless: it is what a good install creates, and it stays).
    assert k(plane, "get", "deployment,serviceaccount", "-n", chart.NAMESPACE, "-o", "name", check=False) == ""
    assert k(plane, "get", "clusterrole", "processcontrol", "--ignore-not-found") == ""
    assert k(plane, "get", CRD, "-o", "name").strip() == "customresourcedefinition.apiextensions.k8s.io/" + CRD[4:]


@pytest.mark.timeout(900)
def replica_set(pod: str) -> str:
    """The ReplicaSet part of a Deployment pod's name (`<deployment>-<template hash>-<suffix>`)."""
    return pod.rsplit("-", 1)[0]


def test_install_upgrade_uninstall_leave_no_process_stopped_without_an_owner(
    plane: Path, package: Path, kubelet: LocalKubelet
) -> None:
    ns = ("-n", chart.NAMESPACE)
    # 1. helm install of the packaged chart: CRD from crds/, RBAC, ServiceAccount, the Deployment.
    installed = kubelet.helm(
        "install", "processcontrol", str(package), *ns, "--create-namespace", "--wait", "--timeout", "180s",
        "--set", "settings.reverify_interval_s=5", "--set", "settings.failure_backoff_s=2", *KWOK_PLACEMENT,
    )  # fmt: skip
    report(plane, "helm-install.txt", installed.stdout + installed.stderr)
    assert "STATUS: deployed" in installed.stdout
    assert "It acts on ProcessSuspensions in every namespace." in installed.stdout
    k(plane, "wait", "--for=condition=Established", "--timeout=60s", CRD)
    deployment = json.loads(k(plane, "get", "deployment", "processcontrol", *ns, "-o", "json"))
    # Two replicas by default: one leads on the Lease, one stands by (this kubelet runs one process at a time).
    assert deployment["spec"]["replicas"] == 2
    assert deployment["status"]["availableReplicas"] == 2
    first = kubelet.wait_running(1)
    assert first.args == ("--all-namespaces",)
    assert first.env["PROCESSCONTROL_REVERIFY_INTERVAL_S"] == "5"

    # 2. The operator (the chart's ServiceAccount token, the chart's RBAC) suspends an instance group.
    pods = fakepods.create_group("database", WORKLOAD, 2, ",".join(BOTH), state=plane)
    pids = {(p, jp): main_pid(plane, p, jp) for p in pods for jp in BOTH}
    suspension = {
        "apiVersion": "processcontrol.dev/v1alpha1",
        "kind": "ProcessSuspension",
        "metadata": {"name": "maintenance", "namespace": WORKLOAD},
        "spec": {"instanceGroup": "database", "reason": "helm e2e"},
    }
    kubectl("apply", "-f", "-", input_text=json.dumps(suspension), state=plane)
    k(plane, "wait", "-n", WORKLOAD, "psus/maintenance", "--for=condition=Ready", "--timeout=90s")
    assert not any_running(plane, pods)
    assert not any(pid_alive(pid) for pid in pids.values() if pid)
    held = psus(plane, "maintenance")
    assert condition(held, "Suspended")["status"] == "True"
    assert {p["state"] for p in held["status"]["pods"]} == {"Suspended"}

    # 3. helm upgrade with a changed setting while the suspension holds: Recreate stops the old operator before
    #    the new one starts; no process may start meanwhile, the suspension keeps every pod.
    seen_running: list[bool] = []
    # containerrun writes a new pid file each time it starts a process: unchanged files mean nothing started.
    pid_files = {(p, jp): main_pid(plane, p, jp) for p in pods for jp in BOTH}
    upgraded = kubelet.helm(
        "upgrade", "processcontrol", str(package), *ns, "--reuse-values", "--wait", "--timeout", "180s",
        "--set", "settings.reverify_interval_s=7",
        tick=lambda: seen_running.append(any_running(plane, pods)),
    )  # fmt: skip
    report(plane, "helm-upgrade.txt", upgraded.stdout + upgraded.stderr)
    assert "has been upgraded" in upgraded.stdout
    second = kubelet.wait_running(2)
    assert second is not first
    # Never two operators at once (this kubelet runs one): each start comes after the stop of the one before. The
    # rolling update may run the old ReplicaSet's other pod for a moment in between; the last one is a new pod.
    starts_stops = [event for event, _ in kubelet.history]
    assert starts_stops == ["start", "stop"] * (len(starts_stops) // 2) + ["start"], kubelet.history
    assert replica_set(kubelet.history[-1][1]) != replica_set(kubelet.history[0][1]), kubelet.history
    assert second.env["PROCESSCONTROL_REVERIFY_INTERVAL_S"] == "7"
    wait_until(lambda: "'reverify_interval_s': 7.0" in second.log_tail(200), what="the new setting in effect")
    # Two re-verification rounds of the new operator: still nothing started, nothing released.
    end = time.monotonic() + 16
    while time.monotonic() < end:
        seen_running.append(any_running(plane, pods))
        time.sleep(0.5)
    assert seen_running and not any(seen_running)
    assert {(p, jp): main_pid(plane, p, jp) for p in pods for jp in BOTH} == pid_files
    after = psus(plane, "maintenance")
    assert after["metadata"]["uid"] == held["metadata"]["uid"]
    assert condition(after, "Suspended")["status"] == "True"
    assert condition(after, "Ready")["status"] == "True"
    assert {p["name"] for p in after["status"]["pods"]} == {p["name"] for p in held["status"]["pods"]}
    assert {p["state"] for p in after["status"]["pods"]} == {"Suspended"}
    assert resume_events(plane, "maintenance") == []

    # 4. helm uninstall: the release's objects go; the CRD (crds/ is never deleted by Helm), the suspension with
    #    its finalizer, and so the stopped processes and the pods' label stay: each stopped process still has
    #    its owner, the ProcessSuspension that a new operator takes over.
    uninstalled = kubelet.helm("uninstall", "processcontrol", *ns, "--wait", "--timeout", "120s")
    report(plane, "helm-uninstall.txt", uninstalled.stdout + uninstalled.stderr)
    assert 'release "processcontrol" uninstalled' in uninstalled.stdout
    assert kubelet.running() == []
    for kind in ("deployment", "serviceaccount"):
        assert k(plane, "get", kind, "processcontrol", *ns, "--ignore-not-found") == ""
    assert k(plane, "get", "clusterrole,clusterrolebinding", "processcontrol", "--ignore-not-found") == ""
    assert k(plane, "get", CRD, "-o", "name").strip()
    kept = psus(plane, "maintenance")
    assert "processcontrol.dev/resume" in kept["metadata"]["finalizers"]
    assert condition(kept, "Suspended")["status"] == "True"
    assert not any_running(plane, pods)
    for pod in pods:
        labels = json.loads(k(plane, "get", "pod", pod, "-n", WORKLOAD, "-o", "json"))["metadata"]["labels"]
        assert labels.get(SUSPENDED_LABEL) == "true"

    # 5. Deleting the suspension without an operator: the finalizer holds it (Terminating), nothing resumes, and
    #    nothing is lost: the object that says which processes are stopped stays until an operator resumes them.
    k(plane, "delete", "psus", "maintenance", "-n", WORKLOAD, "--wait=false")
    # No pause needed: the deletion is recorded in the answer, and with no operator running nothing can resume.
    assert kubelet.running() == []
    terminating = psus(plane, "maintenance")
    assert terminating["metadata"].get("deletionTimestamp")
    assert not any_running(plane, pods)

    # 6. Install again, namespaced this time (a Role in the workload namespace only): the new operator resumes
    #    the processes, then releases the finalizer; the suspension is gone and every process runs.
    started = sum(1 for event, _ in kubelet.history if event == "start")
    again = kubelet.helm(
        "install", "processcontrol", str(package), *ns, "--wait", "--timeout", "180s",
        "--set", "scope=namespaced", "--set", f"namespaces={{{WORKLOAD}}}", *KWOK_PLACEMENT,
    )  # fmt: skip
    report(plane, "helm-install-namespaced.txt", again.stdout + again.stderr)
    assert f"It acts on ProcessSuspensions only in: {WORKLOAD}." in again.stdout
    third = kubelet.wait_running(started + 1)
    assert third.args == (f"--namespace={WORKLOAD}",)
    wait_until(
        lambda: k(plane, "get", "psus", "maintenance", "-n", WORKLOAD, "--ignore-not-found") == "",
        timeout=90,
        what="the deleted suspension to be released",
    )
    wait_until(lambda: all(running(plane, p, jp) for p in pods for jp in BOTH), timeout=30, what="every process")
    assert all(pid_alive(main_pid(plane, p, jp) or -1) for p in pods for jp in BOTH)
    for pod in pods:
        labels = json.loads(k(plane, "get", "pod", pod, "-n", WORKLOAD, "-o", "json"))["metadata"]["labels"]
        assert SUSPENDED_LABEL not in labels
    kubelet.helm("uninstall", "processcontrol", *ns, "--wait", "--timeout", "120s")
