"""`make demo`: processcontrol working from nothing on a local control plane; `make demo-down` removes it all
(processes and state directory; the built binaries stay cached)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

from harness import controlplane, fakepods
from harness.base import ROOT, kubeconfig_path, kubectl, state_dir
from harness.operator import OperatorProcess, ensure_control_plane, install, service_account_kubeconfig

NAMESPACE = "kubecf"
GROUP = "database"
JOBS = "pxc-mysql/mysql,pxc-mysql/galera-agent"
EXAMPLE = ROOT / "examples" / "instance-group.yaml"


def operator_pid_file() -> Path:
    """Where the demo's operator pid is kept for demo-down."""
    return state_dir() / "pids" / "demo-operator.pid"


def say(text: str) -> None:
    """A headline on stdout."""
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def show(*args: str) -> None:
    """Run kubectl and show the command with its output, as a reader would type it."""
    print(f"$ kubectl {' '.join(args)}", flush=True)
    print(kubectl(*args).stdout.rstrip(), flush=True)


def show_processes(pods: list[str]) -> None:
    """The processes' real state on the host: sentinel and main pid per containerrun."""
    for pod in pods:
        for jp in fakepods.parse_jobs(JOBS):
            running = fakepods.running_path(NAMESPACE, pod, jp).exists()
            pid_file = fakepods.pid_path(NAMESPACE, pod, jp)
            pid = pid_file.read_text().strip() if pid_file.exists() else "-"
            state = f"running (pid {pid})" if running else "stopped"
            print(f"  {pod:<12} {jp!s:<24} {state}")


def up() -> int:
    """Everything, from building the binaries to a verified suspension."""
    started = time.monotonic()
    say("Building (or reusing) etcd, kube-apiserver, kube-controller-manager and kwok, starting them on 127.0.0.1")
    ensure_control_plane()
    say("Installing processcontrol: kubectl apply -k deploy/")
    install()
    say("Starting the operator with the ServiceAccount and RBAC from deploy/")
    pid_file = operator_pid_file()
    if pid_file.exists() and Path(f"/proc/{pid_file.read_text().strip()}").exists():
        print(f"already running (pid {pid_file.read_text().strip()})")
    else:
        log = state_dir() / "logs" / "operator.log"
        operator = OperatorProcess(service_account_kubeconfig(), log_path=log).start()
        assert operator.process is not None
        pid_file.write_text(str(operator.process.pid))
        print(f"operator pid {operator.process.pid}, log {log}, metrics {operator.metrics_url}")
    say(f"Creating instance group {GROUP!r}: 3 pods x 2 processes, each under a real containerrun")
    pods = fakepods.create_group(GROUP, NAMESPACE, 3, JOBS, sidecar="logs")
    show("get", "pods", "-n", NAMESPACE)
    show_processes(pods)
    say(f"Suspending it: kubectl apply -f {EXAMPLE.relative_to(ROOT)}")
    print(EXAMPLE.read_text().rstrip())
    show("apply", "-f", str(EXAMPLE))
    show("wait", "-n", NAMESPACE, f"psus/{GROUP}", "--for=condition=Ready", "--timeout=120s")
    show("get", "psus", "-n", NAMESPACE)
    show("get", "pods", "-n", NAMESPACE, "-L", "processcontrol.dev/suspended")
    say("The processes, as they really are on this machine")
    show_processes(pods)
    kubeconfig = kubeconfig_path()
    say(f"Done in {time.monotonic() - started:.0f}s. Try it yourself:")
    print(
        f"""  export KUBECONFIG={kubeconfig}
  kubectl describe psus -n {NAMESPACE} {GROUP}                 # conditions, per-pod state, events
  .venv/bin/processcontrol describe -n {NAMESPACE} {GROUP}      # the same, as a per-process table
  .venv/bin/python -m harness.fakepods restart-container {NAMESPACE} {GROUP}-0 pxc-mysql/mysql
                                                 # a container restart: watch it get stopped again
  .venv/bin/processcontrol resume -n {NAMESPACE} {GROUP} --wait  # resume (suspend: false)
  kubectl delete psus -n {NAMESPACE} {GROUP}                    # resume and remove

Stop everything with: make demo-down"""
    )
    return 0


def down() -> int:
    """Stop the operator, the fake pods' processes and the control plane; remove the state directory."""
    pid_file = operator_pid_file()
    if pid_file.exists():
        pid = int(pid_file.read_text().strip())
        try:
            os.killpg(pid, signal.SIGTERM)
            print(f"stopped the operator (pid {pid})")
        except ProcessLookupError:
            pass
        pid_file.unlink()
    stopped = fakepods.stop_all_host_processes()
    print(f"stopped {stopped} containerrun processes")
    cp = controlplane.ControlPlane(state_dir())
    cp.down()
    cp.remove()
    return 0


def main() -> int:
    """`demo.py up|down`."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["up", "down"])
    args = parser.parse_args()
    return up() if args.action == "up" else down()


if __name__ == "__main__":
    sys.exit(main())
