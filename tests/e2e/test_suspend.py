"""The operator on the real control plane: suspend, verify, keep suspended, resume, with real containerrun processes."""

from __future__ import annotations

import signal

from harness import fakepods
from harness.base import pid_alive, wait_until
from harness.cluster import Cluster

MYSQL = "pxc-mysql/mysql"
AGENT = "pxc-mysql/galera-agent"
BOTH = (MYSQL, AGENT)
SUSPENDED_LABEL = "processcontrol.dev/suspended"


def test_suspend_verify_and_resume_by_suspend_false(cluster: Cluster) -> None:
    pods = cluster.group("database", pods=3, sidecar="logs")
    others = cluster.group("api", pods=1)
    pids = {(p, jp): cluster.main_pid(p, jp) for p in pods for jp in BOTH}
    assert all(pid_alive(pid) for pid in pids.values() if pid)

    cluster.apply(cluster.suspension("restore", instanceGroup="database", reason="restoring from backup, OPS-1234"))
    cluster.wait("restore")

    # Really gone: no sentinel, and the old main processes no longer exist.
    assert not any(cluster.all_states(pods, BOTH).values())
    assert not any(pid_alive(pid) for pid in pids.values() if pid)
    # The other instance group was not touched.
    assert all(cluster.all_states(others, BOTH).values())

    table = cluster.kubectl("get", "psus", "restore").stdout.splitlines()
    assert table[0].split() == ["NAME", "SUSPEND", "READY", "PODS", "REASON", "AGE"]
    assert table[1].split()[:4] == ["restore", "true", "True", "3/3"]
    assert "restoring from backup, OPS-1234" in table[1]

    status = cluster.get("psus", "restore")["status"]
    assert status["observedGeneration"] == 1
    assert status["suspendedAt"]
    assert {p["state"] for p in status["pods"]} == {"Suspended"}
    assert {pr["state"] for p in status["pods"] for pr in p["processes"]} == {"Stopped"}
    labels = {p: cluster.get("pod", p)["metadata"]["labels"].get(SUSPENDED_LABEL) for p in pods + others}
    assert labels == {**dict.fromkeys(pods, "true"), **dict.fromkeys(others)}
    reasons = {e["reason"]: e["message"] for e in cluster.events("restore")}
    assert "Suspending" in reasons
    assert "OPS-1234" in reasons["Suspended"]

    cluster.kubectl("patch", "psus", "restore", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    cluster.wait("restore")
    assert all(cluster.all_states(pods, BOTH).values())
    new_pids = {(p, jp): cluster.main_pid(p, jp) for p in pods for jp in BOTH}
    assert all(new_pids[key] and new_pids[key] != pids[key] and pid_alive(new_pids[key]) for key in pids)  # type: ignore[arg-type]
    assert cluster.condition("restore", "Suspended")["status"] == "False"
    assert cluster.condition("restore", "Ready")["reason"] == "Resumed"
    assert cluster.get("psus", "restore")["status"]["observedGeneration"] == 2
    wait_until(
        lambda: all(SUSPENDED_LABEL not in cluster.get("pod", p)["metadata"]["labels"] for p in pods),
        what="the suspended label to go",
    )


def test_filters_stop_only_the_chosen_processes(cluster: Cluster) -> None:
    pods = cluster.group("database", pods=2)
    cluster.apply(cluster.suspension("agent-only", instanceGroup="database", processes=["galera-agent"]))
    cluster.wait("agent-only")
    assert cluster.all_states(pods, [AGENT]) == dict.fromkeys(((p, AGENT) for p in pods), False)
    assert all(cluster.all_states(pods, [MYSQL]).values())


def test_selector_target(cluster: Cluster) -> None:
    pods = cluster.group("database", pods=2)
    cluster.apply(
        cluster.suspension(
            "by-label",
            selector={"matchLabels": {"quarks.cloudfoundry.org/pod-ordinal": "1"}},
            jobs=["pxc-mysql"],
        )
    )
    cluster.wait("by-label")
    assert cluster.all_states(pods, BOTH) == {
        (pods[0], MYSQL): True,
        (pods[0], AGENT): True,
        (pods[1], MYSQL): False,
        (pods[1], AGENT): False,
    }


def test_delete_resumes_and_removes_the_finalizer(cluster: Cluster) -> None:
    pods = cluster.group("database", pods=2)
    cluster.apply(cluster.suspension("temporary", instanceGroup="database"))
    cluster.wait("temporary")
    assert cluster.get("psus", "temporary")["metadata"]["finalizers"] == ["processcontrol.dev/resume"]
    cluster.kubectl("delete", "psus", "temporary", "--timeout=60s")
    assert cluster.kubectl("get", "psus", "-o", "name").stdout.strip() == ""
    assert all(cluster.all_states(pods, BOTH).values())
    assert all(SUSPENDED_LABEL not in cluster.get("pod", p)["metadata"]["labels"] for p in pods)


def test_restarted_container_and_new_pod_are_suspended_again(cluster: Cluster) -> None:
    pods = cluster.group("database", pods=2)
    cluster.apply(cluster.suspension("keep", instanceGroup="database"))
    cluster.wait("keep")

    # It returns once the new containerrun answers, its process started; the operator may stop it again before any
    # poll here sees it run, so the Resuspended event, not a sentinel seen, says it ran.
    fakepods.restart_container(cluster.namespace, pods[0], fakepods.JobProcess.parse(MYSQL))
    wait_until(lambda: not cluster.running(pods[0], MYSQL), 10, "the restarted process to be stopped again")
    wait_until(lambda: "Resuspended" in {e["reason"] for e in cluster.events("keep")}, 10, "a Resuspended event")

    [new] = cluster.group("database", pods=1, first_ordinal=2)
    wait_until(lambda: not any(cluster.all_states([new], BOTH).values()), 15, "the new pod to be suspended")
    wait_until(lambda: cluster.get("psus", "keep")["status"]["summary"] == "3/3", 15, "summary 3/3")
    cluster.wait("keep")


def test_overlapping_suspensions_resume_only_when_the_last_lets_go(cluster: Cluster) -> None:
    pods = cluster.group("database", pods=2)
    cluster.apply(cluster.suspension("whole-group", instanceGroup="database"))
    cluster.apply(cluster.suspension("agents", instanceGroup="database", processes=["galera-agent"]))
    cluster.wait("whole-group")
    cluster.wait("agents")

    cluster.kubectl("delete", "psus", "agents", "--timeout=60s")
    assert not any(cluster.all_states(pods, BOTH).values()), "whole-group still holds every process"

    cluster.kubectl("patch", "psus", "whole-group", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    cluster.apply(cluster.suspension("agents", instanceGroup="database", processes=["galera-agent"]))
    cluster.wait("agents")
    cluster.wait("whole-group")
    assert all(cluster.all_states(pods, [MYSQL]).values())
    assert not any(cluster.all_states(pods, [AGENT]).values()), "agents still holds galera-agent"
    assert all(cluster.get("pod", p)["metadata"]["labels"].get(SUSPENDED_LABEL) == "true" for p in pods)


def test_duration_expires(cluster: Cluster) -> None:
    pods = cluster.group("database", pods=1)
    cluster.apply(cluster.suspension("short", instanceGroup="database", duration="4s"))
    cluster.wait("short", "Suspended")
    status = cluster.get("psus", "short")["status"]
    assert status["expiresAt"] > status["suspendedAt"]
    wide = cluster.kubectl("get", "psus", "short", "-o", "wide").stdout
    assert "EXPIRES" in wide
    assert status["expiresAt"] in wide
    wait_until(lambda: cluster.condition("short", "Ready").get("reason") == "Expired", 30, "Ready/Expired")
    assert all(cluster.all_states(pods, BOTH).values())
    assert cluster.condition("short", "Suspended")["reason"] == "Expired"


def test_no_matching_pods_is_reported(cluster: Cluster) -> None:
    cluster.apply(cluster.suspension("nobody", instanceGroup="does-not-exist"))
    wait_until(lambda: cluster.condition("nobody", "Stalled").get("status") == "True", 30, "Stalled")
    assert cluster.condition("nobody", "Stalled")["reason"] == "NoMatchingPods"
    assert cluster.condition("nobody", "Ready")["status"] == "False"


def test_pod_without_sockets_is_reported(cluster: Cluster) -> None:
    [pod] = cluster.group("database", pods=1)
    for jp in BOTH:
        fakepods.stop_container(cluster.namespace, pod, fakepods.JobProcess.parse(jp), sig=signal.SIGTERM)
    cluster.apply(cluster.suspension("empty", instanceGroup="database"))
    wait_until(lambda: cluster.condition("empty", "Stalled").get("status") == "True", 30, "Stalled")
    stalled = cluster.condition("empty", "Stalled")
    assert stalled["reason"] == "NoSockets"
    assert pod in stalled["message"]
    [pod_status] = cluster.get("psus", "empty")["status"]["pods"]
    assert pod_status["state"] == "Failed"


def test_image_without_sender_tools_is_reported(cluster: Cluster, tmp_path: object) -> None:
    [pod] = cluster.group("database", pods=1)
    cluster.restrict_exec_path(pod, "/nonexistent")
    cluster.apply(cluster.suspension("no-tools", instanceGroup="database"))
    wait_until(lambda: cluster.condition("no-tools", "Stalled").get("status") == "True", 30, "Stalled")
    stalled = cluster.condition("no-tools", "Stalled")
    assert stalled["reason"] == "NoSenderTool"
    assert "perl,python3,processcontrol,ncat,nc,socat" in stalled["message"]
    assert all(cluster.all_states([pod], BOTH).values()), "nothing could be sent, so everything still runs"
    wait_until(lambda: "NoSenderTool" in {e["reason"] for e in cluster.events("no-tools")}, 10, "a NoSenderTool event")
