"""The admission policy of deploy/admission/ on the real kube-apiserver, the opt-in aggregated roles of
deploy/aggregated-roles/, and the namespace exclusion list, each through impersonation (`kubectl --as`).

The ledger tests work in a namespace the e2e operator excludes (harness.operator.UNWATCHED_NAMESPACE), so that
the operator never acts on the ledgers these tests write in its name.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import fakepods
from harness.base import kubectl, wait_until
from harness.cluster import Cluster
from harness.operator import OPERATOR_NAMESPACE, SERVICE_ACCOUNT, UNWATCHED_NAMESPACE

ROOT = Path(__file__).resolve().parents[2]
HOLDS = "processcontrol.dev/holds"
SUSPENDED = "processcontrol.dev/suspended"
OPERATOR = f"system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}"
PATCHER = f"system:serviceaccount:{UNWATCHED_NAMESPACE}:pod-patcher"
POLICY = "ValidatingAdmissionPolicy 'processcontrol-pod-ledger'"
NOT_THE_OPERATOR = (
    f"only the processcontrol operator ({OPERATOR}) may set, change or remove the annotation processcontrol.dev/holds "
    "and the label processcontrol.dev/suspended on a pod"
)
ONLY_ITS_KEYS = (
    "the processcontrol operator may change only the annotation processcontrol.dev/holds and the label "
    "processcontrol.dev/suspended of a pod"
)
LEDGER = json.dumps({"v": 1, "holds": {}, "processes": {}})

# Everything on pods but exec: what a deployment tool or a namespace's operator team typically holds.
PATCHER_RBAC = f"""
apiVersion: v1
kind: ServiceAccount
metadata: {{name: pod-patcher, namespace: {UNWATCHED_NAMESPACE}}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: pod-patcher, namespace: {UNWATCHED_NAMESPACE}}}
rules:
  - apiGroups: [""]
    resources: [pods]
    verbs: [get, list, create, patch, update, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: pod-patcher, namespace: {UNWATCHED_NAMESPACE}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: pod-patcher}}
subjects: [{{kind: ServiceAccount, name: pod-patcher, namespace: {UNWATCHED_NAMESPACE}}}]
"""


def as_user(user: str, *args: str, input_text: str | None = None) -> tuple[int, str]:
    """kubectl in the unwatched namespace as `user` (impersonated by the admin): exit code and stderr."""
    result = kubectl("--as", user, "-n", UNWATCHED_NAMESPACE, *args, input_text=input_text, check=False)
    return result.returncode, result.stderr


def refused(user: str, *args: str, message: str, input_text: str | None = None) -> None:
    """The request is refused by the policy, with its message."""
    code, stderr = as_user(user, *args, input_text=input_text)
    assert code != 0, f"{user}: kubectl {' '.join(args)} was allowed"
    assert POLICY in stderr and message in stderr, stderr


def allowed(user: str, *args: str, input_text: str | None = None) -> None:
    """The request goes through."""
    code, stderr = as_user(user, *args, input_text=input_text)
    assert code == 0, f"{user}: kubectl {' '.join(args)}: {stderr}"


def pod_manifest(name: str, annotations: dict[str, str] | None = None) -> dict[str, object]:
    """A plain pod on the kwok node (nothing runs for it: the API server is what is tested)."""
    metadata: dict[str, object] = {"name": name, "namespace": UNWATCHED_NAMESPACE, "labels": {"app": "ledger-test"}}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            "nodeName": fakepods.NODE_NAME,
            "automountServiceAccountToken": False,
            "tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "main", "image": "fake.invalid/app:1"}],
        },
    }


def meta(pod: str) -> dict[str, dict[str, str]]:
    """The pod's labels and annotations, as the admin reads them."""
    got = json.loads(kubectl("get", "pod", pod, "-n", UNWATCHED_NAMESPACE, "-o", "json").stdout)["metadata"]
    return {"labels": got.get("labels", {}), "annotations": got.get("annotations", {})}


