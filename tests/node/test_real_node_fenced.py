"""Fenced transitions on the real node (issue 22): an operator SIGKILLed while its exec waits for the look, before
any go-ahead, stops nothing, and the exec leaves no process of its own behind in the container.

The look is made slow (harness.workload's slow_look: the pod's perl waits before it probes a stopped process), so
the operator is surely killed between asking and answering. The suspension is deleted at once: a late STOP of that
exec (a command line that carried its action) would then leave a process stopped that nothing holds.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.base import kubectl
from harness.realnode import RealNode
from harness.workload import PROCESSES, SLOW_LOOK_S, instance_group

from .node_helpers import (
    OPERATOR_NAMESPACE,
    exec_in,
    get_json,
    kill_container_init,
    main_pid,
    ps,
    ready_operator_pod,
    suspension,
    wait_for,
)

GROUP = "fenced"
POD = "fenced-0"
HTTP, WORKER = PROCESSES


@pytest.fixture
def namespace(operator_pod: str) -> Iterator[str]:
    name = f"node-fenced-{uuid.uuid4().hex[:5]}"
    kubectl("create", "namespace", name)
    kubectl("apply", "-f", "-", input_text=json.dumps(instance_group(GROUP, name, 1, slow_look=True)))
    kubectl("rollout", "status", f"statefulset/{GROUP}", "-n", name, "--timeout=240s", timeout=260)
    wait_for("the processes to run", lambda: main_pid(name, POD, HTTP) and main_pid(name, POD, WORKER), 60)
    yield name
    kubectl("delete", "psus", "--all", "-n", name, "--timeout=120s", check=False, timeout=140)
    kubectl("delete", "namespace", name, "--wait=false", check=False)


def slow_looks() -> list[int]:
    """Host pids of the pod's slowed prober (the `sleep SLOW_LOOK_S` of its perl wrapper): a look under way."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[:2] == [b"sleep", str(SLOW_LOOK_S).encode()]:
                found.append(int(entry.name))
    return found


def test_an_operator_killed_before_its_go_ahead_stops_nothing(
    namespace: str, operator_pod: str, real_node: RealNode
) -> None:
    # A process stopped by hand makes the look probe (and so wait): the suspension holds both of the pod's.
    socket = f"/var/vcap/data/{WORKER.job}/{WORKER.process}_containerrun.sock"
    exec_in(namespace, POD, HTTP.container, "processcontrol", "send", "STOP", socket)
    wait_for("the worker stopped by hand", lambda: main_pid(namespace, POD, WORKER) is None or None, 30)
    http_pid = main_pid(namespace, POD, HTTP)
    assert not slow_looks(), "no slowed look before the suspension"

    kubectl("apply", "-f", "-", input_text=suspension(GROUP, namespace, GROUP, "real-node e2e: fenced"))
    wait_for("the operator's look under way", lambda: slow_looks() or None, 60)
    operator = ready_operator_pod()
    kill_container_init(real_node, OPERATOR_NAMESPACE, operator, "operator")
    kubectl("delete", "psus", GROUP, "-n", namespace, "--wait=false")

    # The exec lost its operator mid-look: its script finishes the look, finds no go-ahead (the stream closed, or
    # its window ends) and goes, sending nothing.
    started = time.monotonic()
    wait_for("the suspension gone", lambda: not get_json("psus", "-n", namespace)["items"] or None, 180)
    wait_for("the slowed look over", lambda: not slow_looks() or None, SLOW_LOOK_S + 30)
    time.sleep(max(0.0, SLOW_LOOK_S + 10 - (time.monotonic() - started)))
    assert main_pid(namespace, POD, HTTP) == http_pid, "the http process was never stopped (same pid, running)"
    assert main_pid(namespace, POD, WORKER) is None, "the worker stopped by hand stays stopped"
    # The script's own processes: its shell (the script text is on its command line), the watchdog, the prober. The
    # new leader has nothing to exec for here (the suspension is going and holds nothing), so any is the old one's.
    left = {
        pid: args[:80]
        for pid, args in ps(namespace, POD, HTTP.container).items()
        if "PCTL1" in args or args.startswith(("sleep ", "/usr/bin/perl"))
    }
    assert not left, f"the exec left processes behind in the container: {left}"
    pod = get_json("pod", "-n", namespace, POD)["metadata"]
    assert "processcontrol.dev/holds" not in pod.get("annotations", {}), pod.get("annotations")
