"""The checker on its own (issue 23): harness.promise with ExecStatus, the process source the real-node tier uses
against real pods (`processcontrol status -o json` through exec), here against real containerrun processes.

The exec is the one thing replaced: it runs the command on this host in the pod's stead, with the containerruns'
base directory, so that what is parsed is what the real `processcontrol status` prints about real processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness import promise
from harness.base import ControlPlaneError
from harness.promise import HOLDS_ANNOTATION, Checker, ExecStatus, Hints, Limits, ProcState, Seen
from processcontrol.containerrun.protocol import Endpoint

DEADLINE = 30.0
NS = "cf"
MYSQL, AGENT = ("pxc-mysql", "mysql"), ("pxc-mysql", "galera-agent")
DATA = [{"name": "data", "mountPath": "/var/vcap/data"}]


@pytest.fixture
def base_dir() -> Iterator[Path]:
    """A short base directory (unix socket paths are limited to 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="ps", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def containerruns(base_dir: Path) -> Iterator[dict[tuple[str, str], Endpoint]]:
    """Our containerrun supervising `sleep` for mysql and galera-agent, both running."""
    runs = []
    endpoints = {}
    for job, process in (MYSQL, AGENT):
        argv = [sys.executable, "-m", "processcontrol.containerrun", "--job-name", job, "--process-name", process]
        argv += ["--base-dir", str(base_dir), "--stop-timeout", "5", "--", "sleep", "1000"]
        runs.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=base_dir))
        endpoints[(job, process)] = Endpoint(base_dir, job, process)
    try:
        for endpoint in endpoints.values():
            wait_for(endpoint.sentinel.exists, f"{endpoint.socket} to run")
        yield endpoints
    finally:
        for run in runs:
            run.send_signal(signal.SIGTERM)
        for run in runs:
            try:
                run.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()


def wait_for(check: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class HostExec:
    """Runs the command here instead of in the pod (processcontrol as this interpreter's module), in the base
    directory the containerruns use; containers named in `failing` fail as an exec into a restarting one does."""

    def __init__(self, base_dir: Path, failing: Sequence[str] = ()) -> None:
        self.base_dir = base_dir
        self.failing = set(failing)
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, namespace: str, pod: str, container: str, argv: Sequence[str]) -> str:
        self.calls.append((namespace, pod, container))
        if container in self.failing:
            raise ControlPlaneError(f'kubectl exec: container "{container}" is restarting')
        assert argv[0] == "processcontrol"
        env = {**os.environ, "CONTAINERRUN_BASE_DIR": str(self.base_dir)}
        command = [sys.executable, "-m", "processcontrol", *argv[1:]]
        return subprocess.run(command, env=env, capture_output=True, text=True, check=True, timeout=DEADLINE).stdout


def kubecf_pod(*, waiting: Sequence[str] = (), phase: str = "Running", holds: Sequence[str] = ()) -> dict[str, Any]:
    """A db pod as the API returns it: a logs sidecar without the data volume, then mysql and galera-agent's
    containers with it; `holds` are ledger entries of suspension s (uid s) for those processes."""
    containers: list[dict[str, Any]] = [
        {"name": "logs", "volumeMounts": [{"name": "sys", "mountPath": "/var/vcap/sys"}]},
        *(
            {"name": f"{job}-{process}", "args": ["--job-name", job, "--process-name", process], "volumeMounts": DATA}
            for job, process in (MYSQL, AGENT)
        ),
    ]
    statuses: list[dict[str, Any]] = [
        {
            "name": c["name"],
            "state": {"waiting": {"reason": "CrashLoopBackOff"}} if c["name"] in waiting else {"running": {}},
        }
        for c in containers
    ]
    annotations = {}
    if holds:
        entries = {pair: {"holders": ["s"], "wasRunning": True} for pair in holds}
        annotations[HOLDS_ANNOTATION] = json.dumps({"v": 1, "holds": {"s": {"name": "s"}}, "processes": entries})
    metadata = {
        "name": "db-0",
        "uid": "uid-db-0",
        "labels": {
            "quarks.cloudfoundry.org/instance-group-name": "db",
            **({"processcontrol.dev/suspended": "true"} if holds else {}),
        },
        "annotations": annotations,
    }
    return {
        "metadata": metadata,
        "spec": {"containers": containers},
        "status": {"phase": phase, "containerStatuses": statuses},
    }


def stop(endpoint: Endpoint) -> None:
    env = {**os.environ, "CONTAINERRUN_BASE_DIR": str(endpoint.base_dir)}
    subprocess.run([sys.executable, "-m", "processcontrol", "send", "STOP", str(endpoint.socket)], env=env, check=True)
    wait_for(lambda: not endpoint.sentinel.exists(), f"{endpoint.socket} to stop")


