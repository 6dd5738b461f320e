"""The operator drives pods whose containers run the Go original container-run v0.0.3, not ours.

The fake pods run the binary built from ../shared/third_party by hack/build-container-run.sh, through
hack/container-run-vcap (each pod's base directory bound on /var/vcap in a private mount namespace). Without the
source (or Go, or root) the test skips with the reason; in CI it fails instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import fakepods
from harness.base import pid_alive, wait_until
from harness.cluster import Cluster
from harness.testing import missing

MYSQL = "pxc-mysql/mysql"
AGENT = "pxc-mysql/galera-agent"
BOTH = (MYSQL, AGENT)


@pytest.fixture(scope="module")
def go_containerrun() -> list[str]:
    try:
        return fakepods.go_containerrun()
    except fakepods.FakePodError as error:
        missing(f"the e2e against the Go container-run: {error}")


def test_go_original_is_suspended_restarted_resumed_and_deleted(cluster: Cluster, go_containerrun: list[str]) -> None:
    pods = cluster.group("database", pods=2, containerrun=go_containerrun)
    binary = Path(go_containerrun[-1]).resolve()
    for pod in pods:
        for jp in BOTH:
            record = fakepods.container_process(cluster.namespace, pod, fakepods.JobProcess.parse(jp))
            assert record is not None
            assert Path(f"/proc/{record.pid}/exe").resolve() == binary  # really the Go original
    pids = {(p, jp): cluster.main_pid(p, jp) for p in pods for jp in BOTH}
    assert all(pids.values())

    # Suspend: every main process stopped and gone, verified.
    cluster.apply(cluster.suspension("restore", instanceGroup="database", reason="Go original"))
    cluster.wait("restore")
    assert not any(cluster.all_states(pods, BOTH).values())
    assert not any(pid_alive(pid) for pid in pids.values() if pid)
    status = cluster.get("psus", "restore")["status"]
    assert {p["state"] for p in status["pods"]} == {"Suspended"}
    assert {pr["state"] for p in status["pods"] for pr in p["processes"]} == {"Stopped"}

    # A container restart starts the process again; the operator stops it again.
    fakepods.restart_container(cluster.namespace, pods[0], fakepods.JobProcess.parse(MYSQL))
    wait_until(lambda: cluster.running(pods[0], MYSQL), 10, "the restarted process to run")
    wait_until(lambda: not cluster.running(pods[0], MYSQL), 30, "the restarted process to be stopped again")
    wait_until(lambda: "Resuspended" in {e["reason"] for e in cluster.events("restore")}, 30, "a Resuspended event")

    # Resume (suspend: false): every process runs again, with new main processes.
    cluster.kubectl("patch", "psus", "restore", "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_until(lambda: cluster.condition("restore", "Ready").get("reason") == "Resumed", 60, "Ready: Resumed")
    assert all(cluster.all_states(pods, BOTH).values())
    new_pids = {(p, jp): cluster.main_pid(p, jp) for p in pods for jp in BOTH}
    assert all(new_pids[key] and new_pids[key] != pids[key] for key in pids)

    # Suspend again, then delete: the finalizer resumes them before the object goes.
    cluster.kubectl("patch", "psus", "restore", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_until(lambda: cluster.condition("restore", "Suspended").get("status") == "True", 60, "Suspended again")
    assert not any(cluster.all_states(pods, BOTH).values())
    cluster.kubectl("delete", "psus", "restore", "--timeout=60s")
    assert cluster.kubectl("get", "psus", "-o", "name").stdout.strip() == ""
    assert all(cluster.all_states(pods, BOTH).values())
    # Every Go container-run is still up: no STOP or START made one exit.
    for pod in pods:
        for jp in BOTH:
            assert fakepods.container_process(cluster.namespace, pod, fakepods.JobProcess.parse(jp)) is not None
