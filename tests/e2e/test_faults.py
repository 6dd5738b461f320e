"""Faults real clusters have, on the real control plane: the operator SIGKILLed, kube-apiserver and etcd restarted,
pods deleted or hanging in the middle of an exec, crash-looping containers, a namespaced install without exec rights.

Each scenario ends with the same check (reliability.check_state): every process that should be stopped is stopped,
every other one runs, status says so, and no finalizer or label is left behind. The long variant is `make soak-faults`.
"""

from __future__ import annotations

import contextlib
import copy
import os
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness import fakepods
from harness.base import kubectl, wait_until
from harness.cluster import Cluster
from harness.operator import DEPLOY, E2E_OPERATOR_ENV, OPERATOR_NAMESPACE, OperatorProcess, service_account_kubeconfig
from harness.reliability import (
    SESSION_LOG_OFFSET,
    assert_converged,
    forbidden_lines,
    kill_trial,
    log_offset,
    restart_component,
    revoked_exec,
    wait_gone,
)

MYSQL = "pxc-mysql/mysql"
AGENT = "pxc-mysql/galera-agent"
BOTH = (MYSQL, AGENT)
# Seeds of the CI trials (the soak runs more): fixed, so that a failure is reproducible.
CI_SEEDS = tuple(int(s) for s in os.environ.get("PROCESSCONTROL_KILL_SEEDS", "1,2,3").split(","))


@pytest.mark.timeout(900)
def test_operator_sigkilled_while_suspending_resuming_and_deleting_converges(cluster: Cluster) -> None:
    pods = cluster.group("database", pods=30, jobs=MYSQL, ready_timeout=240)
    others = cluster.group("api", pods=1, jobs=MYSQL)
    since = log_offset(cluster.operator.log_path)
    failures = []
    for seed in CI_SEEDS:
        # Kills while suspending and while resuming; the soak (make soak-faults) also kills while deleting.
        trial = kill_trial(cluster, pods, [MYSQL], seed, kill_deleting=False)
        print(trial.as_json())
        failures += [f"seed {seed} {phase}: {w}" for phase, wrong in trial.wrong.items() for w in wrong]
    assert not failures, "\n".join(failures)
    assert all(cluster.all_states(others, [MYSQL]).values()), "another instance group was touched"
    assert forbidden_lines(cluster.operator.log_path, since) == []


def _operator_pid(cluster: Cluster) -> int:
    process = cluster.operator.process
    assert process is not None and process.poll() is None, "the operator is not running"
    return process.pid


def _restarted_if_it_lost_its_lease(cluster: Cluster, since: int) -> bool:
    """An outage longer than the renew deadline (10 s) makes the leader exit, as controller-runtime's do: start
    it again, as the kubelet would. Any other exit is a crash. True when it had to be started."""
    process = cluster.operator.process
    if process is None or process.poll() is None:
        return False
    assert cluster.operator.lost_its_lease(since), f"the operator crashed:\n{cluster.operator.log_tail()}"
    cluster.operator.start()
    return True


def _leading_again(cluster: Cluster, since: int) -> bool:
    """Wait until the operator leads again; True when it had to be started again on the way."""
    restarted = False

    def leading() -> bool:
        nonlocal restarted
        restarted |= _restarted_if_it_lost_its_lease(cluster, since)
        return bool(cluster.operator.leading())

    wait_until(leading, 60, "the operator leading again")
    return restarted


@pytest.mark.timeout(600)
def test_apiserver_and_etcd_restarts_mid_suspension_operator_recovers_without_restart(cluster: Cluster) -> None:
    """Without a restart unless the outage outlasts the renew deadline: then it exits on purpose (a leader that
    cannot renew must stop acting) and comes back as the kubelet would start it; nothing else ends it."""
    pods = cluster.group("database", pods=6)
    pid = _operator_pid(cluster)
    since = log_offset(cluster.operator.log_path)
    lost = False

    # kube-apiserver goes away while the operator is suspending (its exec streams and watches break).
    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    wait_until(lambda: cluster.get("psus", "restore").get("status", {}).get("pods"), 30, "work to start")
    restart_component("kube-apiserver", down_s=3)
    lost |= _leading_again(cluster, since)
    assert_converged(cluster, pods, BOTH, "restore", stopped=True)

    # The watches came back: a change made after the restart is acted on.
    cluster.kubectl("patch", "psus", "restore", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    cluster.wait("restore", timeout=120)
    assert_converged(cluster, pods, BOTH, "restore", stopped=False)

    # etcd goes away while suspending: the API server answers 5xx/timeouts until it is back.
    cluster.kubectl("patch", "psus", "restore", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_until(
        lambda: any(p["state"] != "Resumed" for p in cluster.get("psus", "restore").get("status", {}).get("pods", [])),
        30,
        "suspending to start",
    )
    restart_component("etcd", down_s=3)
    lost |= _leading_again(cluster, since)
    assert_converged(cluster, pods, BOTH, "restore", stopped=True)
    cluster.kubectl("delete", "psus", "restore", "--timeout=120s")
    assert_converged(cluster, pods, BOTH, None, stopped=False)

    assert lost or _operator_pid(cluster) == pid, "the operator was restarted"
    assert forbidden_lines(cluster.operator.log_path, since) == []


def _sender_wrapper(directory: Path, body: str) -> Path:
    """A `perl` first in the exec's PATH (the in-pod script's first sender tool), running `body` when it sends."""
    directory.mkdir(parents=True, exist_ok=True)
    wrapper = directory / "perl"
    wrapper.write_text(f"#!/bin/sh\necho $$ >> {directory}/pids\n{body}\n")
    wrapper.chmod(0o755)
    return wrapper


def _kill_recorded(directory: Path) -> None:
    """Stop the wrappers that are still running (their pids were recorded; the exec left them behind)."""
    pids = directory / "pids"
    for line in pids.read_text().split() if pids.exists() else []:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line), signal.SIGKILL)


