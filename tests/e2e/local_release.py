"""An install (Helm release or the one-file bundle) on its own fresh local control plane, with the operator's
Deployment carried out the way a scheduler and a kubelet would, except that its container runs as a host process.

What is real: the control plane (kube-apiserver, controller-manager, kwok), helm and kubectl doing the install,
the objects they create (CRD, ServiceAccount, RBAC, Deployment, ReplicaSets, pods), the ServiceAccount token the
operator authenticates with (so it has exactly the installed RBAC), the args and env of the operator container
as the API server holds them, the fake kubecf pods' containerrun processes.

What is not: there is no container runtime in this tier, so the operator image never runs. The test plays the
scheduler (it binds the Deployment's pending pod to kwok's node, checking the pod's nodeSelector and tolerations
as a scheduler would) and the kubelet (for the bound pod it starts `processcontrol operator` with the
container's args and env, and it stops that process with SIGTERM when the pod is deleted). kwok marks the pod
Running and Ready, so `helm --wait` and the Deployment's rollout see what they would see on a real node. The
liveness and metrics ports are local free ports instead of the container's 8080 and 9090.

The session's control plane (tests/e2e/conftest.py) keeps deploy/ and its operator; nothing here touches it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from harness import chart
from harness.base import kubectl, state_dir, wait_until
from harness.fakepods import NODE_NAME
from harness.operator import OperatorProcess, service_account_kubeconfig

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_SELECTOR = "app.kubernetes.io/name=processcontrol,app.kubernetes.io/component=operator"
# kwok's node carries this taint (harness.controlplane); a pod needs to tolerate it to be scheduled there.
KWOK_TAINT = {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"}
# The chart's scheduling values that place the operator on kwok's node (the values under test, not a bypass).
KWOK_PLACEMENT = (
    "--set",
    "nodeSelector.type=kwok",
    "--set-json",
    'tolerations=[{"key":"kwok.x-k8s.io/node","operator":"Exists","effect":"NoSchedule"}]',
)

Manifest = dict[str, Any]


@contextlib.contextmanager
def fresh_control_plane(name: str) -> Iterator[Path]:
    """A new, empty control plane next to the session's (state `<PROCESSCONTROL_STATE>-<name>`); stopped after."""
    base = state_dir()
    state = base.parent / f"{base.name}-{name}"
    env = dict(os.environ, PROCESSCONTROL_STATE=str(state))
    script = [sys.executable, "-m", "harness.controlplane"]
    subprocess.run(["bash", str(ROOT / "hack" / "build-controlplane.sh")], check=True)
    # down first: `up` reuses a running plane, and this one must start empty.
    subprocess.run([*script, "down"], env=env, check=True, capture_output=True)
    subprocess.run([*script, "up"], env=env, check=True)
    try:
        yield state
    finally:
        subprocess.run([*script, "down"], env=env, check=False)


def tolerates(pod_spec: Manifest, taint: dict[str, str]) -> bool:
    """Whether the pod tolerates the taint (the scheduler's rule for NoSchedule taints)."""
    for toleration in pod_spec.get("tolerations") or []:
        if toleration.get("key") not in (None, "", taint["key"]):
            continue
        if toleration.get("effect") not in (None, "", taint["effect"]):
            continue
        if toleration.get("operator") == "Exists" or toleration.get("value") == taint["value"]:
            return True
    return False


