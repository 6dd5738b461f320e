"""What the real-node tests observe, all through the API server and `kubectl exec` into real containers."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

from harness.base import kubectl, wait_until
from harness.realnode import RealNode
from harness.workload import LABEL_INSTANCE_GROUP, PROCESSES, Process

ROOT = Path(__file__).resolve().parents[2]
OVERLAY = ROOT / "hack" / "realnode-overlay"
OPERATOR_NAMESPACE = "processcontrol-system"
OPERATOR_SELECTOR = "app.kubernetes.io/name=processcontrol"
SUSPENDED_LABEL = "processcontrol.dev/suspended"
LEASE = "processcontrol"

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """wait_until at this tier's pace: every probe here is a kubectl call, most an exec through the kubelet."""
    return wait_until(probe, timeout, what, interval=1.0)


def get_json(*args: str) -> dict[str, Any]:
    """`kubectl get ... -o json`."""
    result: dict[str, Any] = json.loads(kubectl("get", *args, "-o", "json").stdout)
    return result


def install_operator() -> str:
    """Install the way a user does (apply -k of deploy/ with only the image changed); wait for the pod Ready."""
    kubectl("apply", "-k", str(OVERLAY))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/processsuspensions.processcontrol.dev")
    kubectl("rollout", "status", "deployment/processcontrol", "-n", OPERATOR_NAMESPACE, "--timeout=180s", timeout=200)
    return ready_operator_pod()


def operator_pods() -> list[dict[str, Any]]:
    """The operator's pods (not terminating ones)."""
    items: list[dict[str, Any]] = get_json("pods", "-n", OPERATOR_NAMESPACE, "-l", OPERATOR_SELECTOR)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def pod_ready(pod: dict[str, Any]) -> bool:
    """The pod's Ready condition is True."""
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def leader_pod() -> str | None:
    """The operator pod that holds the Lease (the replicas name themselves by their pod's name), if it exists."""
    lease = get_json("lease", LEASE, "-n", OPERATOR_NAMESPACE)
    holder = str((lease.get("spec") or {}).get("holderIdentity") or "")
    names = {p["metadata"]["name"] for p in operator_pods()}
    return holder if holder in names else None


def ready_operator_pod(exclude: str | Collection[str] = (), timeout: float = 180) -> str:
    """The name of the Ready operator pod that leads (not one of `exclude`): with two replicas the standby is
    Ready too, and "the operator" of a test is the one that acts."""
    excluded = {exclude} if isinstance(exclude, str) else set(exclude)

    def probe() -> str | None:
        leading = leader_pod()
        for pod in operator_pods():
            name = str(pod["metadata"]["name"])
            if name == leading and name not in excluded and pod_ready(pod):
                return name
        return None

    return wait_for("a Ready operator pod that leads", probe, timeout)


def group_pods(namespace: str, group: str) -> list[dict[str, Any]]:
    """The instance group's pods, by name."""
    items = get_json("pods", "-n", namespace, "-l", f"{LABEL_INSTANCE_GROUP}={group}")["items"]
    return sorted(items, key=lambda p: p["metadata"]["name"])


def exec_in(namespace: str, pod: str, container: str, *command: str, check: bool = True) -> str:
    """`kubectl exec` through the API server, the kubelet and containerd into the container."""
    return kubectl("exec", "-n", namespace, pod, "-c", container, "--", *command, check=check, timeout=60).stdout


def ps(namespace: str, pod: str, container: str) -> dict[int, str]:
    """`ps` inside the container: pid -> command line."""
    table = {}
    for line in exec_in(namespace, pod, container, "ps", "-eo", "pid=,args=").splitlines():
        pid, _, args = line.strip().partition(" ")
        table[int(pid)] = args.strip()
    return table


def main_pid(namespace: str, pod: str, process: Process) -> int | None:
    """The pid of the process's main program in its own container, None when it does not run."""
    for pid, args in ps(namespace, pod, process.container).items():
        if args.startswith(process.marker):
            return pid
    return None


def sentinel_present(namespace: str, pod: str, process: Process) -> bool:
    """containerrun's `.running` file exists."""
    result = kubectl(
        "exec", "-n", namespace, pod, "-c", process.container, "--", "test", "-e", process.sentinel, check=False
    )
    return result.returncode == 0


def process_states(namespace: str, pod: str) -> dict[str, tuple[int | None, bool, bool]]:
    """Per process: (main pid, sentinel present, containerrun present), seen inside its container."""
    states = {}
    for process in PROCESSES:
        table = ps(namespace, pod, process.container)
        pid = next((p for p, args in table.items() if args.startswith(process.marker)), None)
        supervisor = any("containerrun" in args for args in table.values())
        states[process.container] = (pid, sentinel_present(namespace, pod, process), supervisor)
    return states


def all_stopped(namespace: str, pod: str) -> bool:
    """Every process's main program is gone and its sentinel removed; containerrun still waits for START."""
    return all(pid is None and not sentinel and sup for pid, sentinel, sup in process_states(namespace, pod).values())


def all_running(namespace: str, pod: str) -> dict[str, int] | None:
    """Every process runs with its sentinel: their pids; None otherwise."""
    states = process_states(namespace, pod)
    if all(pid is not None and sentinel for pid, sentinel, _ in states.values()):
        return {name: pid for name, (pid, _, _) in states.items() if pid is not None}
    return None


def suspension(name: str, namespace: str, group: str, reason: str, suspend: bool = True) -> str:
    """A ProcessSuspension manifest (JSON) for an instance group."""
    return json.dumps(
        {
            "apiVersion": "processcontrol.dev/v1alpha1",
            "kind": "ProcessSuspension",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"instanceGroup": group, "reason": reason, "suspend": suspend},
        }
    )


def wait_ready(name: str, namespace: str, timeout: int = 180) -> None:
    """`kubectl wait --for=condition=Ready` on the suspension, as a user or a GitOps tool would."""
    kubectl(
        "wait", "--for=condition=Ready", f"--timeout={timeout}s", "-n", namespace, f"psus/{name}", timeout=timeout + 20
    )


def restart_count(namespace: str, pod: str, container: str) -> int:
    """The container's restartCount in the pod status."""
    statuses = get_json("pod", "-n", namespace, pod)["status"]["containerStatuses"]
    return int(next(c for c in statuses if c["name"] == container)["restartCount"])


def container_init_pid(node: RealNode, namespace: str, pod: str, container: str) -> tuple[int, int]:
    """(host pid of the container's pid 1, its restartCount), from the pod status and containerd's task list."""
    status = get_json("pod", "-n", namespace, pod)["status"]
    entry = next(c for c in status["containerStatuses"] if c["name"] == container)
    container_id = entry["containerID"].removeprefix("containerd://")
    for line in node.ctr("tasks", "ls").stdout.splitlines()[1:]:
        fields = line.split()
        if fields and fields[0] == container_id:
            return int(fields[1]), int(entry["restartCount"])
    raise AssertionError(f"no containerd task for {namespace}/{pod} {container} ({container_id})")


def kill_container_init(node: RealNode, namespace: str, pod: str, container: str) -> int:
    """SIGKILL the container's pid 1 from the host (inside, pid 1 ignores it); return the restartCount before."""
    pid, restarts = container_init_pid(node, namespace, pod, container)
    os.kill(pid, signal.SIGKILL)
    return restarts
