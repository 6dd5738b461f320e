"""One kubecf-like instance group (a StatefulSet of 3 pods: 2 process containers under tini + containerrun, and a
logs sidecar) on the real node, suspended and resumed by the operator running as a pod installed from deploy/.

The tests run in file order on one group, as an operator would meet them: suspend, a container restart, a pod
recreated, resume, the operator replaced in the middle of a suspension, deletion. Every check looks inside the
containers (`ps`, containerrun's sentinel) or at the API (conditions, labels, events), never at operator internals.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial

import pytest

from harness.base import kubectl
from harness.realnode import NODE_NAME, RealNode
from harness.workload import PROCESSES, instance_group

from .node_helpers import (
    OPERATOR_NAMESPACE,
    SUSPENDED_LABEL,
    all_running,
    all_stopped,
    get_json,
    group_pods,
    kill_container_init,
    operator_pods,
    pod_ready,
    ready_operator_pod,
    restart_count,
    suspension,
    wait_for,
    wait_ready,
)

GROUP = "web"
REPLICAS = 3
REASON = "real-node e2e: restoring from a raw backup"


@dataclass
class Group:
    """The instance group under test and what the tests learned about it."""

    namespace: str
    pods: list[str]
    pids: dict[str, dict[str, int]] = field(default_factory=dict)


@pytest.fixture(scope="module")
def group(operator_pod: str) -> Iterator[Group]:
    """The StatefulSet, all pods Ready with their processes running."""
    namespace = f"node-e2e-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", namespace)
    kubectl("apply", "-f", "-", input_text=json.dumps(instance_group(GROUP, namespace, REPLICAS)))
    kubectl("rollout", "status", f"statefulset/{GROUP}", "-n", namespace, "--timeout=240s", timeout=260)
    pods = [p["metadata"]["name"] for p in group_pods(namespace, GROUP)]
    assert pods == [f"{GROUP}-{i}" for i in range(REPLICAS)]
    result = Group(namespace, pods)
    for pod in pods:
        result.pids[pod] = wait_for(f"{pod}: processes running", partial(all_running, namespace, pod), 60)
    yield result
    kubectl("delete", "psus", "--all", "-n", namespace, "--timeout=120s", check=False, timeout=140)
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def apply_suspension(namespace: str, suspend: bool) -> None:
    kubectl("apply", "-f", "-", input_text=suspension(GROUP, namespace, GROUP, REASON, suspend))


def psus_status(namespace: str) -> dict[str, object]:
    status: dict[str, object] = get_json("psus", GROUP, "-n", namespace).get("status", {})
    return status


def test_operator_runs_as_a_pod_from_deploy(real_node: RealNode, operator_pod: str) -> None:
    """deploy/'s Deployment runs as deployed: Ready on the real node, its SA, uid, read-only root, metrics port."""
    pod = get_json("pod", operator_pod, "-n", OPERATOR_NAMESPACE)
    assert pod["spec"]["nodeName"] == NODE_NAME
    assert pod_ready(pod)
    assert pod["spec"]["serviceAccountName"] == "processcontrol"
    container = pod["spec"]["containers"][0]
    assert container["image"] == "docker.io/local/processcontrol:dev"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    status = pod["status"]["containerStatuses"][0]
    assert status["restartCount"] == 0, status
    # The metrics port answers on the pod's own address (the host reaches the pod network through the bridge).
    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:9090/metrics", timeout=10) as answer:
        assert b"processcontrol" in answer.read()
    uid = kubectl("exec", "-n", OPERATOR_NAMESPACE, operator_pod, "--", "id", "-u").stdout.strip()
    assert uid == "65532"


def test_suspend_stops_every_process_container(group: Group) -> None:
    """Ready means stopped: inside each process container the main program is gone and the sentinel removed."""
    apply_suspension(group.namespace, suspend=True)
    wait_ready(GROUP, group.namespace)
    for pod in group.pods:
        assert all_stopped(group.namespace, pod), pod
        labels = get_json("pod", pod, "-n", group.namespace)["metadata"].get("labels", {})
        assert labels.get(SUSPENDED_LABEL) == "true", labels
    status = psus_status(group.namespace)
    assert status.get("summary") == f"{REPLICAS}/{REPLICAS}", status
    conditions = {c["type"]: c["status"] for c in status["conditions"]}  # type: ignore[attr-defined]
    assert conditions.get("Suspended") == "True", conditions
    events = get_json(
        "events",
        "-n",
        group.namespace,
        "--field-selector",
        f"involvedObject.kind=ProcessSuspension,involvedObject.name={GROUP}",
    )["items"]
    assert any(REASON in e.get("message", "") for e in events), [e.get("message") for e in events]


