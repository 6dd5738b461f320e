"""The hold ledger on the real control plane: each way the old round loop broke the promise, tried as a user would.

No process stays stopped that no suspension holds, none runs that a live one holds, a process whose last hold goes
returns to its state before the first, and status never says done before it is.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness import fakepods
from harness.base import kubeconfig_path, wait_until
from harness.cluster import Cluster, execs_done, slow_shell
from harness.operator import PROCESSCONTROL
from harness.reliability import assert_converged, wait_gone

MYSQL = "pxc-mysql/mysql"
AGENT = "pxc-mysql/galera-agent"
BOTH = (MYSQL, AGENT)
HOLDS = "processcontrol.dev/holds"
SUSPENDED_LABEL = "processcontrol.dev/suspended"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, KUBECONFIG=str(kubeconfig_path()))
    return subprocess.run(
        [str(PROCESSCONTROL), *args], capture_output=True, text=True, env=env, timeout=180, check=False
    )


@pytest.mark.timeout(600)
def test_deleting_a_20_pod_suspension_mid_work_with_a_hanging_pod_leaves_nothing_stopped(
    cluster: Cluster, tmp_path: Path
) -> None:
    pods = cluster.group("database", pods=20, ready_timeout=240)
    slow = pods[7]
    cluster.restrict_exec_path(slow, slow_shell(tmp_path / "slow", 4))

    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    wait_until(lambda: sum(not cluster.running(p, MYSQL) for p in pods if p != slow) >= 10, 60, "half the pods stopped")
    started = time.monotonic()
    cluster.kubectl("delete", "psus", "restore", "--wait=false")
    wait_gone(cluster, "restore", 120)
    took = time.monotonic() - started
    print(f"deletion of a 20-pod suspension with one slow pod took {took:.1f}s")

    # Nothing stopped after the finalizer went, not even a STOP that was in flight into the slow pod: once every
    # exec into it has finished, whatever was in flight has landed.
    wait_until(lambda: execs_done(tmp_path / "slow"), 30, "every exec into the slow pod finished")
    assert all(cluster.all_states(pods, BOTH).values()), "a process stayed stopped after the deletion"
    for pod in pods:
        metadata = cluster.get("pod", pod)["metadata"]
        assert HOLDS not in metadata.get("annotations", {}), pod
        assert SUSPENDED_LABEL not in metadata.get("labels", {}), pod


def test_a_pod_relabelled_out_of_the_selector_runs_again(cluster: Cluster) -> None:
    pods = cluster.group("database", pods=2)
    cluster.kubectl("label", "pod", pods[0], "role=primary")
    cluster.kubectl("label", "pod", pods[1], "role=replica")
    cluster.apply(cluster.suspension("primary", selector={"matchLabels": {"role": "primary"}}))
    cluster.wait("primary")
    assert not any(cluster.all_states(pods[:1], BOTH).values())

    # A failover: the old primary becomes a replica and the replica the primary.
    cluster.kubectl("label", "pod", pods[0], "role=replica", "--overwrite")
    cluster.kubectl("label", "pod", pods[1], "role=primary", "--overwrite")

    wait_until(lambda: all(cluster.all_states(pods[:1], BOTH).values()), 30, "the old primary to run again")
    wait_until(lambda: not any(cluster.all_states(pods[1:], BOTH).values()), 30, "the new primary to stop")
    wait_until(lambda: SUSPENDED_LABEL not in cluster.get("pod", pods[0])["metadata"]["labels"], 30, "label gone")
    assert cluster.ledger(pods[0]) == {}
    cluster.wait("primary")
    status = cluster.get("psus", "primary")["status"]
    assert status["summary"] == "1/1"


def test_a_process_stopped_by_hand_before_the_suspension_stays_stopped(cluster: Cluster) -> None:
    pods = cluster.group("database", pods=2)
    cluster.send(pods[0], AGENT, "STOP")
    wait_until(lambda: not cluster.running(pods[0], AGENT), 20, "the agent stopped by hand")

    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    cluster.wait("restore")
    entry = cluster.ledger(pods[0])["processes"][AGENT]
    assert entry["wasRunning"] is False

    started = time.monotonic()
    cluster.kubectl("delete", "psus", "restore", "--timeout=60s")
    took = time.monotonic() - started
    assert took < 20, f"the deletion waited {took:.1f}s for a process that was never running"
    assert not cluster.running(pods[0], AGENT), "stopped by hand before: left as it was"
    states = cluster.all_states(pods, BOTH)
    del states[(pods[0], AGENT)]
    assert all(states.values())


@pytest.mark.timeout(300)
def test_resume_wait_returns_only_when_every_process_runs(cluster: Cluster, tmp_path: Path) -> None:
    """`suspend: false` arrives while the STOPs are still under way; `resume --wait` must not succeed early."""
    pods = cluster.group("database", pods=4)
    cluster.restrict_exec_path(pods[0], slow_shell(tmp_path / "slow", 2))
    cluster.apply(cluster.suspension("database", instanceGroup="database"))
    wait_until(lambda: not cluster.running(pods[1], MYSQL), 30, "suspension under way")

    result = cli("resume", "database", "-n", cluster.namespace, "--wait")

    assert result.returncode == 0, result.stdout + result.stderr
    assert all(cluster.all_states(pods, BOTH).values()), f"resume --wait returned early:\n{result.stdout}"
    status = cluster.get("psus", "database")["status"]
    assert status["observedGeneration"] == 2
    assert status["summary"] == "4/4"


@pytest.mark.timeout(600)
def test_operator_restart_with_30_suspended_pods_never_flips_ready(cluster: Cluster) -> None:
    pods = cluster.group("database", pods=30, jobs=MYSQL, ready_timeout=240)
    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    cluster.wait("restore", timeout=120)

    seen: list[tuple[str, str]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            ready = cluster.condition("restore", "Ready")
            seen.append((ready.get("status", ""), cluster.get("psus", "restore")["status"].get("summary", "")))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        cluster.operator.stop()
        cluster.operator.start()
        time.sleep(10)
    finally:
        done.set()
        watcher.join()
    assert seen and all(state == ("True", "30/30") for state in seen), sorted(set(seen))
    assert not any(cluster.all_states(pods, [MYSQL]).values())


def test_new_pods_and_restarted_containers_are_stopped_within_seconds(cluster: Cluster) -> None:
    pods = cluster.group("database", pods=2)
    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    cluster.wait("restore")
    jps = fakepods.parse_jobs(",".join(BOTH))

    def seconds_until(check: Callable[[], bool], what: str) -> float:
        """From now until check() holds, polled finely: the sentinels are files on this host."""
        started = time.monotonic()
        while not check():
            assert time.monotonic() - started < 30, f"timed out waiting for {what}"
            time.sleep(0.01)
        return time.monotonic() - started

    restarted: list[float] = []
    for _ in range(5):
        fakepods.restart_container(cluster.namespace, pods[0], jps[0])
        restarted.append(seconds_until(lambda: not cluster.running(pods[0], MYSQL), "the restart stopped again"))

    new_pods: list[float] = []
    for ordinal in range(2, 6):
        pod = fakepods.create_pod("database", cluster.namespace, ordinal, jps)
        fakepods.wait_for_sockets(cluster.namespace, pod, jps)
        new_pods.append(
            seconds_until(lambda p=pod: not any(cluster.all_states([p], BOTH).values()), "the new pod stopped")  # type: ignore[misc]
        )

    def p50_p95(values: list[float]) -> str:
        ordered = sorted(values)
        return f"p50 {statistics.median(ordered):.2f}s, max {ordered[-1]:.2f}s (n={len(ordered)})"

    print(f"restarted container stopped again: {p50_p95(restarted)}; new pod stopped: {p50_p95(new_pods)}")
    # Generous bounds for a loaded CI machine; the figures above are what the note reports.
    assert max(restarted) < 10 and max(new_pods) < 15, (restarted, new_pods)


def test_a_suspension_whose_finalizer_was_removed_by_hand_gives_its_processes_back(cluster: Cluster) -> None:
    pods = cluster.group("database", pods=2)
    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    cluster.wait("restore")
    cluster.operator.stop()
    try:
        cluster.kubectl("delete", "psus", "restore", "--wait=false")
        cluster.kubectl("patch", "psus", "restore", "--type=merge", "-p", '{"metadata":{"finalizers":null}}')
        wait_gone(cluster, "restore", 30)
        assert not any(cluster.all_states(pods, BOTH).values()), "nothing ran while the operator was down"
    finally:
        cluster.operator.start()
    # At start-up the operator finds holds whose suspension no longer exists, and gives them back.
    wait_until(lambda: all(cluster.all_states(pods, BOTH).values()), 30, "the orphaned processes to run")
    reasons = json.loads(
        cluster.kubectl(
            "get", "events", "-o", "json", f"--field-selector=involvedObject.kind=Pod,involvedObject.name={pods[0]}"
        ).stdout
    )["items"]
    assert "OrphanReleased" in {e["reason"] for e in reasons}
    wait_until(lambda: cluster.ledger(pods[0]) == {}, 30, "ledger cleared")
    assert_converged(cluster, pods, BOTH, None, stopped=False)
