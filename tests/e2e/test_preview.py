"""Previews on the real local control plane (issue 25 item 2): the operator looks into each target pod, stops
nothing, writes no ledger, and says in status.preview what a suspension would do and what stands in its way; one
patch makes it real; `processcontrol suspend --preview` does it all and cleans up."""

from __future__ import annotations

import signal

from harness import fakepods
from harness.base import wait_until
from harness.cluster import Cluster

from .test_cli import cli

MYSQL = "pxc-mysql/mysql"
AGENT = "pxc-mysql/galera-agent"
BOTH = (MYSQL, AGENT)
SUSPENDED_LABEL = "processcontrol.dev/suspended"


def group_with_trouble(cluster: Cluster) -> list[str]:
    """database-0 with a liveness probe on mysql's container, database-1 without sockets, database-2 fine."""
    ns = cluster.namespace
    pods = [
        fakepods.create_pod("database", ns, 0, BOTH, probed=MYSQL),
        fakepods.create_pod("database", ns, 1, BOTH),
        fakepods.create_pod("database", ns, 2, BOTH),
    ]
    for pod in pods:
        fakepods.wait_for_sockets(ns, pod, fakepods.parse_jobs(BOTH))
    fakepods.wait_ready(ns, pods)
    for jp in BOTH:
        fakepods.stop_container(ns, pods[1], fakepods.JobProcess.parse(jp), sig=signal.SIGTERM)
    return pods


def test_a_preview_lists_a_pod_without_sockets_and_a_probe_conflict_and_stops_nothing(cluster: Cluster) -> None:
    pods = group_with_trouble(cluster)
    cluster.apply(cluster.suspension("look", instanceGroup="database", preview=True))
    cluster.wait("look", "Previewed")
    cluster.wait("look", "Ready")

    status = cluster.get("psus", "look")["status"]
    preview = status["preview"]
    found = {p["name"]: p for p in preview["pods"]}
    assert (preview["targets"], preview["looked"], preview["wouldStop"]) == (3, 3, 4), preview
    assert found["database-1"]["reason"] == "NoSockets", found["database-1"]
    assert found["database-1"].get("stop", []) == []
    assert found["database-0"]["probeConflicts"] and "livenessProbe" in found["database-0"]["probeConflicts"][0]
    assert sorted(found["database-0"]["stop"]) == sorted(BOTH)  # probes: Warn stops it anyway
    assert sorted(found["database-2"]["stop"]) == sorted(BOTH)
    assert preview["cannotByReason"] == {"NoSockets": 1}
    assert cluster.condition("look", "Ready")["reason"] == "Previewed"
    assert cluster.condition("look", "Suspended")["status"] == "False"
    header, row = cluster.kubectl("get", "psus", "look").stdout.splitlines()
    assert dict(zip(header.split(), row.split(), strict=False))["STATUS"] == "Previewed", row
    # Nothing stopped, no ledger, no label, in any pod.
    assert all(cluster.all_states([pods[0], pods[2]], BOTH).values())
    for pod in pods:
        assert cluster.ledger(pod) == {}, pod
        assert SUSPENDED_LABEL not in cluster.get("pod", pod)["metadata"].get("labels", {})

    # One patch makes it a suspension.
    cluster.kubectl("patch", "psus", "look", "--type=merge", "-p", '{"spec":{"preview":false}}')
    wait_until(
        lambda: not any(cluster.all_states([pods[0], pods[2]], BOTH).values()), 60, "stopped in database-0 and -2"
    )
    assert cluster.ledger(pods[0])["holds"]
    wait_until(lambda: "preview" not in cluster.get("psus", "look")["status"], 30, "status.preview gone")
    assert cluster.condition("look", "Previewed") == {}


def test_suspend_preview_prints_what_it_found_and_leaves_nothing_behind(cluster: Cluster) -> None:
    pods = group_with_trouble(cluster)
    result = cli("suspend", "database", "-n", cluster.namespace, "--preview", "--timeout", "90s")
    assert result.returncode == 1, result  # database-1 stands in the way
    out = result.stdout
    assert "(a preview: nothing is stopped)" in out, out
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("database-")}
    assert "NoSockets" in lines["database-1"], out
    assert MYSQL in lines["database-2"] and AGENT in lines["database-2"], out
    assert "  database-0: pxc-mysql-mysql: livenessProbe" in out, out
    wait_until(lambda: cluster.kubectl("get", "psus", "-o", "name").stdout.strip() == "", 30, "the preview gone")
    assert all(cluster.all_states([pods[0], pods[2]], BOTH).values())
    assert all(cluster.ledger(pod) == {} for pod in pods)
