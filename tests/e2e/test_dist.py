"""`make dist`'s dist/install.yaml on an empty control plane: `kubectl apply -f` it, and the operator acts.

See tests/e2e/local_release.py for what is real here and what the test plays (scheduler and kubelet of the
operator's pod: the operator runs as a host process with the pod's args, env and ServiceAccount token).
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from harness import chart, fakepods
from harness.base import ROOT, kubectl

from .local_release import LocalKubelet, fresh_control_plane

BOTH = ("pxc-mysql/mysql", "pxc-mysql/galera-agent")
WORKLOAD = "dist-e2e"


@pytest.mark.timeout(600)
def test_install_yaml_on_an_empty_control_plane_runs_the_operator() -> None:
    subprocess.run(["make", "dist"], cwd=ROOT, check=True)
    bundle = ROOT / "dist" / "install.yaml"
    assert {chart.key(o) for o in chart.parse(bundle.read_text())} == {
        chart.key(o) for o in chart.kustomize(chart.DEPLOY)
    }
    with fresh_control_plane("dist") as plane:
        # Empty: none of our objects before the bundle.
        assert kubectl("get", "crd", "-o", "name", state=plane).stdout.count("processcontrol") == 0
        applied = kubectl("apply", "-f", str(bundle), state=plane).stdout
        print(applied)
        for line in (
            "namespace/processcontrol-system created",
            "customresourcedefinition.apiextensions.k8s.io/processsuspensions.processcontrol.dev created",
            "serviceaccount/processcontrol created",
            "clusterrole.rbac.authorization.k8s.io/processcontrol created",
            "clusterrolebinding.rbac.authorization.k8s.io/processcontrol created",
            "deployment.apps/processcontrol created",
        ):
            assert line in applied
        kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/processsuspensions.processcontrol.dev",
                state=plane)  # fmt: skip
        # The bundle's pod has no toleration of kwok's fake taint (a real node has none): bound regardless.
        kubelet = LocalKubelet(plane, respect_taints=False)
        try:
            rollout = kubelet.run_while(
                ["kubectl", "rollout", "status", "-n", chart.NAMESPACE, "deployment/processcontrol", "--timeout=120s"],
                dict(os.environ, KUBECONFIG=str(plane / "kubeconfig")),
            )
            assert rollout.returncode == 0, rollout.stderr
            operator = kubelet.wait_running(1)
            assert operator.args == ("--all-namespaces",)

            pods = fakepods.create_group("database", WORKLOAD, 2, ",".join(BOTH), state=plane)
            suspension = {
                "apiVersion": "processcontrol.dev/v1alpha1",
                "kind": "ProcessSuspension",
                "metadata": {"name": "from-bundle", "namespace": WORKLOAD},
                "spec": {"instanceGroup": "database"},
            }
            kubectl("apply", "-f", "-", input_text=json.dumps(suspension), state=plane)
            kubectl("wait", "-n", WORKLOAD, "psus/from-bundle", "--for=condition=Ready", "--timeout=90s", state=plane)
            states = {
                (p, jp): fakepods.running_path(WORKLOAD, p, fakepods.JobProcess.parse(jp), plane).exists()
                for p in pods
                for jp in BOTH
            }
            assert not any(states.values()), states
            kubectl("delete", "psus", "from-bundle", "-n", WORKLOAD, "--timeout=90s", state=plane)
            assert all(
                fakepods.running_path(WORKLOAD, p, fakepods.JobProcess.parse(jp), plane).exists()
                for p in pods
                for jp in BOTH
            )
        finally:
            kubelet.stop_all()