@pytest.fixture
def pod(control_plane: Path) -> Iterator[str]:
    """A fresh pod in the unwatched namespace, and the pod-patcher account there."""
    fakepods.ensure_namespace(UNWATCHED_NAMESPACE)
    kubectl("apply", "-f", "-", input_text=PATCHER_RBAC)
    name = f"ledger-{uuid.uuid4().hex[:6]}"
    kubectl("apply", "-f", "-", input_text=json.dumps(pod_manifest(name)))
    yield name
    kubectl("delete", "pod", name, "-n", UNWATCHED_NAMESPACE, "--wait=false", check=False)


def test_who_may_patch_pods_may_not_set_change_or_remove_the_ledger(pod: str) -> None:
    # The account may patch the pod: another label goes through, so what refuses below is the policy.
    allowed(PATCHER, "label", "pod", pod, "team=db")

    # Set: a forged ledger or label on a pod that has none.
    refused(PATCHER, "annotate", "pod", pod, f"{HOLDS}={LEDGER}", message=NOT_THE_OPERATOR)
    refused(PATCHER, "label", "pod", pod, f"{SUSPENDED}=true", message=NOT_THE_OPERATOR)
    assert HOLDS not in meta(pod)["annotations"] and SUSPENDED not in meta(pod)["labels"]

    # The operator writes them; now changing or removing them is refused as well.
    allowed(OPERATOR, "annotate", "pod", pod, f"{HOLDS}={LEDGER}")
    allowed(OPERATOR, "label", "pod", pod, f"{SUSPENDED}=true")
    refused(PATCHER, "annotate", "pod", pod, "--overwrite", f'{HOLDS}={{"v": 1}}', message=NOT_THE_OPERATOR)
    refused(PATCHER, "annotate", "pod", pod, f"{HOLDS}-", message=NOT_THE_OPERATOR)
    refused(PATCHER, "label", "pod", pod, "--overwrite", f"{SUSPENDED}=false", message=NOT_THE_OPERATOR)
    refused(PATCHER, "label", "pod", pod, f"{SUSPENDED}-", message=NOT_THE_OPERATOR)
    # A whole-object update (PUT) that leaves the ledger out removes it: refused too.
    body = json.loads(kubectl("get", "pod", pod, "-n", UNWATCHED_NAMESPACE, "-o", "json").stdout)
    del body["metadata"]["annotations"][HOLDS]
    refused(PATCHER, "replace", "-f", "-", input_text=json.dumps(body), message=NOT_THE_OPERATOR)
    # The message names who asked.
    _, stderr = as_user(PATCHER, "label", "pod", pod, f"{SUSPENDED}-")
    assert f"{PATCHER} is not the operator" in stderr
    assert meta(pod)["annotations"][HOLDS] == LEDGER and meta(pod)["labels"][SUSPENDED] == "true"

    # Other writes of a pod that carries the ledger still pass, and the keys stay as the operator wrote them.
    allowed(PATCHER, "label", "pod", pod, "--overwrite", "team=web")
    allowed(PATCHER, "annotate", "pod", pod, "note=hello")
    assert meta(pod)["annotations"][HOLDS] == LEDGER and meta(pod)["labels"][SUSPENDED] == "true"

    # A pod created with a ledger (a template, a restore) is refused; deleting a pod is not affected.
    forged = pod_manifest(f"{pod}-forged", {HOLDS: LEDGER})
    refused(PATCHER, "create", "-f", "-", input_text=json.dumps(forged), message=NOT_THE_OPERATOR)
    allowed(PATCHER, "delete", "pod", pod, "--wait=false")