def _pod_status(cluster: Cluster, name: str, pod: str) -> dict[str, Any]:
    return next((p for p in cluster.get("psus", name).get("status", {}).get("pods", []) if p["name"] == pod), {})


def test_hanging_exec_is_cut_off_reported_and_holds_up_nobody(cluster: Cluster, tmp_path: Path) -> None:
    pods = cluster.group("database", pods=4)
    hanging = pods[0]
    hang_dir = tmp_path / "hang"
    _sender_wrapper(hang_dir, "exec sleep 300")
    cluster.restrict_exec_path(hanging, f"{hang_dir}:{os.environ['PATH']}")
    try:
        start = time.monotonic()
        cluster.apply(cluster.suspension("restore", instanceGroup="database"))
        # One status read decides both: the others are Suspended while the hanging pod is still in progress.
        seen: dict[str, dict[str, Any]] = {}

        def others_suspended() -> bool:
            seen.clear()
            seen.update((p["name"], p) for p in cluster.get("psus", "restore").get("status", {}).get("pods", []))
            return all(seen.get(p, {}).get("state") == "Suspended" for p in pods[1:])

        wait_until(others_suspended, 30, "the other pods to be suspended")
        others_done = time.monotonic() - start
        # The others are done before the hanging exec's deadline (PROCESSCONTROL_EXEC_TIMEOUT_S=10).
        assert others_done < 10, f"the others took {others_done:.1f}s"
        assert seen[hanging]["state"] == "Suspending"
        wait_until(lambda: cluster.condition("restore", "Stalled").get("status") == "True", 40, "Stalled")
        stalled = cluster.condition("restore", "Stalled")
        assert stalled["reason"] == "ExecTimeout", stalled
        assert hanging in stalled["message"]
        assert _pod_status(cluster, "restore", hanging)["state"] == "Failed"
        assert "ExecTimeout" in {e["reason"] for e in cluster.events("restore")}
        # Cut off, not left running for ever by the operator: only the first attempt hangs when it is fixed.
        cluster.restrict_exec_path(hanging, os.environ["PATH"])
    finally:
        _kill_recorded(hang_dir)
    assert_converged(cluster, pods, BOTH, "restore", stopped=True)
    cluster.kubectl("delete", "psus", "restore", "--timeout=60s")
    assert_converged(cluster, pods, BOTH, None, stopped=False)


def test_pod_deleted_while_its_exec_runs(cluster: Cluster, tmp_path: Path) -> None:
    pods = cluster.group("database", pods=3)
    doomed = pods[0]
    slow_dir = tmp_path / "slow"
    _sender_wrapper(slow_dir, 'sleep 3\nexec /usr/bin/perl "$@"')
    cluster.restrict_exec_path(doomed, f"{slow_dir}:{os.environ['PATH']}")
    try:
        cluster.apply(cluster.suspension("restore", instanceGroup="database"))
        wait_until(lambda: (slow_dir / "pids").exists(), 30, "the exec into the doomed pod to start")
        fakepods.delete_pod(cluster.namespace, doomed)
    finally:
        _kill_recorded(slow_dir)
    survivors = pods[1:]
    assert_converged(cluster, survivors, BOTH, "restore", stopped=True)
    entry = _pod_status(cluster, "restore", doomed)
    assert entry == {} or entry["state"] == "Gone", entry
    cluster.kubectl("delete", "psus", "restore", "--timeout=60s")
    assert_converged(cluster, survivors, BOTH, None, stopped=False)


def resuspended(cluster: Cluster) -> int:
    """How many times the operator said it stopped processes that ran again."""
    return sum(e["reason"] == "Resuspended" for e in cluster.events("restore"))


