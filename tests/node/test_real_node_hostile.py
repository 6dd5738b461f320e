"""A hostile container on the real node (issue 27): a FIFO in place of a pid file, 300 sockets of its own and a
socket with an empty process name. Suspended and resumed: its pod shows Failed with a reason, the other pod of
the instance group is unaffected, and the deletion completes.

Runs with the operator's default settings, as deployed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from harness.base import kubectl
from harness.workload import instance_group

from .node_helpers import all_running, all_stopped, exec_in, get_json, suspension, wait_for

GROUP = "hostile"
HOSTILE = "hostile-a-0"
HEALTHY = "hostile-b-0"
CONTAINER = "web-http"  # the hostile pod's first process container: its files are what the operator execs into
FLOOD = 300

# Run in the hostile container, in the background: 300 datagram sockets that keep their `.running` sentinels as
# containerrun does (STOP removes it, START creates it), one with an empty process name (`_containerrun.sock`),
# and a FIFO where containerrun's bpm pid file of web/http is (a read of it would block for ever).
HOSTILE_PROGRAM = f"""
import os, selectors, socket
data = "/var/vcap/data"
os.makedirs(data + "/flood", exist_ok=True)
pid = "/var/vcap/sys/run/bpm/web/http.pid"
os.makedirs(os.path.dirname(pid), exist_ok=True)
if os.path.lexists(pid):
    os.unlink(pid)
os.mkfifo(pid)
paths = [f"{{data}}/flood/p{{i}}_containerrun.sock" for i in range({FLOOD})] + [data + "/web/_containerrun.sock"]
selector = selectors.DefaultSelector()
for path in paths:
    open(path[: -len(".sock")] + ".running", "w").close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    selector.register(sock, selectors.EVENT_READ, path)
open(data + "/flood/ready", "w").close()
while True:
    for key, _ in selector.select():
        word = key.fileobj.recv(64).strip()
        sentinel = key.data[: -len(".sock")] + ".running"
        if word == b"STOP" and os.path.exists(sentinel):
            os.unlink(sentinel)
        elif word == b"START":
            open(sentinel, "w").close()
"""


@pytest.fixture
def namespace(operator_pod: str) -> Iterator[str]:
    """Two StatefulSets in one instance group: `hostile-a` (its container turned hostile) and `hostile-b`."""
    name = f"node-hostile-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", name)
    for statefulset in ("hostile-a", "hostile-b"):
        manifest = instance_group(statefulset, name, 1, group=GROUP)
        kubectl("apply", "-f", "-", input_text=json.dumps(manifest))
    for statefulset in ("hostile-a", "hostile-b"):
        kubectl("rollout", "status", f"statefulset/{statefulset}", "-n", name, "--timeout=240s", timeout=260)
    for pod in (HOSTILE, HEALTHY):
        wait_for(f"{pod}: processes running", lambda pod=pod: all_running(name, pod), 60)  # type: ignore[misc]
    exec_in(name, HOSTILE, CONTAINER, "sh", "-c", 'nohup python3 -c "$0" >/dev/null 2>&1 &', HOSTILE_PROGRAM)
    wait_for(
        "the hostile sockets bound",
        lambda: exec_in(name, HOSTILE, CONTAINER, "ls", "/var/vcap/data/flood", check=False).count("ready") == 1,
        60,
    )
    yield name
    kubectl("delete", "psus", "--all", "-n", name, "--timeout=120s", check=False, timeout=140)
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def pod_states(namespace: str) -> dict[str, dict[str, Any]]:
    status = get_json("psus", GROUP, "-n", namespace).get("status", {})
    return {p["name"]: p for p in status.get("pods", [])}


def flood_sentinels(namespace: str) -> int:
    listing = exec_in(namespace, HOSTILE, CONTAINER, "ls", "/var/vcap/data/flood")
    return sum(1 for name in listing.split() if name.endswith("_containerrun.running"))


def test_a_hostile_container_fails_its_pod_alone_and_the_deletion_completes(namespace: str) -> None:
    kubectl("apply", "-f", "-", input_text=suspension(GROUP, namespace, GROUP, "real-node e2e: hostile container"))

    def settled() -> dict[str, dict[str, Any]] | None:
        states = pod_states(namespace)
        hostile, healthy = states.get(HOSTILE, {}), states.get(HEALTHY, {})
        return states if hostile.get("state") == "Failed" and healthy.get("state") == "Suspended" else None

    states = wait_for("the hostile pod Failed, the other Suspended", settled, 180)
    # The empty process name is the reason, not a hang on the FIFO (ExecTimeout) or an invalid status.
    assert "no BOSH name" in states[HOSTILE]["message"] and "'web/'" in states[HOSTILE]["message"], states[HOSTILE]
    counts = get_json("psus", GROUP, "-n", namespace)["status"]["counts"]
    assert counts["failedByReason"] == {"InvalidSocketNames": 1}, counts
    assert all_stopped(namespace, HEALTHY)
    assert all_stopped(namespace, HOSTILE), "its real processes are held all the same"
    wait_for("the 300 sockets stopped", lambda: flood_sentinels(namespace) == 0 or None, 60)

    kubectl("delete", "psus", GROUP, "-n", namespace, "--timeout=180s", timeout=200)
    for pod in (HOSTILE, HEALTHY):
        wait_for(f"{pod}: running after deletion", lambda pod=pod: all_running(namespace, pod), 60)  # type: ignore[misc]
    assert flood_sentinels(namespace) == FLOOD, "every one of the 300 sockets was started again"
    empty = exec_in(namespace, HOSTILE, CONTAINER, "ls", "/var/vcap/data/web")
    assert "_containerrun.running" in empty.split(), "the socket with an empty name was never stopped"