def test_the_operator_may_write_its_two_keys_and_nothing_else_of_a_pod(pod: str) -> None:
    allowed(OPERATOR, "annotate", "pod", pod, f"{HOLDS}={LEDGER}")
    allowed(OPERATOR, "label", "pod", pod, f"{SUSPENDED}=true")
    allowed(OPERATOR, "annotate", "pod", pod, "--overwrite", f'{HOLDS}={{"v": 1}}')

    # Its token cannot change an image (pod `patch` is one verb: RBAC allows it), another label or annotation,
    # or add a finalizer, even in the same patch as a ledger write.
    refused(OPERATOR, "set", "image", f"pod/{pod}", "main=evil.invalid/miner:1", message=ONLY_ITS_KEYS)
    refused(OPERATOR, "label", "pod", pod, "team=db", message=ONLY_ITS_KEYS)
    refused(OPERATOR, "annotate", "pod", pod, "note=x", message=ONLY_ITS_KEYS)
    both = {"metadata": {"annotations": {HOLDS: LEDGER}, "labels": {"team": "db"}}}
    refused(OPERATOR, "patch", "pod", pod, "--type=merge", "-p", json.dumps(both), message=ONLY_ITS_KEYS)
    finalizer = {"metadata": {"finalizers": ["example.com/keep"]}}
    refused(OPERATOR, "patch", "pod", pod, "--type=merge", "-p", json.dumps(finalizer), message=ONLY_ITS_KEYS)
    got = json.loads(kubectl("get", "pod", pod, "-n", UNWATCHED_NAMESPACE, "-o", "json").stdout)
    assert got["spec"]["containers"][0]["image"] == "fake.invalid/app:1"
    assert "team" not in meta(pod)["labels"] and not got["metadata"].get("finalizers")

    # Removing both, as a release does, is its to do.
    allowed(OPERATOR, "annotate", "pod", pod, f"{HOLDS}-")
    allowed(OPERATOR, "label", "pod", pod, f"{SUSPENDED}-")
    assert HOLDS not in meta(pod)["annotations"] and SUSPENDED not in meta(pod)["labels"]


def test_controllers_and_the_kubelet_still_write_pods_that_carry_a_ledger(control_plane: Path) -> None:
    fakepods.ensure_namespace(UNWATCHED_NAMESPACE)
    name = f"rs-{uuid.uuid4().hex[:6]}"
    template = pod_manifest("unused")
    replicaset = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": UNWATCHED_NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"rs": name}},
            "template": {"metadata": {"labels": {"rs": name}}, "spec": template["spec"]},
        },
    }
    kubectl("apply", "-f", "-", input_text=json.dumps(replicaset))
    try:
        # kube-controller-manager's replicaset controller creates the pod (a CREATE without the keys).
        pod = wait_until(
            lambda: kubectl("get", "pods", "-n", UNWATCHED_NAMESPACE, "-l", f"rs={name}", "-o", "name").stdout.strip(),
            60,
            "the ReplicaSet's pod",
        ).removeprefix("pod/")
        allowed(OPERATOR, "annotate", "pod", pod, f"{HOLDS}={LEDGER}")
        # The status subresource (the kubelet's, here written by the admin) is not matched by the policy.
        condition = {"status": {"conditions": [{"type": "example.com/Checked", "status": "True"}]}}
        kubectl("patch", "pod", pod, "-n", UNWATCHED_NAMESPACE, "--subresource=status", "--type=merge",
                "-p", json.dumps(condition))  # fmt: skip
        # The garbage collector releases the orphaned pod: an update of its ownerReferences, ledger unchanged.
        kubectl("delete", "replicaset", name, "-n", UNWATCHED_NAMESPACE, "--cascade=orphan")
        wait_until(
            lambda: (
                not json.loads(kubectl("get", "pod", pod, "-n", UNWATCHED_NAMESPACE, "-o", "json").stdout)[
                    "metadata"
                ].get("ownerReferences")
            ),
            60,
            "the garbage collector removed the pod's owner",
        )
        assert meta(pod)["annotations"][HOLDS] == LEDGER
        kubectl("delete", "pod", pod, "-n", UNWATCHED_NAMESPACE, "--wait=false")
    finally:
        kubectl("delete", "replicaset", name, "-n", UNWATCHED_NAMESPACE, "--ignore-not-found", check=False)


