"""deploy/: both kustomize variants render, carry the generated CRD, least-privilege RBAC and a hardened operator."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.testing import missing
from processcontrol.api.crd import build_crd
from processcontrol.settings import ProcessControlSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IMAGE = "ghcr.io/processcontrol/processcontrol:0.1.0"
LIVENESS = "--liveness=http://0.0.0.0:8080/healthz"

Manifest = dict[str, Any]


def load(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def render(directory: Path) -> list[Manifest]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        missing("kubectl is not installed")
    out = subprocess.run([kubectl, "kustomize", str(directory)], check=True, capture_output=True, text=True)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    (found,) = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    return found


def rules_of(manifest: Manifest) -> dict[tuple[str, str], set[str]]:
    """(apiGroup, resource) -> verbs."""
    out: dict[tuple[str, str], set[str]] = {}
    for rule in manifest["rules"]:
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                out.setdefault((group, resource), set()).update(rule["verbs"])
    return out


NAMESPACED_RULES = {
    ("", "pods"): {"get", "list", "watch", "patch"},
    ("", "pods/exec"): {"create", "get"},
    ("processcontrol.dev", "processsuspensions"): {"get", "list", "watch", "patch", "update"},
    ("processcontrol.dev", "processsuspensions/status"): {"get", "patch", "update"},
    ("processcontrol.dev", "processsuspensions/finalizers"): {"update"},
    ("", "events"): {"create", "patch", "list"},
    ("events.k8s.io", "events"): {"create", "patch"},
}
CRD_WATCH = {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}}


def test_crd_kustomization_uses_the_generated_crd() -> None:
    assert load(DEPLOY / "crd/kustomization.yaml")[0]["resources"] == ["../../crds"]
    assert load(ROOT / "crds/kustomization.yaml")[0]["resources"] == ["processsuspensions.yaml"]
    kustomization = load(DEPLOY / "kustomization.yaml")[0]
    assert kustomization["resources"] == ["crd", "rbac", "manager", "admission"]
    assert kustomization["components"] == ["components/operator-identity"]


def test_cluster_role_is_exactly_what_the_operator_needs() -> None:
    (role,) = load(DEPLOY / "rbac/role.yaml")
    assert role["kind"] == "ClusterRole"
    assert rules_of(role) == NAMESPACED_RULES | CRD_WATCH


def test_leader_election_may_touch_only_leases_and_events_in_the_operators_namespace() -> None:
    role, binding = load(DEPLOY / "rbac/leader_election.yaml")
    assert (role["kind"], role["metadata"]["namespace"]) == ("Role", "processcontrol-system")
    assert rules_of(role) == {
        ("coordination.k8s.io", "leases"): {"get", "create", "update"},
        ("", "events"): {"create", "patch"},
    }
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "processcontrol", "namespace": "processcontrol-system"}
    ]
    budget = one(render(DEPLOY), "PodDisruptionBudget", "processcontrol")
    deployment = one(render(DEPLOY), "Deployment", "processcontrol")
    assert budget["spec"] == {"minAvailable": 1, "selector": deployment["spec"]["selector"]}
    namespaced = render(DEPLOY / "namespaced")
    assert one(namespaced, "Role", "processcontrol-leader-election")["metadata"]["namespace"] == "processcontrol-system"


def test_namespaced_role_grants_the_same_per_namespace() -> None:
    role, binding = load(DEPLOY / "namespaced/role-kubecf.yaml")
    assert (role["kind"], role["metadata"]["namespace"]) == ("Role", "kubecf")
    assert rules_of(role) == NAMESPACED_RULES
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "processcontrol"}
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "processcontrol", "namespace": "processcontrol-system"}
    ]


def test_default_install_renders() -> None:
    manifests = render(DEPLOY)
    kinds = sorted(m["kind"] for m in manifests)
    assert kinds == sorted(
        [
            "Namespace",
            "CustomResourceDefinition",
            "ServiceAccount",
            "ClusterRole",
            "ClusterRoleBinding",
            "Role",
            "RoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            "NetworkPolicy",
            *["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"] * 3,
        ]
    )
    crd = one(manifests, "CustomResourceDefinition", "processsuspensions.processcontrol.dev")
    assert crd == build_crd()
    binding = one(manifests, "ClusterRoleBinding", "processcontrol")
    assert binding["roleRef"]["name"] == "processcontrol"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "processcontrol", "namespace": "processcontrol-system"}
    ]
    args = one(manifests, "Deployment", "processcontrol")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["operator", "--all-namespaces", LIVENESS]


def test_operator_deployment_is_hardened() -> None:
    deployment = one(render(DEPLOY), "Deployment", "processcontrol")
    assert deployment["metadata"]["namespace"] == "processcontrol-system"
    spec = deployment["spec"]
    # Two replicas, one actor: a rollout keeps a standby throughout, the two spread over nodes where they can.
    assert spec["replicas"] == 2
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    pod = spec["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == spec["selector"]["matchLabels"]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["PROCESSCONTROL_LEADER_IDENTITY"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["PROCESSCONTROL_LEASE_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert pod["serviceAccountName"] == "processcontrol"
    assert pod["automountServiceAccountToken"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == IMAGE
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"healthz": 8080, "metrics": 9090}
    probe = container["livenessProbe"]["httpGet"]
    assert probe["path"] == "/healthz" and ports[probe["port"]] == 8080
    assert {"requests", "limits"} <= set(container["resources"])
    assert {"name": "PROCESSCONTROL_METRICS_PORT", "value": "9090"} in container["env"]
    mounts = {mount["mountPath"] for mount in container["volumeMounts"]}
    assert "/tmp" in mounts


def test_namespaced_install_renders_without_cluster_wide_pod_rights() -> None:
    manifests = render(DEPLOY / "namespaced")
    cluster_roles = [m for m in manifests if m["kind"] == "ClusterRole"]
    assert [m["metadata"]["name"] for m in cluster_roles] == ["processcontrol-discovery"]
    assert rules_of(cluster_roles[0]) == CRD_WATCH | {("", "namespaces"): {"list", "watch"}}
    assert [m["metadata"]["name"] for m in manifests if m["kind"] == "ClusterRoleBinding"] == [
        "processcontrol-discovery"
    ]
    # Besides the Lease in its own namespace (leader election), rights only where it watches.
    election = one(manifests, "Role", "processcontrol-leader-election")
    elected = one(manifests, "RoleBinding", "processcontrol-leader-election")
    role_namespaces = {m["metadata"]["namespace"] for m in manifests if m["kind"] == "Role" and m is not election}
    binding_namespaces = {
        m["metadata"]["namespace"] for m in manifests if m["kind"] == "RoleBinding" and m is not elected
    }
    args = one(manifests, "Deployment", "processcontrol")["spec"]["template"]["spec"]["containers"][0]["args"]
    watched = {arg.removeprefix("--namespace=") for arg in args if arg.startswith("--namespace=")}
    assert role_namespaces == binding_namespaces == watched == {"kubecf"}
    assert "--all-namespaces" not in args
    assert LIVENESS in args
    assert one(manifests, "CustomResourceDefinition", "processsuspensions.processcontrol.dev") == build_crd()
    assert one(manifests, "ServiceAccount", "processcontrol")["metadata"]["namespace"] == "processcontrol-system"


POLICIES = ("processcontrol-pod-ledger", "processcontrol-excluded-namespaces")


def identity_of(manifests: list[Manifest]) -> str:
    """The ServiceAccount the admission policies treat as the operator, from their two literal variables."""
    identities = set()
    for name in POLICIES:
        policy = one(manifests, "ValidatingAdmissionPolicy", name)
        variables = {v["name"]: v["expression"] for v in policy["spec"]["variables"]}
        namespace, account = (variables[k].strip("'") for k in ("operatorNamespace", "operatorAccount"))
        identities.add(f"{namespace}/{account}")
    (identity,) = identities
    return identity


@pytest.mark.parametrize("variant", [DEPLOY, DEPLOY / "namespaced"], ids=["cluster", "namespaced"])
def test_every_install_has_the_admission_policy_for_its_operator(variant: Path) -> None:
    manifests = render(variant)
    account = one(manifests, "ServiceAccount", "processcontrol")
    assert identity_of(manifests) == f"{account['metadata']['namespace']}/processcontrol"
    assert one(manifests, "Deployment", "processcontrol")["spec"]["template"]["spec"]["serviceAccountName"] == (
        "processcontrol"
    )
    policy = one(manifests, "ValidatingAdmissionPolicy", "processcontrol-pod-ledger")["spec"]
    assert policy["failurePolicy"] == "Fail"
    # The pod itself, on create and update: never a subresource (the kubelet's status, exec, eviction) or a delete.
    assert policy["matchConstraints"]["resourceRules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["pods"]}
    ]
    assert [v.get("reason") for v in policy["validations"]] == ["Forbidden", "Forbidden"]
    # Denying, no audit-only mode; cluster-wide every namespace, namespaced exactly those the operator serves (where
    # another install's operator may write its own ledger elsewhere).
    args = one(manifests, "Deployment", "processcontrol")["spec"]["template"]["spec"]["containers"][0]["args"]
    served = [arg.removeprefix("--namespace=") for arg in args if arg.startswith("--namespace=")]
    for name in (*POLICIES, "processcontrol-requester"):
        binding = one(manifests, "ValidatingAdmissionPolicyBinding", name)["spec"]
        assert binding.pop("matchResources", None) == (
            {
                "namespaceSelector": {
                    "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": served}]
                }
            }
            if served
            else None
        )
        assert binding == {"policyName": name, "validationActions": ["Deny"]}
    # Who asked: the suspensions themselves, never their status (the operator's); nobody may record someone else.
    requester = one(manifests, "ValidatingAdmissionPolicy", "processcontrol-requester")["spec"]
    assert requester["matchConstraints"]["resourceRules"] == [
        {
            "apiGroups": ["processcontrol.dev"],
            "apiVersions": ["*"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["processsuspensions"],
        }
    ]
    assert {v["name"]: v["expression"] for v in requester["variables"]}["delegates"] == "[]"
    # The namespaces the token is refused in are those the operator excludes (the Deployment keeps the default).
    excluded = one(manifests, "ValidatingAdmissionPolicy", "processcontrol-excluded-namespaces")["spec"]
    assert excluded["matchConstraints"]["resourceRules"][1] == {
        "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CONNECT"], "resources": ["pods/exec"]
    }  # fmt: skip
    variables = {v["name"]: v["expression"] for v in excluded["variables"]}
    assert json.loads(variables["excludedNamespaces"]) == list(ProcessControlSettings().excluded_namespaces)
    env = one(manifests, "Deployment", "processcontrol")["spec"]["template"]["spec"]["containers"][0]["env"]
    assert "PROCESSCONTROL_EXCLUDED_NAMESPACES" not in {e["name"] for e in env}


def test_an_overlay_that_moves_the_operator_moves_its_identity_with_the_documented_replacements(
    tmp_path: Path,
) -> None:
    # An overlay with its own `namespace:` needs the component's replacements itself (the component runs before
    # the overlay's namespace): with them the policy names the moved account, without them the old one.
    replacements = load(DEPLOY / "components/operator-identity/kustomization.yaml")[0]["replacements"]
    base = os.path.relpath(DEPLOY, tmp_path / "with")
    for name, extra in (("with", {"replacements": replacements}), ("without", {})):
        (tmp_path / name).mkdir()
        overlay = {"resources": [base], "namespace": "ops"} | extra
        (tmp_path / name / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
    assert identity_of(render(tmp_path / "with")) == "ops/processcontrol"
    assert identity_of(render(tmp_path / "without")) == "processcontrol-system/processcontrol"


def test_aggregated_roles_are_opt_in_and_aggregate_into_view_and_edit() -> None:
    assert not [m for m in render(DEPLOY) if m["metadata"]["name"].endswith(("-view", "-edit"))]
    manifests = render(DEPLOY / "aggregated-roles")
    view = one(manifests, "ClusterRole", "processcontrol-view")
    edit = one(manifests, "ClusterRole", "processcontrol-edit")
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    assert {k for k in edit["metadata"]["labels"] if k.startswith("rbac.")} == {
        "rbac.authorization.k8s.io/aggregate-to-edit",
        "rbac.authorization.k8s.io/aggregate-to-admin",
    }
    assert rules_of(view) == {
        ("processcontrol.dev", "processsuspensions"): {"get", "list", "watch"},
        ("processcontrol.dev", "processsuspensions/status"): {"get", "list", "watch"},
    }
    # Writing a suspension, never its status (the operator's) nor anything else.
    assert rules_of(edit) == {
        ("processcontrol.dev", "processsuspensions"): {"get", "list", "watch", "create", "patch", "update", "delete"}
    }


def test_network_policy_admits_only_the_metrics_port_of_the_operator() -> None:
    manifests = render(DEPLOY)
    policy = one(manifests, "NetworkPolicy", "processcontrol")
    pod = one(manifests, "Deployment", "processcontrol")["spec"]["template"]
    assert policy["metadata"]["namespace"] == "processcontrol-system"
    labels = pod["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in policy["spec"]["podSelector"]["matchLabels"].items())
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert "metrics" in {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
