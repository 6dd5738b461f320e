"""The reliability scenarios' shared check and fault injection (tests/e2e/test_faults.py, test_hostile.py and
bench/soak_faults.py): what "nothing lost, nothing left in the wrong state" means, counted, on the real cluster.
"""

from __future__ import annotations

import contextlib
import copy
import json
import random
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from harness import controlplane, fakepods
from harness.base import ProcessRecord, kubectl, state_dir, stop_group, wait_until
from harness.cluster import Cluster

SUSPENDED_LABEL = "processcontrol.dev/suspended"
FINALIZER = "processcontrol.dev/resume"


@dataclass
class Verdict:
    """What is wrong after a scenario, one line per wrong state (empty: converged)."""

    wrong: list[str] = field(default_factory=list)

    def add(self, what: str) -> None:
        self.wrong.append(what)

    def __bool__(self) -> bool:
        return not self.wrong


def check_state(
    cluster: Cluster,
    pods: Sequence[str],
    job_processes: Sequence[str],
    name: str | None,
    stopped: bool,
) -> Verdict:
    """The common end check: processes, status, labels and finalizer agree with the request.

    name None: the suspension was deleted, so it must be gone (no finalizer left) and everything must run.
    stopped: whether the suspension `name` asks for its processes to be stopped."""
    verdict = Verdict()
    want_stopped = stopped and name is not None
    for (pod, jp), running in cluster.all_states(pods, job_processes).items():
        if running == want_stopped:
            verdict.add(f"{pod} {jp}: {'running' if running else 'stopped'}, expected the opposite")
    items = json.loads(cluster.kubectl("get", "pods", "-o", "json").stdout)["items"]
    found = {i["metadata"]["name"]: i["metadata"].get("labels", {}) for i in items}
    labels = {p: found.get(p, {}).get(SUSPENDED_LABEL) for p in pods}
    for pod, value in labels.items():
        if (value == "true") != want_stopped:
            verdict.add(f"{pod}: label {SUSPENDED_LABEL}={value}, expected {'true' if want_stopped else 'none'}")
    if name is None:
        return verdict
    if name is not None and cluster.kubectl("get", "psus", name, check=False).returncode != 0:
        verdict.add(f"{name} is gone")
        return verdict
    obj = cluster.get("psus", name)
    status = obj.get("status", {})
    ready: dict[str, Any] = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), {})
    if ready.get("status") != "True":
        verdict.add(f"{name}: Ready is {ready.get('status')} ({ready.get('reason')}: {ready.get('message')})")
    if status.get("observedGeneration") != obj["metadata"]["generation"]:
        verdict.add(f"{name}: observedGeneration {status.get('observedGeneration')} != {obj['metadata']['generation']}")
    pod_state, process_state = ("Suspended", "Stopped") if stopped else ("Resumed", "Running")
    seen = {p["name"]: p for p in status.get("pods", [])}
    for pod in pods:
        entry = seen.get(pod)
        if entry is None:
            verdict.add(f"{name}: no status for pod {pod}")
            continue
        if entry["state"] != pod_state:
            verdict.add(f"{name}: pod {pod} is {entry['state']} in status, expected {pod_state}")
        states = {pr["state"] for pr in entry.get("processes", [])}
        if states != {process_state}:
            verdict.add(f"{name}: pod {pod} processes {sorted(states)} in status, expected {process_state}")
    if status.get("summary") != f"{len(pods)}/{len(pods)}":
        verdict.add(f"{name}: summary {status.get('summary')}, expected {len(pods)}/{len(pods)}")
    if FINALIZER not in obj["metadata"].get("finalizers", []):
        verdict.add(f"{name}: no finalizer while it exists")
    return verdict