def test_aggregated_roles_let_view_read_and_edit_create_suspensions(control_plane: Path) -> None:
    fakepods.ensure_namespace(UNWATCHED_NAMESPACE)
    reader, writer = f"alice-{uuid.uuid4().hex[:4]}", f"bob-{uuid.uuid4().hex[:4]}"
    for user, role in ((reader, "view"), (writer, "edit")):
        kubectl("create", "rolebinding", user, f"--clusterrole={role}", f"--user={user}", "-n", UNWATCHED_NAMESPACE)
    name = f"agg-{uuid.uuid4().hex[:4]}"
    suspension = {
        "apiVersion": "processcontrol.dev/v1alpha1",
        "kind": "ProcessSuspension",
        "metadata": {"name": name, "namespace": UNWATCHED_NAMESPACE},
        "spec": {"instanceGroup": "database", "reason": "aggregated roles test"},
    }
    kubectl("apply", "-k", str(ROOT / "deploy" / "aggregated-roles"))
    try:
        # kube-controller-manager aggregates the labelled ClusterRoles into view and edit.
        wait_until(
            lambda: as_user(reader, "auth", "can-i", "list", "processsuspensions.processcontrol.dev")[0] == 0,
            60,
            "view aggregates processcontrol-view",
        )
        wait_until(
            lambda: as_user(writer, "auth", "can-i", "create", "processsuspensions.processcontrol.dev")[0] == 0,
            60,
            "edit aggregates processcontrol-edit",
        )
        code, stderr = as_user(reader, "create", "-f", "-", input_text=json.dumps(suspension))
        assert code != 0 and "forbidden" in stderr.lower(), stderr
        allowed(writer, "create", "-f", "-", input_text=json.dumps(suspension))
        allowed(reader, "get", "processsuspension", name)
        allowed(reader, "get", "processsuspensions")
        code, stderr = as_user(reader, "delete", "processsuspension", name)
        assert code != 0 and "forbidden" in stderr.lower(), stderr
        allowed(writer, "patch", "processsuspension", name, "--type=merge", "-p", '{"spec": {"suspend": false}}')
        allowed(writer, "delete", "processsuspension", name)
    finally:
        kubectl("delete", "psus", name, "-n", UNWATCHED_NAMESPACE, "--ignore-not-found", check=False)
        kubectl("delete", "-k", str(ROOT / "deploy" / "aggregated-roles"), check=False)
        for user in (reader, writer):
            kubectl("delete", "rolebinding", user, "-n", UNWATCHED_NAMESPACE, check=False)


def test_an_excluded_namespace_is_not_acted_on(cluster: Cluster) -> None:
    # The same suspension in a watched namespace and in an excluded one: the first is the proof that the
    # operator has had every chance to act on the second.
    fakepods.ensure_namespace(UNWATCHED_NAMESPACE)
    group = f"excl-{uuid.uuid4().hex[:4]}"
    watched = cluster.group(group, pods=1, jobs="pxc-mysql/mysql")
    ignored = fakepods.create_group(group, UNWATCHED_NAMESPACE, 1, "pxc-mysql/mysql")
    try:
        spec = {"instanceGroup": group, "reason": "exclusion test"}
        for namespace in (UNWATCHED_NAMESPACE, cluster.namespace):
            manifest = cluster.suspension(group, **spec)
            manifest["metadata"]["namespace"] = namespace
            kubectl("apply", "-f", "-", input_text=json.dumps(manifest))
        cluster.wait(group)
        assert not cluster.running(watched[0], "pxc-mysql/mysql")

        other = json.loads(kubectl("get", "psus", group, "-n", UNWATCHED_NAMESPACE, "-o", "json").stdout)
        assert not other.get("status"), other.get("status")
        assert not other["metadata"].get("finalizers"), "no finalizer: deleting it never waits for the operator"
        assert fakepods.running_path(
            UNWATCHED_NAMESPACE, ignored[0], fakepods.JobProcess.parse("pxc-mysql/mysql")
        ).exists()
        assert HOLDS not in meta(ignored[0])["annotations"]
    finally:
        kubectl("delete", "psus", group, "-n", UNWATCHED_NAMESPACE, "--ignore-not-found", "--timeout=30s", check=False)
        for pod in ignored:
            fakepods.stop_pod_processes(UNWATCHED_NAMESPACE, pod)
            kubectl("delete", "pod", pod, "-n", UNWATCHED_NAMESPACE, "--wait=false", check=False)