def test_crash_looping_container_is_suspended_again_each_time(cluster: Cluster) -> None:
    pods = cluster.group("database", pods=2)
    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    cluster.wait("restore")
    looping = fakepods.JobProcess.parse(MYSQL)
    for _ in range(5):
        # containerrun dies (SIGKILL) and comes back at once, forgetting the suspension: CrashLoopBackOff-like.
        before = resuspended(cluster)
        fakepods.restart_container(cluster.namespace, pods[0], looping)
        wait_until(
            lambda: resuspended(cluster) > before and not cluster.running(pods[0], MYSQL),  # noqa: B023 - used at once
            30,
            "the restarted process stopped again",
        )
        # The other pod is never disturbed.
        assert not any(cluster.all_states(pods[1:], BOTH).values())
    # Five restarts in a minute are a restart loop (3 in 10 minutes by default): said, while everything stays held.
    wait_until(lambda: cluster.condition("restore", "Stalled").get("reason") == "RestartLoop", 30, "RestartLoop")
    stalled = cluster.condition("restore", "Stalled")
    assert stalled["status"] == "True" and f"pod {pods[0]}: container " in stalled["message"], stalled
    assert cluster.condition("restore", "Ready")["status"] == "False"
    assert not any(cluster.all_states(pods, BOTH).values())
    status = cluster.get("psus", "restore")["status"]
    assert status["counts"]["restartLoops"] == 1
    assert [e["reason"] for e in cluster.events("restore")].count("RestartLoop") == 1
    cluster.kubectl("delete", "psus", "restore", "--timeout=60s")
    assert_converged(cluster, pods, BOTH, None, stopped=False)


def _namespaced_install(tag: str, granted: str, no_exec: str) -> tuple[str, list[dict[str, Any]]]:
    """deploy/namespaced/'s objects for a ServiceAccount of our own: its Role in `granted` as shipped, in `no_exec`
    without the pods/exec rule (a Role copied from an older release, say), and the discovery ClusterRole."""
    account = f"pc-namespaced-{tag}"
    role_docs = list(yaml.safe_load_all((DEPLOY / "namespaced" / "role-kubecf.yaml").read_text()))
    discovery_docs = list(yaml.safe_load_all((DEPLOY / "namespaced" / "discovery_role.yaml").read_text()))
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account, "namespace": NS_SYSTEM}}
    ]
    for namespace in (granted, no_exec):
        for doc in copy.deepcopy(role_docs):
            doc["metadata"]["namespace"] = namespace
            if doc["kind"] == "Role" and namespace == no_exec:
                doc["rules"] = [r for r in doc["rules"] if "pods/exec" not in r["resources"]]
            for subject in doc.get("subjects", []):
                subject["name"] = account
            objects.append(doc)
    # Its replicas elect their leader on a Lease in the operator's namespace, as deploy/'s do.
    for doc in yaml.safe_load_all((DEPLOY / "rbac" / "leader_election.yaml").read_text()):
        doc["metadata"]["name"] = f"pc-leader-election-{tag}"
        if doc["kind"] == "RoleBinding":
            doc["roleRef"]["name"] = f"pc-leader-election-{tag}"
            doc["subjects"][0]["name"] = account
        objects.append(doc)
    for doc in copy.deepcopy(discovery_docs):
        doc["metadata"]["name"] = f"pc-discovery-{tag}"
        if doc["kind"] == "ClusterRoleBinding":
            doc["roleRef"]["name"] = f"pc-discovery-{tag}"
            doc["subjects"][0]["name"] = account
        objects.append(doc)
    return account, objects


def _admission_for(account: str) -> str:
    """deploy/admission/'s policies naming `account` as the operator, as an install of that account ships them.

    The policies are cluster-scoped and name one operator: applied, they replace deploy/'s until
    `kubectl apply -k deploy/admission/` puts those back."""
    rendered = kubectl("kustomize", str(DEPLOY / "admission")).stdout
    docs = [doc for doc in yaml.safe_load_all(rendered) if doc]
    for doc in docs:
        for variable in doc["spec"].get("variables", []):
            if variable["name"] == "operatorAccount":
                variable["expression"] = f"'{account}'"
    return yaml.safe_dump_all(docs)


NS_SYSTEM = OPERATOR_NAMESPACE


