"""deploy/, the CRD and the examples on a real kube-apiserver: install, explain, admission (schema and CEL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import fakepods
from harness.base import kubectl
from harness.cluster import Cluster

ROOT = Path(__file__).resolve().parents[2]


def test_deploy_installs_everything(cluster: Cluster) -> None:
    # The session installed deploy/ with `kubectl apply -k deploy/`; a second apply changes nothing.
    again = kubectl("apply", "-k", str(ROOT / "deploy")).stdout
    assert "deployment.apps/processcontrol unchanged" in again
    assert "customresourcedefinition.apiextensions.k8s.io/processsuspensions.processcontrol.dev unchanged" in again
    for kind, name in (("serviceaccount", "processcontrol"), ("deployment", "processcontrol")):
        assert kubectl("get", kind, name, "-n", "processcontrol-system", "-o", "name").stdout.strip()
    crd = cluster.get("crd", "processsuspensions.processcontrol.dev")
    established = [c for c in crd["status"]["conditions"] if c["type"] == "Established"]
    assert established[0]["status"] == "True"


def test_namespaced_variant_passes_server_validation(cluster: Cluster) -> None:
    fakepods.ensure_namespace("kubecf")  # the namespace the variant is written for
    result = kubectl("apply", "-k", str(ROOT / "deploy" / "namespaced"), "--dry-run=server", check=False)
    assert result.returncode == 0, result.stderr


def test_explain_shows_the_field_docs(cluster: Cluster) -> None:
    jobs = cluster.kubectl("explain", "processsuspension.spec.jobs").stdout
    assert "Only the processes of these BOSH jobs" in jobs
    spec = cluster.kubectl("explain", "processsuspension.spec").stdout
    for field in ("instanceGroup", "selector", "processes", "suspend", "duration", "reason", "container"):
        assert field in spec


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_examples_pass_server_side_validation(cluster: Cluster, example: Path) -> None:
    fakepods.ensure_namespace("kubecf")  # the examples' namespace
    result = kubectl("apply", "--dry-run=server", "-f", str(example), check=False)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"instanceGroup": "a", "selector": {"matchLabels": {"a": "b"}}}, "exactly one of instanceGroup and selector"),
        ({"jobs": ["x"]}, "exactly one of instanceGroup and selector"),
        ({"instanceGroup": "a", "duration": "0s"}, "duration must be a positive duration"),
        ({"instanceGroup": "a", "duration": "soon"}, "spec.duration"),
        ({"instanceGroup": "a", "jobs": ["a;rm -rf /"]}, "spec.jobs[0]"),
        ({"instanceGroup": "a", "processes": ["$(id)"]}, "spec.processes[0]"),
        ({"instanceGroup": "a", "jobs": [f"j{i}" for i in range(65)]}, "spec.jobs"),
        ({"instanceGroup": "a", "reason": "x" * 300}, "spec.reason"),
        ({"selector": {}}, "an empty selector matches every pod"),
    ],
)
def test_bad_manifests_are_rejected_by_the_api_server(cluster: Cluster, spec: dict[str, object], message: str) -> None:
    result = cluster.apply(cluster.suspension("bad", **spec), check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert "bad" not in cluster.kubectl("get", "psus", "-o", "name").stdout


def test_the_target_is_immutable(cluster: Cluster) -> None:
    cluster.apply(cluster.suspension("fixed", instanceGroup="nothing-here", suspend=False))
    result = cluster.apply(cluster.suspension("fixed", instanceGroup="other", suspend=False), check=False)
    assert result.returncode != 0
    assert "instanceGroup is immutable: delete and recreate to change the target" in result.stderr
    changed = cluster.apply(cluster.suspension("fixed", instanceGroup="nothing-here", jobs=["a"]), check=False)
    assert "jobs is immutable" in changed.stderr


def test_probes_may_change_only_from_refuse(cluster: Cluster) -> None:
    """The API server's CEL rule: Refuse waits for a person to decide; Warn and Skip hold different processes."""
    target = {"instanceGroup": "nothing-here", "suspend": False}
    cluster.apply(cluster.suspension("probing", probes="Refuse", **target))
    cluster.apply(cluster.suspension("probing", probes="Warn", **target))  # decided: accepted
    refused = cluster.apply(cluster.suspension("probing", probes="Skip", **target), check=False)
    assert refused.returncode != 0
    assert "probes can only be changed from Refuse: delete and recreate to change it" in refused.stderr
    assert cluster.get("psus", "probing")["spec"]["probes"] == "Warn"
