#!/usr/bin/env python3
"""The demo on a real node: a kubelet with containerd and runc joined to the local control plane, the operator
installed from deploy/ (only the image changed) and running as a pod, a kubecf-like instance group of 3 pods whose
processes are real programs in real containers, and a verified suspension seen with `ps` inside a container.

    hack/demo_node.py up      # builds (cached) binaries and images, starts everything, suspends `web`
    hack/demo_node.py down    # stops everything and removes its state directory (binaries and images stay cached)

Needs root (containerd, mounts, iptables, a bridge). State: ${PROCESSCONTROL_STATE:-/tmp/processcontrol-node-demo}.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

os.environ.setdefault("PROCESSCONTROL_STATE", "/tmp/processcontrol-node-demo")
from harness import controlplane, images, realnode
from harness.base import ROOT, ControlPlaneError, kubeconfig_path, kubectl, state_dir
from harness.workload import PROCESSES, instance_group

NAMESPACE = "kubecf"
GROUP = "web"


def show(title: str, *args: str) -> None:
    """Print a kubectl command and its output."""
    print(f"\n$ kubectl {' '.join(args)}   # {title}", flush=True)
    print(kubectl(*args, timeout=300).stdout.rstrip(), flush=True)


def up() -> int:
    """Everything, then one suspension."""
    start = time.monotonic()
    node = realnode.RealNode(state_dir())
    node.check_host()
    subprocess.run(["bash", str(ROOT / "hack" / "build-node.sh")], check=True)
    built = images.ensure()
    node.up([built[name].archive for name in ("pause", "operator", "workload")])
    kubectl("apply", "-k", str(ROOT / "hack" / "realnode-overlay"))
    operator = ("deployment/processcontrol", "-n", "processcontrol-system")
    kubectl("rollout", "status", *operator, "--timeout=180s", timeout=200)
    kubectl("create", "namespace", NAMESPACE, check=False)
    kubectl("apply", "-f", "-", input_text=json.dumps(instance_group(GROUP, NAMESPACE, 3)))
    kubectl("rollout", "status", f"statefulset/{GROUP}", "-n", NAMESPACE, "--timeout=240s", timeout=260)
    show("the operator, a pod from deploy/", "get", "pods", "-n", "processcontrol-system", "-o", "wide")
    show("a kubecf-like instance group on the real node", "get", "pods", "-n", NAMESPACE, "-o", "wide")
    container = PROCESSES[0].container
    show("its processes, before", "exec", "-n", NAMESPACE, f"{GROUP}-0", "-c", container, "--", "ps", "-ef")
    suspension = {
        "apiVersion": "processcontrol.dev/v1alpha1",
        "kind": "ProcessSuspension",
        "metadata": {"name": GROUP, "namespace": NAMESPACE},
        "spec": {"instanceGroup": GROUP, "reason": "demo: restoring from a raw backup"},
    }
    kubectl("apply", "-f", "-", input_text=json.dumps(suspension))
    show("wait until verified", "wait", "--for=condition=Ready", "--timeout=180s", "-n", NAMESPACE, f"psus/{GROUP}")
    show("the suspension", "get", "psus", "-n", NAMESPACE)
    show("its processes, suspended", "exec", "-n", NAMESPACE, f"{GROUP}-0", "-c", container, "--", "ps", "-ef")
    print(f"\nup in {time.monotonic() - start:.0f}s. Use it: export KUBECONFIG={kubeconfig_path()}")
    print("Resume: kubectl delete psus web -n kubecf.  Stop everything: make demo-node-down")
    return 0


def main(argv: list[str]) -> int:
    """CLI entry point."""
    if argv[1:] == ["up"]:
        try:
            return up()
        except (realnode.NodeError, images.ImageError, ControlPlaneError, subprocess.CalledProcessError) as exc:
            print(f"demo-node: FAILED: {exc}", file=sys.stderr)
            return 1
    if argv[1:] == ["down"]:
        realnode.RealNode(state_dir()).down()
        controlplane.ControlPlane(state_dir()).remove()
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