def test_the_operators_token_is_refused_exec_and_pod_writes_in_an_excluded_namespace(control_plane: Path) -> None:
    # RBAC cannot leave kube-system out of the ClusterRoleBinding; the policy refuses the token there.
    name = f"excluded-{uuid.uuid4().hex[:6]}"
    manifest = pod_manifest(name)
    manifest["metadata"]["namespace"] = "kube-system"  # type: ignore[index]
    kubectl("apply", "-f", "-", input_text=json.dumps(manifest))
    try:
        message = "the processcontrol operator does not exec into or write pods of the namespace kube-system"
        for args in (("exec", name, "--", "true"), ("annotate", "pod", name, f"{HOLDS}={LEDGER}")):
            result = kubectl("--as", OPERATOR, "-n", "kube-system", *args, check=False)
            assert result.returncode != 0
            assert "ValidatingAdmissionPolicy 'processcontrol-excluded-namespaces'" in result.stderr, result.stderr
            assert message in result.stderr
        # Elsewhere the exec is admitted (it then fails at kwok: this pod runs nothing).
        fakepods.ensure_namespace(UNWATCHED_NAMESPACE)
        kubectl("apply", "-f", "-", input_text=json.dumps(pod_manifest(name)))
        result = kubectl("--as", OPERATOR, "-n", UNWATCHED_NAMESPACE, "exec", name, "--", "true", check=False)
        assert "ValidatingAdmissionPolicy" not in result.stderr and "forbidden" not in result.stderr.lower()
    finally:
        kubectl("delete", "pod", name, "-n", "kube-system", "--wait=false", check=False)
        kubectl("delete", "pod", name, "-n", UNWATCHED_NAMESPACE, "--wait=false", "--ignore-not-found", check=False)


# --- who asked: spec.requestedBy bound to the requesting user (deploy/admission/requester.yaml) ----------------------

REQUESTER_POLICY = "ValidatingAdmissionPolicy 'processcontrol-requester'"
FLUX = f"system:serviceaccount:{UNWATCHED_NAMESPACE}:flux"
ARGO = f"system:serviceaccount:{UNWATCHED_NAMESPACE}:argo"
SUSPENSION_WRITER = f"""
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: psus-writer, namespace: {UNWATCHED_NAMESPACE}}}
rules:
  - apiGroups: [processcontrol.dev]
    resources: [processsuspensions]
    verbs: [get, list, create, patch, update, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: psus-writer, namespace: {UNWATCHED_NAMESPACE}}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: psus-writer}}
subjects:
  - {{kind: User, name: alice, apiGroup: rbac.authorization.k8s.io}}
  - {{kind: User, name: bob, apiGroup: rbac.authorization.k8s.io}}
  - {{kind: ServiceAccount, name: flux, namespace: {UNWATCHED_NAMESPACE}}}
  - {{kind: ServiceAccount, name: argo, namespace: {UNWATCHED_NAMESPACE}}}
"""


def suspension_manifest(name: str, requested_by: dict[str, str] | None, **spec: object) -> str:
    body: dict[str, object] = {"instanceGroup": "database", "reason": "requester test", **spec}
    if requested_by is not None:
        body["requestedBy"] = requested_by
    return json.dumps(
        {
            "apiVersion": "processcontrol.dev/v1alpha1",
            "kind": "ProcessSuspension",
            "metadata": {"name": name, "namespace": UNWATCHED_NAMESPACE},
            "spec": body,
        }
    )


