"""A fault on the real node: one pod of an instance group whose exec hangs (its in-pod sender never returns) is cut
off and reported with its reason while the other pods finish, and converges once the pod is fixed.

Runs with the operator's default settings, as deployed (30 s exec timeout).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from harness.base import kubectl
from harness.workload import instance_group

from .node_helpers import all_running, all_stopped, get_json, suspension, wait_for, wait_ready

GROUP = "hang"
HANGING = "hang-a-0"
OTHERS = ["hang-b-0", "hang-b-1"]


@pytest.fixture
def namespace(operator_pod: str) -> Iterator[str]:
    """Two StatefulSets in one instance group: `hang-a` (1 pod, exec hangs) and `hang-b` (2 healthy pods)."""
    name = f"node-hang-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", name)
    for statefulset, replicas, hang in (("hang-a", 1, True), ("hang-b", 2, False)):
        manifest = instance_group(statefulset, name, replicas, group=GROUP, hang_exec=hang)
        kubectl("apply", "-f", "-", input_text=json.dumps(manifest))
    for statefulset in ("hang-a", "hang-b"):
        kubectl("rollout", "status", f"statefulset/{statefulset}", "-n", name, "--timeout=240s", timeout=260)
    for pod in [HANGING, *OTHERS]:
        wait_for(f"{pod}: processes running", lambda pod=pod: all_running(name, pod), 60)  # type: ignore[misc]
    yield name
    kubectl("delete", "psus", "--all", "-n", name, "--timeout=120s", check=False, timeout=140)
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def pod_states(namespace: str) -> dict[str, dict[str, Any]]:
    status = get_json("psus", GROUP, "-n", namespace).get("status", {})
    return {p["name"]: p for p in status.get("pods", [])}


def condition(namespace: str, kind: str) -> dict[str, Any]:
    status = get_json("psus", GROUP, "-n", namespace).get("status", {})
    return next((c for c in status.get("conditions", []) if c["type"] == kind), {})


def test_hanging_exec_is_reported_while_the_others_finish(namespace: str) -> None:
    start = time.monotonic()
    kubectl("apply", "-f", "-", input_text=suspension(GROUP, namespace, GROUP, "real-node e2e: hanging exec"))

    def others_suspended() -> dict[str, dict[str, Any]] | None:
        states = pod_states(namespace)
        return states if all(states.get(p, {}).get("state") == "Suspended" for p in OTHERS) else None

    states = wait_for("the healthy pods suspended", others_suspended, 60)
    # One status read: the others are done while the hanging pod is still in progress (its exec has 30 s).
    assert time.monotonic() - start < 30
    assert states[HANGING]["state"] == "Suspending", states[HANGING]
    for pod in OTHERS:
        assert all_stopped(namespace, pod), pod

    stalled = wait_for("Stalled", lambda: condition(namespace, "Stalled").get("status") == "True", 180)
    assert stalled
    stalled_condition = condition(namespace, "Stalled")
    assert stalled_condition["reason"] == "ExecTimeout", stalled_condition
    assert HANGING in stalled_condition["message"]
    assert pod_states(namespace)[HANGING]["state"] == "Failed"

    # Fixed: the sender no longer hangs; the operator's next attempt stops the pod's processes too.
    kubectl("exec", "-n", namespace, HANGING, "-c", "web-http", "--", "rm", "-f", "/hang/perl")
    wait_ready(GROUP, namespace, timeout=240)
    assert all_stopped(namespace, HANGING)
    kubectl("delete", "psus", GROUP, "-n", namespace, "--timeout=180s", timeout=200)
    for pod in [HANGING, *OTHERS]:
        wait_for(f"{pod}: running after deletion", lambda pod=pod: all_running(namespace, pod), 60)  # type: ignore[misc]