@pytest.mark.timeout(600)
def test_namespaced_install_without_exec_rights_reports_forbidden_and_never_crashes(cluster: Cluster) -> None:
    tag = uuid.uuid4().hex[:5]
    granted, no_exec, foreign = cluster.namespace, f"{cluster.namespace}-noexec", f"{cluster.namespace}-foreign"
    for namespace in (no_exec, foreign):
        fakepods.ensure_namespace(namespace)
    account, objects = _namespaced_install(tag, granted, no_exec)
    manifest = yaml.safe_dump_all(objects)
    kubectl("apply", "-f", "-", input_text=manifest)
    main = cluster.operator
    main_since = SESSION_LOG_OFFSET  # this session's whole log of the operator with deploy/'s grants
    main.stop()  # only the namespaced operator acts in this test
    # Its pod writes are admitted once the policies name its account (deploy/'s operator is stopped meanwhile).
    kubectl("apply", "-f", "-", input_text=_admission_for(account))
    namespaced = OperatorProcess(
        service_account_kubeconfig(namespace=NS_SYSTEM, account=account),
        args=("--namespace", granted, "--namespace", no_exec),
        env=E2E_OPERATOR_ENV,
        log_path=main.log_path.with_name(f"operator-namespaced-{tag}.log"),
    )
    try:
        namespaced.start()
        pods = {ns: fakepods.create_group("database", ns, 2, MYSQL) for ns in (granted, no_exec, foreign)}
        for ns in pods:
            Cluster(ns, namespaced).apply(Cluster(ns, namespaced).suspension("restore", instanceGroup="database"))
        cluster.wait("restore")
        assert_converged(cluster, pods[granted], [MYSQL], "restore", stopped=True)

        other = Cluster(no_exec, namespaced)
        wait_until(lambda: other.condition("restore", "Stalled").get("status") == "True", 60, "Stalled in " + no_exec)
        stalled = other.condition("restore", "Stalled")
        assert stalled["reason"] == "ExecForbidden", stalled
        assert "forbidden" in stalled["message"].lower() and "pods/exec" in stalled["message"], stalled
        assert other.condition("restore", "Ready")["status"] == "False"
        assert {p["state"] for p in other.get("psus", "restore")["status"]["pods"]} == {"Failed"}
        assert all(other.all_states(pods[no_exec], [MYSQL]).values()), "nothing could be stopped there"
        assert "ExecForbidden" in {e["reason"] for e in other.events("restore")}

        # Not watched at all: untouched (no status, no finalizer).
        outside = Cluster(foreign, namespaced).get("psus", "restore")
        assert "status" not in outside and not outside["metadata"].get("finalizers"), outside
        assert namespaced.process is not None and namespaced.process.poll() is None, "the operator crashed"

        for ns in (granted, no_exec):
            kubectl("delete", "psus", "restore", "-n", ns, "--timeout=90s")
        assert_converged(cluster, pods[granted], [MYSQL], None, stopped=False)
        assert_converged(other, pods[no_exec], [MYSQL], None, stopped=False)
        assert namespaced.process is not None and namespaced.process.poll() is None, "the operator crashed"
        # The only denial it met is the grant its Role lacks, in the namespace that lacks it.
        denied = forbidden_lines(namespaced.log_path, 0)
        assert denied, "no exec was denied?"
        assert all(f'resource "pods/exec" in API group "" in the namespace "{no_exec}"' in line for line in denied)
    finally:
        namespaced.stop()
        for ns in (no_exec, foreign):
            kubectl("delete", "psus", "--all", "-n", ns, "--timeout=60s", check=False)
            for pod in kubectl("get", "pods", "-n", ns, "-o", "name", check=False).stdout.split():
                fakepods.stop_pod_processes(ns, pod.removeprefix("pod/"))
            kubectl("delete", "namespace", ns, "--wait=false", check=False)
        kubectl("delete", "-f", "-", "--ignore-not-found", input_text=manifest, check=False)
        kubectl("apply", "-k", str(DEPLOY / "admission"))
        main.start()
    # The operator with deploy/'s grants never needed more: not one authorization failure in its log.
    assert forbidden_lines(main.log_path, main_since) == []


def test_exec_grant_revoked_after_the_stop_holds_deletion_until_it_can_resume(cluster: Cluster) -> None:
    """Deleting a suspension whose pods can no longer be exec'd into (the grant revoked, or the API server's RBAC
    cache cold after a restart) must not drop the finalizer and leave the processes stopped for good."""
    pods = cluster.group("database", pods=2)
    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    cluster.wait("restore")
    with revoked_exec():
        cluster.kubectl("delete", "psus", "restore", "--wait=false")
        wait_until(lambda: "ResumeFailed" in {e["reason"] for e in cluster.events("restore")}, 60, "ResumeFailed")
        # Held up: the object and its finalizer stay, the processes are still (rightly) stopped.
        assert cluster.get("psus", "restore")["metadata"]["finalizers"] == ["processcontrol.dev/resume"]
        assert not any(cluster.all_states(pods, BOTH).values())
    wait_gone(cluster, "restore", 120)
    assert_converged(cluster, pods, BOTH, None, stopped=False)