@pytest.fixture
def writers(control_plane: Path) -> Iterator[str]:
    """alice, bob and two GitOps accounts that may write suspensions in the unwatched namespace; a name prefix."""
    fakepods.ensure_namespace(UNWATCHED_NAMESPACE)
    for account in ("flux", "argo"):
        kubectl("create", "serviceaccount", account, "-n", UNWATCHED_NAMESPACE, check=False)
    kubectl("apply", "-f", "-", input_text=SUSPENSION_WRITER)
    prefix = f"who-{uuid.uuid4().hex[:4]}"
    wait_until(
        lambda: as_user("bob", "auth", "can-i", "create", "processsuspensions.processcontrol.dev")[0] == 0,
        30,
        "the Role to take effect",
    )
    yield prefix
    for name in kubectl("get", "psus", "-n", UNWATCHED_NAMESPACE, "-o", "name").stdout.split():
        if name.split("/")[-1].startswith(prefix):
            kubectl("delete", name, "-n", UNWATCHED_NAMESPACE, "--wait=false", check=False)


def columns(table: str) -> dict[str, str]:
    """The cells of a one-row kubectl table by header, cut where each header starts (cells may hold spaces)."""
    header, row = table.splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", header)]
    names = header.split()
    return {
        name: row[start : (starts[i + 1] if i + 1 < len(starts) else None)].strip()
        for i, (name, start) in enumerate(zip(names, starts, strict=True))
    }


def requester_refused(user: str, *args: str, input_text: str | None = None) -> str:
    code, stderr = as_user(user, *args, input_text=input_text)
    assert code != 0, f"{user}: kubectl {' '.join(args)} was allowed"
    assert REQUESTER_POLICY in stderr, stderr
    return stderr


def test_a_requester_forged_by_another_user_is_refused(writers: str) -> None:
    name = f"{writers}-a"
    # bob may create suspensions (the same object naming himself passes below): what refuses is the policy.
    stderr = requester_refused("bob", "create", "-f", "-", input_text=suspension_manifest(name, {"username": "alice"}))
    assert "spec.requestedBy must name the user who sends the request, as the API server authenticated it: bob" in (
        stderr
    )
    # Nor may he claim to be a GitOps controller recording alice.
    requester_refused(
        "bob", "create", "-f", "-", input_text=suspension_manifest(name, {"username": "alice", "via": "bob"})
    )
    allowed("alice", "create", "-f", "-", input_text=suspension_manifest(name, {"username": "alice"}))

    # Once recorded it stays: bob may change the reason, not who asked (the CRD's rule), nor remove it.
    allowed("bob", "patch", "psus", name, "--type=merge", "-p", '{"spec": {"reason": "bob was here"}}')
    code, stderr = as_user(
        "bob", "patch", "psus", name, "--type=merge", "-p", '{"spec": {"requestedBy": {"username": "bob"}}}'
    )
    assert code != 0 and "requestedBy cannot be changed or removed" in stderr, stderr
    code, stderr = as_user(
        "bob", "patch", "psus", name, "--type=json", "-p", '[{"op": "remove", "path": "/spec/requestedBy"}]'
    )
    assert code != 0 and "requestedBy cannot be changed or removed" in stderr, stderr

    # Resumed, then suspended again by bob: a new suspension, his name, and only his.
    allowed("alice", "patch", "psus", name, "--type=merge", "-p", '{"spec": {"suspend": false}}')
    resuspend_as_alice = '{"spec": {"suspend": true, "requestedBy": {"username": "alice"}}}'
    requester_refused("bob", "patch", "psus", name, "--type=merge", "-p", resuspend_as_alice)
    allowed(
        "bob",
        "patch",
        "psus",
        name,
        "--type=merge",
        "-p",
        '{"spec": {"suspend": true, "requestedBy": {"username": "bob"}}}',
    )
    got = json.loads(kubectl("get", "psus", name, "-n", UNWATCHED_NAMESPACE, "-o", "json").stdout)
    assert got["spec"]["requestedBy"] == {"username": "bob"}

    # A suspension that records nobody is admitted (kubectl apply of a manifest without it).
    allowed("bob", "create", "-f", "-", input_text=suspension_manifest(f"{writers}-none", None))