def assert_converged(
    cluster: Cluster, pods: Sequence[str], job_processes: Sequence[str], name: str | None, stopped: bool
) -> None:
    """check_state, waiting a little for labels (written after status); fail with every wrong state."""
    # Long enough for a failed attempt's verification timeout (20 s in the e2e settings) and the retry after it.
    deadline = time.monotonic() + 90
    verdict = check_state(cluster, pods, job_processes, name, stopped)
    while not verdict and time.monotonic() < deadline:
        time.sleep(0.5)
        verdict = check_state(cluster, pods, job_processes, name, stopped)
    assert verdict, "wrong states:\n" + "\n".join(verdict.wrong) + f"\noperator log:\n{cluster.operator.log_tail(40)}"


def wait_gone(cluster: Cluster, name: str, timeout: float = 90) -> None:
    """Until the suspension no longer exists (its finalizer ran)."""
    wait_until(
        lambda: cluster.kubectl("get", "psus", name, check=False).returncode != 0,
        timeout,
        f"{name} to be deleted (finalizer released)",
    )


# --- the operator's log ----------------------------------------------------------------------------------------------

# An RBAC denial, as the API server words it (a 403 for a terminating namespace is admission, not a missing grant).
FORBIDDEN = re.compile(r'forbidden: User "[^"]*" cannot')


def log_offset(path: Path) -> int:
    """Where the log ends now: later lines are this test's."""
    return path.stat().st_size if path.exists() else 0


# Wall-clock windows around kube-apiserver restarts: a freshly started API server denies requests for a moment
# (its RBAC authorizer's caches are still empty), whatever the grants; restart_component records them.
RESTART_WINDOWS: list[tuple[datetime, datetime]] = []


def _in_restart_window(line: str) -> bool:
    try:
        stamp = datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f")
    except ValueError:
        return False
    return any(start <= stamp <= end for start, end in RESTART_WINDOWS + EXCUSED_WINDOWS)


# Where this session's part of the operator's log begins (a kept control plane's log has earlier sessions too).
SESSION_LOG_OFFSET = log_offset(state_dir() / "logs" / "operator.log")
# Moments when a test denies the operator on purpose (grant revoked): not a missing grant of deploy/.
EXCUSED_WINDOWS: list[tuple[datetime, datetime]] = []


