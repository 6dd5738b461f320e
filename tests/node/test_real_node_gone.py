"""Pods on a node that goes away: an instance group spread over the real node and kwok's node; the real node's
kubelet stops (its containers keep running, but no exec reaches them). The pods there are reported with their
reason while the pod on the other node finishes; when the kubelet is back, the operator completes the suspension.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from harness import fakepods
from harness.base import kubectl
from harness.realnode import RealNode
from harness.workload import instance_group

from .node_helpers import all_running, all_stopped, get_json, suspension, wait_for, wait_ready

GROUP = "gone"
REAL = ["gone-real-0", "gone-real-1"]


@pytest.fixture
def spread(real_node: RealNode, operator_pod: str) -> Iterator[tuple[str, list[str]]]:
    """The namespace and the kwok pod(s) of a group with 2 pods on the real node and 1 on kwok's node."""
    namespace = f"node-gone-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", namespace)
    fake = fakepods.create_group(GROUP, namespace, pods=1, jobs="web/http,web/worker")
    kubectl("apply", "-f", "-", input_text=json.dumps(instance_group("gone-real", namespace, 2, group=GROUP)))
    kubectl("rollout", "status", "statefulset/gone-real", "-n", namespace, "--timeout=240s", timeout=260)
    for pod in REAL:
        wait_for(f"{pod}: processes running", lambda pod=pod: all_running(namespace, pod), 60)  # type: ignore[misc]
    yield namespace, fake
    kubectl("delete", "psus", "--all", "-n", namespace, "--timeout=120s", check=False, timeout=140)
    for pod in fake:
        fakepods.stop_pod_processes(namespace, pod)
    kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def status(namespace: str) -> dict[str, Any]:
    result: dict[str, Any] = get_json("psus", GROUP, "-n", namespace).get("status", {})
    return result


def test_pods_of_a_node_gone_are_reported_while_the_others_finish(
    real_node: RealNode, spread: tuple[str, list[str]]
) -> None:
    namespace, fake = spread
    ports = real_node.ports()
    assert ports is not None
    real_node.stop("kubelet", quiet=True)
    kubelet_back = False
    try:
        kubectl("apply", "-f", "-", input_text=suspension(GROUP, namespace, GROUP, "real-node e2e: node gone"))

        seen: list[dict[str, Any]] = [{}]

        def reported() -> dict[str, Any] | None:
            current = seen[0] = status(namespace)
            pods = {p["name"]: p for p in current.get("pods", [])}
            stalled: dict[str, Any] = next((c for c in current.get("conditions", []) if c["type"] == "Stalled"), {})
            done = all(pods.get(p, {}).get("state") == "Suspended" for p in fake)
            failed = all(pods.get(p, {}).get("state") == "Failed" for p in REAL)
            return current if done and failed and stalled.get("status") == "True" else None

        try:
            current = wait_for("kwok pod suspended, real-node pods Failed, Stalled", reported, 120)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; status: {json.dumps(seen[0])}") from None
        stalled = next(c for c in current["conditions"] if c["type"] == "Stalled")
        assert stalled["reason"], stalled
        assert any(pod in stalled["message"] for pod in REAL), stalled
        for entry in current["pods"]:
            if entry["name"] in REAL:
                assert entry.get("message"), entry
        for pod in fake:
            for jp in fakepods.pod_jobs(namespace, pod):
                assert not fakepods.running_path(namespace, pod, jp).exists()

        real_node.start_kubelet(ports)
        kubelet_back = True
        wait_ready(GROUP, namespace, timeout=240)
        for pod in REAL:
            assert all_stopped(namespace, pod), pod
    finally:
        if not kubelet_back:
            real_node.start_kubelet(ports)