def test_exec_status_reads_real_processes_in_the_first_data_container_that_answers(
    base_dir: Path, containerruns: dict[tuple[str, str], Endpoint]
) -> None:
    stop(containerruns[AGENT])
    run = HostExec(base_dir, failing=["pxc-mysql-galera-agent"])
    # mysql's container is in a crash loop (not tried), the agent's exec fails: the next one would answer; none.
    with pytest.raises(ControlPlaneError, match=r"pod cf/db-0: no container answered processcontrol status"):
        ExecStatus(run=run).read(NS, kubecf_pod(waiting=["pxc-mysql-mysql"]))
    assert [c[2] for c in run.calls] == ["pxc-mysql-galera-agent"]
    # Both running, the first one's exec failing: the second answers, the sidecar without the volume never asked.
    run = HostExec(base_dir, failing=["pxc-mysql-mysql"])
    seen = ExecStatus(run=run).read(NS, kubecf_pod())
    assert seen == {MYSQL: Seen(ProcState.RUNNING), AGENT: Seen(ProcState.STOPPED)}
    assert [c[2] for c in run.calls] == ["pxc-mysql-mysql", "pxc-mysql-galera-agent"]
    # A pod that does not run has no processes to judge, and is not asked.
    run = HostExec(base_dir)
    assert ExecStatus(run=run).read(NS, kubecf_pod(phase="Pending")) == {}
    assert run.calls == []


def test_the_checker_on_its_own_judges_real_processes_read_through_exec(
    base_dir: Path, containerruns: dict[tuple[str, str], Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the real-node tier does: a Checker over a namespace with ExecStatus; the objects come from kubectl
    (here a stand-in with the pod and the suspension), the processes from `processcontrol status` in the pod."""
    pod = kubecf_pod(holds=["pxc-mysql/mysql"])
    ready = {"type": "Ready", "status": "True", "reason": "Suspended", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    psus = {
        "metadata": {"name": "s", "uid": "s", "generation": 1, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"instanceGroup": "db", "processes": ["mysql"]},
        "status": {"observedGeneration": 1, "conditions": [{**ready, "observedGeneration": 1}]},
    }

    def kubectl(*args: str, **_: Any) -> subprocess.CompletedProcess[str]:
        assert args[:2] in (("get", "psus"), ("get", "pods")), args
        items = [psus] if args[1] == "psus" else [pod]
        return subprocess.CompletedProcess(list(args), 0, json.dumps({"items": items}), "")

    monkeypatch.setattr(promise, "kubectl", kubectl)
    # Nothing changed from outside since long before the Ready: a Ready that was never true.
    checker = Checker(NS, ExecStatus(run=HostExec(base_dir)), Limits(repair_s=0), Hints(disturbed=0.0))
    found = checker.converge(timeout=0)
    assert [(v.kind, v.subject) for v in found] == [("ready-not-in-force", "s")]
    assert found[0].detail.endswith("db-0 pxc-mysql/mysql is running")
    # Something changed since (a container restarted, say) and the repair time is over: the held process runs.
    checker = Checker(NS, ExecStatus(run=HostExec(base_dir)), Limits(repair_s=0), Hints(disturbed=time.time()))
    assert [str(v) for v in checker.converge(timeout=0)] == [
        "held-running: db-0 pxc-mysql/mysql: running, held by s",
        "ready-stale: s: Ready (Suspended): db-0 pxc-mysql/mysql is running",
    ]
    stop(containerruns[MYSQL])
    assert checker.converge(timeout=0) == []
    # The agent stopped by hand, and the checker not told: nothing holds it, and it does not run.
    stop(containerruns[AGENT])
    assert [v.kind for v in checker.converge(timeout=0)] == ["unheld-stopped"]


@pytest.mark.parametrize(
    "printed",
    [
        "not json",
        '{"job": "a"}',
        '[{"job": "pxc-mysql", "state": "running"}]',
        '[{"job": "", "process": "mysql", "state": "running"}]',
        '[{"job": 1, "process": "mysql", "state": "running"}]',
        '[{"job": "pxc-mysql", "process": "mysql", "state": "' + "r" * 100 + '"}]',
    ],
)
def test_what_a_pod_prints_is_never_half_believed(printed: str) -> None:
    """Whatever the pod's `processcontrol` prints is the pod's: anything but status rows fails the read, naming
    the pod and the container, and the checker counts the read as failed (it judges nothing from it)."""

    def run(namespace: str, pod: str, container: str, argv: Sequence[str]) -> str:
        return printed

    with pytest.raises(ValueError, match=r"pod cf/db-0 container pxc-mysql-mysql: processcontrol status -o json"):
        ExecStatus(run=run).read(NS, kubecf_pod())


def test_two_sockets_of_one_process_that_disagree_make_it_unsettled_and_an_unknown_state_too() -> None:
    rows = [
        {"job": "pxc-mysql", "process": "mysql", "state": "running", "pid": 7, "socket": "/a"},
        {"job": "pxc-mysql", "process": "mysql", "state": "stopped", "pid": None, "socket": "/b"},
        {"job": "pxc-mysql", "process": "galera-agent", "state": "unknown", "pid": None, "socket": "/c"},
        {"job": "log-cache", "process": "forwarder", "state": "stale", "pid": None, "socket": "/d"},
    ]
    seen = promise.parse_status(json.dumps(rows), "pod")
    assert seen == {
        MYSQL: Seen(ProcState.UNSETTLED),
        AGENT: Seen(ProcState.UNSETTLED),
        ("log-cache", "forwarder"): Seen(ProcState.GONE),
    }