def forbidden_lines(path: Path, since: int) -> list[str]:
    """Lines of the operator's log written since `since` that report a missing RBAC grant (outside the moments
    right after a kube-apiserver restart)."""
    if not path.exists():
        return []
    if since > path.stat().st_size:
        since = 0  # the log was rotated (a fresh control plane) after the offset was taken
    with path.open("rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    return [line for line in text.splitlines() if FORBIDDEN.search(line) and not _in_restart_window(line)]


# --- control plane components --------------------------------------------------------------------------------------


def restart_component(component: str, down_s: float = 0.0) -> float:
    """Stop one control plane component and start it again with the same ports, flags and data; returns the
    seconds it was unavailable."""
    cp = controlplane.ControlPlane(state_dir())
    record = ProcessRecord.read(cp.pid_file(component))
    assert record is not None and record.alive(), f"{component} is not running"
    start = time.monotonic()
    window_start = datetime.now()
    stop_group(record)
    time.sleep(down_s)
    getattr(cp, "_start_" + component.replace("-", "_"))()
    wait_until(cp.apiserver_ready, 120, "kube-apiserver /readyz after the restart")
    if component == "kube-apiserver":
        RESTART_WINDOWS.append((window_start, datetime.now() + timedelta(seconds=30)))
    return time.monotonic() - start


# --- the exec grant ------------------------------------------------------------------------------------------------


def _replaceable(role: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(role)
    for key in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
        body["metadata"].pop(key, None)
    return body


@contextlib.contextmanager
def revoked_exec(role: str = "processcontrol") -> Iterator[None]:
    """The operator's ClusterRole without its `pods/exec` rule for the block (a grant revoked, or an older release's
    role), restored after; the operator's denials in that window are excused (EXCUSED_WINDOWS)."""
    original = json.loads(kubectl("get", "clusterrole", role, "-o", "json").stdout)
    revoked = _replaceable(original)
    revoked["rules"] = [r for r in revoked["rules"] if "pods/exec" not in r["resources"]]
    kubectl("replace", "-f", "-", input_text=json.dumps(revoked))
    revoked_at = datetime.now()
    try:
        yield
    finally:
        kubectl("replace", "-f", "-", input_text=json.dumps(_replaceable(original)))
        EXCUSED_WINDOWS.append((revoked_at, datetime.now() + timedelta(seconds=5)))


# --- the operator killed at random moments --------------------------------------------------------------------------


@dataclass
class KillTrial:
    """One seeded trial: when the operator was killed in each phase, and what was wrong after (must be nothing)."""

    seed: int
    kills: dict[str, float] = field(default_factory=dict)
    wrong: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    def as_json(self) -> str:
        return json.dumps(
            {"seed": self.seed, "kills": self.kills, "wrong": self.wrong, "seconds": round(self.seconds, 1)}
        )


def _kill_after(cluster: Cluster, rng: random.Random, phase: str, upper_s: float, trial: KillTrial) -> None:
    delay = round(rng.uniform(0.0, upper_s), 2)
    trial.kills[phase] = delay
    time.sleep(delay)
    cluster.operator.kill()
    cluster.operator.start()


def _settled(cluster: Cluster, pods: Sequence[str], jps: Sequence[str], name: str | None, stopped: bool) -> Verdict:
    deadline = time.monotonic() + 120
    verdict = check_state(cluster, pods, jps, name, stopped)
    while not verdict and time.monotonic() < deadline:
        time.sleep(1)
        verdict = check_state(cluster, pods, jps, name, stopped)
    return verdict


def kill_trial(
    cluster: Cluster,
    pods: Sequence[str],
    jps: Sequence[str],
    seed: int,
    upper_s: float = 6.0,
    kill_deleting: bool = True,
) -> KillTrial:
    """Suspend, resume and delete a suspension of `pods`, SIGKILLing the operator at a seeded random moment in each
    phase (deletion: when kill_deleting, after suspending again) and starting it again; after each phase, count
    what is not in the requested state."""
    rng = random.Random(seed)
    trial = KillTrial(seed)
    start = time.monotonic()
    name = f"kill-{seed}"
    group = cluster.get("pod", pods[0])["metadata"]["labels"][fakepods.LABEL_INSTANCE_GROUP]
    cluster.apply(cluster.suspension(name, instanceGroup=group, reason=f"kill trial {seed}"))
    _kill_after(cluster, rng, "suspending", upper_s, trial)
    trial.wrong["suspending"] = _settled(cluster, pods, jps, name, stopped=True).wrong

    cluster.kubectl("patch", "psus", name, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    _kill_after(cluster, rng, "resuming", upper_s, trial)
    trial.wrong["resuming"] = _settled(cluster, pods, jps, name, stopped=False).wrong

    if kill_deleting:
        # Suspended again, then deleted: the finalizer's resume is interrupted too.
        cluster.kubectl("patch", "psus", name, "--type=merge", "-p", '{"spec":{"suspend":true}}')
        trial.wrong["resuspending"] = _settled(cluster, pods, jps, name, stopped=True).wrong
        cluster.kubectl("delete", "psus", name, "--wait=false")
        _kill_after(cluster, rng, "deleting", upper_s, trial)
    else:
        cluster.kubectl("delete", "psus", name, "--wait=false")
    try:
        wait_gone(cluster, name, 120)
    except AssertionError as error:
        trial.wrong.setdefault("deleting", []).append(str(error))
    trial.wrong["deleting"] = trial.wrong.get("deleting", []) + _settled(cluster, pods, jps, None, False).wrong
    trial.seconds = time.monotonic() - start
    return trial


@contextlib.contextmanager
def timed(label: str, sink: dict[str, float]) -> Iterator[None]:
    """Record how long a block took under `label`."""
    start = time.monotonic()
    yield
    sink[label] = round(time.monotonic() - start, 1)
