"""Two replicas, one actor on the real node (issue 24): the leading operator pod deleted, and a container of a
suspended group restarted at the same moment; the new leader stops its process again. Timed from the deletion to
the process stopped again, for deploy/'s two replicas and, in the same run, for one replica with the Recreate
strategy (what deploy/ shipped before), so that the note can give both figures side by side.

Each figure is `PROCESSCONTROL_FAILOVER_TRIALS` trials (default 1; `make bench-failover` runs more); p50 and p95 go
to the test's output and to `<state>/failover.json`. Every trial after the first runs on a new pod of the group: the
kubelet delays each further restart of one container (10 s, 20 s, 40 s, ...), and that back-off would be counted as
failover time.
"""

from __future__ import annotations

import json
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.base import ControlPlaneError, kubectl, state_dir
from harness.realnode import RealNode
from harness.workload import PROCESSES, instance_group

from .node_helpers import (
    OPERATOR_NAMESPACE,
    OVERLAY,
    all_stopped,
    get_json,
    kill_container_init,
    leader_pod,
    main_pid,
    operator_pods,
    ready_operator_pod,
    restart_count,
    suspension,
    wait_for,
    wait_ready,
)

GROUP = "failover"
POD = "failover-0"
TRIALS = int(os.environ.get("PROCESSCONTROL_FAILOVER_TRIALS", "1"))


@pytest.fixture
def namespace(operator_pod: str) -> Iterator[str]:
    name = f"node-failover-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", name)
    kubectl("apply", "-f", "-", input_text=json.dumps(instance_group(GROUP, name, 1)))
    kubectl("rollout", "status", f"statefulset/{GROUP}", "-n", name, "--timeout=240s", timeout=260)
    wait_for("the processes to run", lambda: all(main_pid(name, POD, p) for p in PROCESSES) or None, 60)
    kubectl("apply", "-f", "-", input_text=suspension(GROUP, name, GROUP, "real-node e2e: failover"))
    wait_ready(GROUP, name)
    yield name
    kubectl("delete", "psus", "--all", "-n", name, "--timeout=120s", check=False, timeout=140)
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def _rollout() -> None:
    kubectl("rollout", "status", "deployment/processcontrol", "-n", OPERATOR_NAMESPACE, "--timeout=240s", timeout=260)


def _new_pod(namespace: str) -> None:
    """Replace the group's pod (a new uid, no restart back-off) and wait until the suspension stopped it."""
    old = get_json("pod", "-n", namespace, POD)["metadata"]["uid"]
    kubectl("delete", "pod", "-n", namespace, POD, "--timeout=120s", timeout=140)

    def replaced() -> bool | None:
        result = kubectl("get", "pod", "-n", namespace, POD, "-o", "jsonpath={.metadata.uid}", check=False)
        return (result.returncode == 0 and result.stdout not in ("", old)) or None

    wait_for(f"{POD} re-created", replaced, 120)
    kubectl("rollout", "status", f"statefulset/{GROUP}", "-n", namespace, "--timeout=240s", timeout=260)

    def stopped() -> bool | None:
        try:
            return all_stopped(namespace, POD) or None
        except ControlPlaneError:
            return None  # a container still starting: exec has no stream into it yet

    wait_for(f"{POD}: stopped by the suspension", stopped, 180)


def _one_failover(real_node: RealNode, namespace: str, replicas: int, first: bool) -> float:
    """Delete the leader and restart a held container at once; seconds until its process is stopped again."""
    if not first:
        _new_pod(namespace)
    old = ready_operator_pod()
    if replicas > 1:
        standby = [p["metadata"]["name"] for p in operator_pods() if p["metadata"]["name"] != old]
        assert standby, "no standby"
    process = PROCESSES[0]
    started = time.monotonic()
    kubectl("delete", "pod", "-n", OPERATOR_NAMESPACE, old, "--wait=false")
    restarts = kill_container_init(real_node, namespace, POD, process.container)
    wait_for(
        f"{POD}/{process.container} restarted", lambda: restart_count(namespace, POD, process.container) > restarts, 120
    )
    wait_for(f"{POD}: stopped again by the new leader", lambda: all_stopped(namespace, POD) or None, 180)
    elapsed = time.monotonic() - started
    leading = wait_for("a new leader", leader_pod, 120)
    assert leading != old
    # The next trial starts from a settled install: every replica Ready, the old pod gone.
    wait_for(
        "the old operator pod gone", lambda: old not in {p["metadata"]["name"] for p in operator_pods()} or None, 120
    )
    _rollout()
    return elapsed


def _figures(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50": statistics.median(ordered), "p95": p95, "trials": len(ordered), "max": ordered[-1]}


@pytest.mark.timeout(3600)
def test_the_leader_pod_deleted_a_restarted_container_is_stopped_again_by_the_new_leader(
    real_node: RealNode, namespace: str
) -> None:
    deployment = get_json("deployment", "processcontrol", "-n", OPERATOR_NAMESPACE)
    assert deployment["spec"]["replicas"] == 2
    wait_for("two Ready replicas", lambda: len(operator_pods()) == 2 or None, 180)
    two = [_one_failover(real_node, namespace, 2, first=trial == 0) for trial in range(TRIALS)]

    # The figure before issue 24: one replica, Recreate (a strategy patch, as an overlay would).
    kubectl(
        "patch", "deployment", "processcontrol", "-n", OPERATOR_NAMESPACE, "--type=merge",
        "-p", json.dumps({"spec": {"replicas": 1, "strategy": {"type": "Recreate", "rollingUpdate": None}}}),
    )  # fmt: skip
    try:
        _rollout()
        wait_for("one replica", lambda: len(operator_pods()) == 1 or None, 180)
        one = [_one_failover(real_node, namespace, 1, first=False) for _ in range(TRIALS)]
    finally:
        kubectl("apply", "-k", str(OVERLAY))
        _rollout()
    figures = {"two_replicas": _figures(two), "one_replica_recreate": _figures(one)}
    print(json.dumps({**figures, "samples": {"two": two, "one": one}}))
    Path(state_dir() / "failover.json").write_text(json.dumps({**figures, "samples": {"two": two, "one": one}}))
    assert all_stopped(namespace, POD)
    # Each trial asserted that the new leader stopped the process again. How fast (issue 24's goal: 15 s) is a
    # figure for the note and bench/README.md, not a pass mark: these machines are too noisy for one.