def test_who_makes_a_preview_real_is_its_requester(writers: str) -> None:
    """A preview made real (preview from true to false) is a new suspension: whoever makes it so is who asked."""
    name = f"{writers}-p"
    allowed("alice", "create", "-f", "-", input_text=suspension_manifest(name, {"username": "alice"}, preview=True))
    # bob's one patch would leave alice's name on a suspension she never asked for: refused by the policy.
    requester_refused("bob", "patch", "psus", name, "--type=merge", "-p", '{"spec": {"preview": false}}')
    allowed(
        "bob",
        "patch",
        "psus",
        name,
        "--type=merge",
        "-p",
        '{"spec": {"preview": false, "requestedBy": {"username": "bob"}}}',
    )
    got = json.loads(kubectl("get", "psus", name, "-n", UNWATCHED_NAMESPACE, "-o", "json").stdout)
    assert got["spec"]["requestedBy"] == {"username": "bob"} and got["spec"]["preview"] is False
    # Its own requester's one patch is enough.
    allowed(
        "alice", "create", "-f", "-", input_text=suspension_manifest(f"{name}2", {"username": "alice"}, preview=True)
    )
    allowed("alice", "patch", "psus", f"{name}2", "--type=merge", "-p", '{"spec": {"preview": false}}')


@pytest.fixture
def flux_is_a_delegate(control_plane: Path) -> Iterator[None]:
    """The requester policy configured as docs/api.md says, with the flux account as a delegate; restored after."""
    policy = json.loads(kubectl("get", "validatingadmissionpolicy", "processcontrol-requester", "-o", "json").stdout)
    variables = policy["spec"]["variables"]
    index = next(i for i, v in enumerate(variables) if v["name"] == "delegates")
    original = variables[index]["expression"]
    patch = [{"op": "replace", "path": f"/spec/variables/{index}/expression", "value": json.dumps([FLUX])}]
    kubectl("patch", "validatingadmissionpolicy", "processcontrol-requester", "--type=json", "-p", json.dumps(patch))
    yield
    patch[0]["value"] = original
    kubectl("patch", "validatingadmissionpolicy", "processcontrol-requester", "--type=json", "-p", json.dumps(patch))


def test_a_gitops_account_is_shown_as_configured(writers: str, flux_is_a_delegate: None) -> None:
    name = f"{writers}-git"
    # flux, a delegate, applies a manifest in which alice wrote her name: recorded with flux as via.
    alice_via_flux = suspension_manifest(name, {"username": "alice", "via": FLUX})
    wait_until(lambda: as_user(FLUX, "create", "-f", "-", input_text=alice_via_flux)[0] == 0, 30, "the policy change")
    cells = columns(kubectl("get", "psus", name, "-n", UNWATCHED_NAMESPACE, "-o", "wide").stdout)
    assert (cells["REQUESTER"], cells["VIA"]) == ("alice", FLUX), cells
    # Without via, a delegate's record would read as alice's own: refused.
    requester_refused(FLUX, "create", "-f", "-", input_text=suspension_manifest(f"{name}-x", {"username": "alice"}))
    # argo is no delegate: it is shown as itself, or records nobody.
    requester_refused(
        ARGO, "create", "-f", "-", input_text=suspension_manifest(f"{name}-y", {"username": "alice", "via": ARGO})
    )
    allowed(ARGO, "create", "-f", "-", input_text=suspension_manifest(f"{name}-argo", {"username": ARGO}))
    assert columns(kubectl("get", "psus", f"{name}-argo", "-n", UNWATCHED_NAMESPACE).stdout)["REQUESTER"] == ARGO