def test_container_restart_is_stopped_again(real_node: RealNode, group: Group) -> None:
    """pid 1 of a process container killed: the kubelet restarts it, containerrun starts its program, the
    operator stops it again."""
    pod, process = group.pods[0], PROCESSES[0]
    restarts = kill_container_init(real_node, group.namespace, pod, process.container)

    def restarted() -> bool:
        return restart_count(group.namespace, pod, process.container) > restarts

    wait_for(f"{pod}/{process.container} restarted by the kubelet", restarted, 120)
    wait_for(f"{pod}: stopped again after the restart", lambda: all_stopped(group.namespace, pod), 120)
    wait_ready(GROUP, group.namespace)


def test_recreated_pod_is_stopped_again(group: Group) -> None:
    """A pod deleted and recreated by its StatefulSet (new uid): its processes are stopped too."""
    pod = group.pods[1]
    old_uid = get_json("pod", pod, "-n", group.namespace)["metadata"]["uid"]
    kubectl("delete", "pod", pod, "-n", group.namespace, "--wait=true", "--timeout=120s", timeout=140)

    def recreated() -> bool:
        pods = {p["metadata"]["name"]: p for p in group_pods(group.namespace, GROUP)}
        new = pods.get(pod)
        return new is not None and new["metadata"]["uid"] != old_uid and pod_ready(new)

    wait_for(f"{pod} recreated and Ready", recreated, 180)
    wait_for(f"{pod}: stopped after being recreated", lambda: all_stopped(group.namespace, pod), 120)
    wait_ready(GROUP, group.namespace)
    assert psus_status(group.namespace).get("summary") == f"{REPLICAS}/{REPLICAS}"


def test_resume_starts_processes_with_new_pids(group: Group) -> None:
    """suspend: false -> every process runs again, started anew (new pids), the label removed."""
    apply_suspension(group.namespace, suspend=False)
    wait_ready(GROUP, group.namespace)
    for pod in group.pods:
        pids = wait_for(f"{pod}: running after resume", partial(all_running, group.namespace, pod), 60)
        for name, pid in pids.items():
            assert pid != group.pids[pod].get(name), (pod, name, pid)
        group.pids[pod] = pids
        labels = get_json("pod", pod, "-n", group.namespace)["metadata"].get("labels", {})
        assert SUSPENDED_LABEL not in labels, labels


def test_operator_pod_deleted_mid_suspension(real_node: RealNode, group: Group) -> None:
    """The operator pod deleted right after a suspension is requested: the Deployment's next pod finishes it, and
    it is the new pod that keeps it (a container restarted afterwards is stopped again)."""
    old = [p["metadata"]["name"] for p in operator_pods()]
    apply_suspension(group.namespace, suspend=True)
    kubectl("delete", "pod", "-n", OPERATOR_NAMESPACE, *old, "--wait=false")
    new = ready_operator_pod(exclude=old, timeout=240)
    assert new not in old
    wait_ready(GROUP, group.namespace, timeout=240)
    for pod in group.pods:
        assert all_stopped(group.namespace, pod), pod
    assert psus_status(group.namespace).get("summary") == f"{REPLICAS}/{REPLICAS}"
    wait_for("the old operator pods gone", lambda: not {p["metadata"]["name"] for p in operator_pods()} & set(old), 120)
    pod, process = group.pods[2], PROCESSES[1]
    restarts = kill_container_init(real_node, group.namespace, pod, process.container)
    wait_for(
        f"{pod}/{process.container} restarted",
        lambda: restart_count(group.namespace, pod, process.container) > restarts,
        120,
    )
    wait_for(f"{pod}: stopped again by the new operator pod", lambda: all_stopped(group.namespace, pod), 120)


def test_deletion_resumes_with_new_pids(group: Group) -> None:
    """Deleting the suspension (its finalizer) starts every process again, with new pids; nothing stays labelled."""
    kubectl("delete", "psus", GROUP, "-n", group.namespace, "--timeout=180s", timeout=200)
    for pod in group.pods:
        pids = wait_for(f"{pod}: running after deletion", partial(all_running, group.namespace, pod), 60)
        for name, pid in pids.items():
            assert pid != group.pids[pod].get(name), (pod, name, pid)
        labels = get_json("pod", pod, "-n", group.namespace)["metadata"].get("labels", {})
        assert SUSPENDED_LABEL not in labels, labels
