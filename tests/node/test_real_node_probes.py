"""Suspensions and the kubelet's liveness probes, on the real node: the kubelet really probes, kills and restarts.

Two StatefulSets of the kubecf-like workload (hack/workload.py), one pod each:
- `probed`: both process containers have a liveness probe their stopped process fails (HTTP on web/http's port,
  `test -f` of web/worker's containerrun sentinel), suspended with the default `probes: Warn`;
- `mixed`: only web-http is probed, suspended with `probes: Skip`.
Every check is made through the API (status, conditions, events, container statuses) or inside the containers.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from harness.base import kubectl, state_dir
from harness.workload import LIVENESS, PROCESSES, instance_group

from .node_helpers import all_running, get_json, group_pods, main_pid, sentinel_present, wait_for

HTTP, WORKER = PROCESSES  # web/http (probed in both sets), web/worker (probed in `probed` only)


def container_statuses(namespace: str, pod: str) -> dict[str, dict[str, Any]]:
    """The pod's container statuses by container name."""
    statuses = get_json("pod", "-n", namespace, pod)["status"].get("containerStatuses", [])
    return {c["name"]: c for c in statuses}


def restarts(namespace: str, pod: str) -> dict[str, int]:
    return {name: int(c["restartCount"]) for name, c in container_statuses(namespace, pod).items()}


def every_container_ready(namespace: str, pod: str) -> bool:
    statuses = container_statuses(namespace, pod)
    return bool(statuses) and all(c.get("ready") for c in statuses.values())


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def manifest(name: str, namespace: str, group: str, probes: str | None) -> str:
    spec: dict[str, Any] = {"instanceGroup": group, "reason": "real-node e2e: probes"}
    if probes is not None:
        spec["probes"] = probes
    return json.dumps(
        {
            "apiVersion": "processcontrol.dev/v1alpha1",
            "kind": "ProcessSuspension",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        }
    )


def watched_versions(output: str) -> list[dict[str, Any]]:
    """The objects `kubectl get -w -o json` printed, in order."""
    decoder, at = json.JSONDecoder(), 0
    objects: list[dict[str, Any]] = []
    while True:
        while at < len(output) and output[at].isspace():
            at += 1
        if at >= len(output):
            return objects
        obj, at = decoder.raw_decode(output, at)
        objects.append(obj)


def pod_events(namespace: str, pod: str) -> list[dict[str, Any]]:
    """The pod's events, oldest first: what the kubelet did and why (probe failures, kills, back-offs)."""
    items: list[dict[str, Any]] = get_json("events", "-n", namespace, "--field-selector", f"involvedObject.name={pod}")[
        "items"
    ]
    return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")