class LocalKubelet:
    """Schedules the operator Deployment's pods onto kwok's node and runs each bound pod's container as a host
    process, at most one at a time (stops before it starts, as Recreate does)."""

    def __init__(self, state: Path, namespace: str = chart.NAMESPACE, respect_taints: bool = True) -> None:
        self.state = state
        self.namespace = namespace
        # deploy/ and the bundle carry no toleration of kwok's fake taint (real nodes have none); the bundle test
        # binds regardless, the Helm test sets the chart's tolerations and nodeSelector values and is held to them.
        self.respect_taints = respect_taints
        self.processes: dict[str, OperatorProcess] = {}
        # ("start" | "stop", pod name), in order: what ran when.
        self.history: list[tuple[str, str]] = []
        self.pod_specs: dict[str, Manifest] = {}

    def pods(self) -> list[Manifest]:
        """The operator's pods in its namespace."""
        out = kubectl("get", "pods", "-n", self.namespace, "-l", OPERATOR_SELECTOR, "-o", "json", state=self.state)
        items: list[Manifest] = json.loads(out.stdout)["items"]
        return items

    def node_labels(self) -> dict[str, str]:
        node = json.loads(kubectl("get", "node", NODE_NAME, "-o", "json", state=self.state).stdout)
        labels: dict[str, str] = node["metadata"]["labels"]
        return labels

    def schedule(self, pod: Manifest) -> None:
        """Bind a pending pod to kwok's node, if its nodeSelector and tolerations allow it (as the scheduler)."""
        spec = pod["spec"]
        labels = self.node_labels()
        if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
            return
        if self.respect_taints and not tolerates(spec, KWOK_TAINT):
            return
        name = pod["metadata"]["name"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": self.namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME},
        }
        kubectl(
            "create",
            "--raw",
            f"/api/v1/namespaces/{self.namespace}/pods/{name}/binding",
            "-f",
            "-",
            input_text=json.dumps(binding),
            state=self.state,
            check=False,  # a pod deleted meanwhile: the next sync sees it gone
        )

    def start(self, pod: Manifest) -> None:
        """Run the pod's operator container as a process: its args and env, its ServiceAccount's token."""
        name = pod["metadata"]["name"]
        spec = pod["spec"]
        (container,) = spec["containers"]
        args = [a for a in container["args"] if not a.startswith("--liveness=")]
        assert args[0] == "operator", args
        env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
        env.pop("PROCESSCONTROL_METRICS_PORT")  # a free local port instead (OperatorProcess)
        kubeconfig = service_account_kubeconfig(
            path=self.state / f"operator-{name}.kubeconfig",
            namespace=self.namespace,
            account=spec["serviceAccountName"],
            state=self.state,
        )
        process = OperatorProcess(
            kubeconfig, args=tuple(args[1:]), env=env, log_path=self.state / "logs" / f"operator-{name}.log"
        )
        self.processes[name] = process.start()
        self.pod_specs[name] = spec
        self.history.append(("start", name))

    def stop(self, name: str) -> None:
        """SIGTERM, as the kubelet on pod deletion."""
        self.processes.pop(name).stop()
        self.history.append(("stop", name))

    def sync(self) -> None:
        """One round: stop the processes of deleted pods, bind pending pods, start bound pods' containers."""
        pods = self.pods()
        live = {p["metadata"]["name"]: p for p in pods if not p["metadata"].get("deletionTimestamp")}
        for name in list(self.processes):
            if name not in live:
                self.stop(name)
        for name, pod in live.items():
            if not pod["spec"].get("nodeName"):
                self.schedule(pod)
            elif pod["spec"]["nodeName"] == NODE_NAME and name not in self.processes and not self.processes:
                self.start(pod)

    def running(self) -> list[OperatorProcess]:
        """The operator processes that run now."""
        return list(self.processes.values())

    def stop_all(self) -> None:
        """Stop every process this kubelet started."""
        for name in list(self.processes):
            self.stop(name)

    def run_while(
        self, argv: list[str], env: dict[str, str], timeout: float = 240, tick: Callable[[], None] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command (helm, kubectl) to its end while scheduling and running pods; `tick` after each round."""
        with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            deadline = time.monotonic() + timeout
            while proc.poll() is None and time.monotonic() < deadline:
                self.sync()
                if tick is not None:
                    tick()
                time.sleep(0.3)
            if proc.poll() is None:
                proc.kill()
            stdout, stderr = proc.communicate()
        self.sync()
        return subprocess.CompletedProcess(argv, proc.returncode, stdout, stderr)

    def helm(
        self, *args: str, tick: Callable[[], None] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """helm against this control plane, with the kubelet acting meanwhile."""
        argv = [str(chart.helm_binary()), *args]
        result = self.run_while(argv, chart.helm_env(self.state / "kubeconfig"), tick=tick)
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def wait_running(self, count: int = 1, timeout: float = 90) -> OperatorProcess:
        """Keep syncing until `count` operator processes were started and one runs now; return it."""

        def done() -> bool:
            self.sync()
            return len(self.running()) == 1 and sum(1 for e in self.history if e[0] == "start") >= count

        wait_until(done, timeout=timeout, what=f"operator start #{count}")
        return self.running()[0]