def events_of(namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = get_json(
        "events", "-n", namespace, "--field-selector", f"involvedObject.name={name},reason={reason}"
    )["items"]
    return items


@pytest.fixture(scope="module")
def namespace(operator_pod: str) -> Iterator[str]:
    """Both StatefulSets running, every container Ready."""
    name = f"node-probes-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", name)
    sets = [
        instance_group("probed", name, 1, liveness=LIVENESS),
        instance_group("mixed", name, 1, liveness={HTTP.container: LIVENESS[HTTP.container]}),
    ]
    for statefulset in sets:
        kubectl("apply", "-f", "-", input_text=json.dumps(statefulset))
    for set_name in ("probed", "mixed"):
        kubectl("rollout", "status", f"statefulset/{set_name}", "-n", name, "--timeout=240s", timeout=260)
        wait_for(f"{set_name}-0 Ready", partial(every_container_ready, name, f"{set_name}-0"), 120)
    assert [p["metadata"]["name"] for p in group_pods(name, "probed")] == ["probed-0"]
    yield name
    kubectl("delete", "psus", "--all", "-n", name, "--timeout=120s", check=False, timeout=140)
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def test_warn_shows_the_conflict_before_the_first_stop(namespace: str) -> None:
    """The status names both probes while every process still runs; only then are they stopped."""
    env = dict(os.environ, KUBECONFIG=str(state_dir() / "kubeconfig"))
    watch = subprocess.Popen(
        ["kubectl", "get", "psus", "-n", namespace, "-w", "-o", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        time.sleep(1)  # the watch is established before the object exists: it sees every version
        kubectl("apply", "-f", "-", input_text=manifest("probed", namespace, "probed", None))
        wait_for(
            "probed-0 suspended",
            lambda: get_json("psus", "probed", "-n", namespace).get("status", {}).get("summary") == "1/1",
            90,
        )
    finally:
        watch.terminate()
        output, _ = watch.communicate(timeout=10)
    versions = [v for v in watched_versions(output) if v["metadata"]["name"] == "probed"]
    first_conflict = next(i for i, v in enumerate(versions) if condition(v, "ProbeConflict").get("status") == "True")
    stopped_at = [
        i
        for i, v in enumerate(versions)
        for pod in v.get("status", {}).get("pods", [])
        for process in pod.get("processes", [])
        if process["state"] == "Stopped"
    ]
    assert stopped_at, "no version showed a stopped process"
    assert first_conflict < min(stopped_at), (first_conflict, min(stopped_at))
    shown = versions[first_conflict]
    message = condition(shown, "ProbeConflict")["message"]
    assert "web-http: livenessProbe httpGet :8080/" in message
    assert "web-worker: livenessProbe exec test -f /var/vcap/data/web/worker_containerrun.running" in message
    assert condition(shown, "ProbeConflict")["reason"] == "ProbesWillFail"
    assert sorted(shown["status"]["pods"][0]["probeConflicts"]) == [
        "web-http: livenessProbe httpGet :8080/",
        "web-worker: livenessProbe exec test -f /var/vcap/data/web/worker_containerrun.running",
    ]
    assert events_of(namespace, "probed", "ProbeConflict"), "a Warning event names the conflict"


def test_warn_reports_the_restart_loop_with_the_kubelets_reason(namespace: str) -> None:
    """The kubelet restarts the probed containers, the operator stops them again each time; the loop is shown."""

    def looping() -> dict[str, Any] | None:
        obj = get_json("psus", "probed", "-n", namespace)
        stalled = condition(obj, "Stalled")
        return obj if stalled.get("reason") == "RestartLoop" else None

    obj = wait_for("RestartLoop", looping, 240)
    record = os.environ.get("PROCESSCONTROL_RECORD_DESCRIBE")
    if record:  # for the README: what a person sees
        Path(record).write_text(kubectl("describe", "psus", "probed", "-n", namespace).stdout)
    message = condition(obj, "Stalled")["message"]
    assert "restarted 3 times" in message
    assert "kubelet: " in message and "probe failed" in message.lower(), message
    assert condition(obj, "Ready")["status"] == "False"
    assert condition(obj, "ProbeConflict")["reason"] == "RestartLoop"
    assert obj["status"]["counts"]["restartLoops"] == 1
    assert obj["status"]["pods"][0]["restarts"] >= 3
    loops = events_of(namespace, "probed", "RestartLoop")
    assert len(loops) == 1 and loops[0]["type"] == "Warning" and loops[0].get("count", 1) == 1, loops
    assert sum(restarts(namespace, "probed-0").values()) >= 3


def settled_restarts(namespace: str, pod: str, quiet: float, timeout: float) -> dict[str, int]:
    """The pod's restart counts once every container has been Ready with no restart for `quiet` seconds."""
    deadline = time.monotonic() + timeout
    seen: dict[str, int] | None = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        counts = restarts(namespace, pod) if every_container_ready(namespace, pod) else None
        if counts is not None and counts == seen:
            if time.monotonic() - since >= quiet:
                return counts
        else:
            seen, since = counts, time.monotonic()
        time.sleep(1)
    statuses = container_statuses(namespace, pod)
    events = [(e["reason"], e["message"]) for e in pod_events(namespace, pod)]
    raise AssertionError(f"{pod} not Ready and steady for {quiet:.0f} s within {timeout:.0f} s: {statuses} {events}")


def test_resume_ends_the_restart_loop_every_container_ready_and_steady(namespace: str) -> None:
    """Once the suspension is deleted, the restart loop ends: every container Ready, every process running, no
    restart for twenty probe periods (a process still stopped would have failed its probe many times over).

    The deletion lands inside the loop, so the kubelet may already have decided a kill from a probe that failed
    just before the START: that kill still plays out, after the container's back-off. It is one restart per
    container at most; a second would mean a process stopped after the suspension was gone."""
    before = restarts(namespace, "probed-0")
    kubectl("delete", "psus", "probed", "-n", namespace, "--timeout=120s", timeout=140)
    settled = settled_restarts(namespace, "probed-0", quiet=20, timeout=420)
    assert all(settled[name] <= before[name] + 1 for name in settled), (before, settled)
    wait_for("processes running", partial(all_running, namespace, "probed-0"), 60)
    waiting = [
        c["state"]["waiting"] for c in container_statuses(namespace, "probed-0").values() if "waiting" in c["state"]
    ]
    assert not waiting, waiting


def test_skip_leaves_the_probed_container_alone(namespace: str) -> None:
    before = restarts(namespace, "mixed-0")
    http_pid = main_pid(namespace, "mixed-0", HTTP)
    assert http_pid is not None
    kubectl("apply", "-f", "-", input_text=manifest("mixed", namespace, "mixed", "Skip"))
    kubectl("wait", "--for=condition=Ready", "--timeout=120s", "-n", namespace, "psus/mixed", timeout=140)

    obj = get_json("psus", "mixed", "-n", namespace)
    assert condition(obj, "ProbeConflict")["reason"] == "ProbedProcessesSkipped"
    assert "left running (probes: Skip): web/http" in obj["status"]["pods"][0]["message"]
    assert main_pid(namespace, "mixed-0", WORKER) is None and not sentinel_present(namespace, "mixed-0", WORKER)
    time.sleep(15)  # fifteen probe periods of web-http
    assert main_pid(namespace, "mixed-0", HTTP) == http_pid, "the probed process kept running, the same one"
    assert restarts(namespace, "mixed-0") == before, "no container restarted"

    kubectl("delete", "psus", "mixed", "-n", namespace, "--timeout=120s", timeout=140)
    wait_for("mixed-0 running again", partial(all_running, namespace, "mixed-0"), 60)
    assert restarts(namespace, "mixed-0") == before
