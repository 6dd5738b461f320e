"""Fenced transitions (issue 22) on the real control plane: each case brought about from outside, as a fault, a
person or a controller would, and read back from the processes' real state.

Faults: SIGSTOP to a real containerrun (and its socket's queue filled, so that a START cannot be delivered), a
`perl` first in the exec's PATH that is slow in one phase of the in-pod script (the look's probe, or the STOP), a
pod deleted and created again under its name, kubectl on the ledger annotation, the operator process restarted.
Results: the `.running` sentinels and containerrun's own log on this host, the pods' annotations, labels and
events, and the suspension's status and events.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness import fakepods
from harness.base import pids_with_env, wait_until
from harness.cluster import Cluster
from harness.operator import OPERATOR_NAMESPACE, SERVICE_ACCOUNT
from harness.reliability import FINALIZER, assert_converged, wait_gone

MYSQL = "pxc-mysql/mysql"
AGENT = "pxc-mysql/galera-agent"
BOTH = (MYSQL, AGENT)
HOLDS = "processcontrol.dev/holds"
SUSPENDED_LABEL = "processcontrol.dev/suspended"


# --- reading the cluster -----------------------------------------------------------------------------------------


def label(cluster: Cluster, pod: str) -> str | None:
    """The pod's suspended label."""
    labels: dict[str, str] = cluster.get("pod", pod)["metadata"].get("labels", {})
    return labels.get(SUSPENDED_LABEL)


def pod_events(cluster: Cluster, pod: str, reason: str) -> list[dict[str, Any]]:
    """Events with this reason about the pod of that name (any incarnation)."""
    selector = f"involvedObject.kind=Pod,involvedObject.name={pod},reason={reason}"
    items: list[dict[str, Any]] = json.loads(
        cluster.kubectl("get", "events", "-o", "json", f"--field-selector={selector}").stdout
    )["items"]
    return items


def reasons(cluster: Cluster, name: str) -> set[str]:
    """The reasons of the suspension's events."""
    return {e["reason"] for e in cluster.events(name)}


def pod_entry(cluster: Cluster, name: str, pod: str) -> dict[str, Any]:
    """The pod's entry in the suspension's status ({} when it is not listed)."""
    pods: list[dict[str, Any]] = cluster.get("psus", name).get("status", {}).get("pods", [])
    return next((p for p in pods if p["name"] == pod), {})


def starts_received(cluster: Cluster, pod: str, job_process: str) -> int:
    """How many START datagrams the process's containerrun has read (its own log says so)."""
    log = fakepods.container_log(cluster.namespace, pod, fakepods.JobProcess.parse(job_process))
    return log.read_text(errors="replace").count("received START") if log.exists() else 0


def container_log_tail(cluster: Cluster, pod: str, job_process: str, lines: int = 15) -> str:
    """The end of the container's containerrun log."""
    log = fakepods.container_log(cluster.namespace, pod, fakepods.JobProcess.parse(job_process))
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def scripts_in(cluster: Cluster, pod: str) -> list[int]:
    """The in-pod script's processes in the pod (kwok runs its execs on this host): `sh -c SCRIPT processcontrol
    ...` with the pod's base directory in its environment."""
    base = fakepods.base_dir(cluster.namespace, pod)
    found = []
    for pid in pids_with_env(f"CONTAINERRUN_BASE_DIR={base}"):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if len(argv) > 3 and argv[1] == b"-c" and argv[3] == b"processcontrol":
            found.append(pid)
    return found


def containerrun_pid(cluster: Cluster, pod: str, job_process: str) -> int:
    """The pid of the container's containerrun (not of the process it runs)."""
    record = fakepods.container_process(cluster.namespace, pod, fakepods.JobProcess.parse(job_process))
    assert record is not None, f"{pod} {job_process}: containerrun is not running"
    return record.pid


# Only the operator's ServiceAccount may write the ledger (the admission policy in deploy/admission/): a person who
# must edit it by hand does it the documented break-glass way, as the operator (docs/operations.md, Security model).
AS_OPERATOR = f"--as=system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}"


def annotate_ledger(cluster: Cluster, pod: str, value: dict[str, Any]) -> None:
    """What a person (or another tool) does: kubectl annotate --overwrite with a ledger of their own."""
    cluster.kubectl("annotate", AS_OPERATOR, "pod", pod, "--overwrite", f"{HOLDS}={json.dumps(value)}")


def uid_of(cluster: Cluster, kind: str, name: str) -> str:
    uid: str = cluster.get(kind, name)["metadata"]["uid"]
    return uid


def assert_nothing_left(cluster: Cluster, pods: list[str]) -> None:
    """No ledger and no suspended label on any of the pods."""
    for pod in pods:
        assert cluster.ledger(pod) == {}, f"{pod}: a ledger is left: {cluster.ledger(pod)}"
        assert label(cluster, pod) is None, f"{pod}: the suspended label is left"


# --- faults --------------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def frozen(cluster: Cluster, pod: str, job_process: str, fill: bool = False) -> Iterator[None]:
    """SIGSTOP the process's containerrun (it reads no datagram); with fill, fill its socket's receive queue too,
    so that a send to it blocks and the in-pod sender's 1 s send timeout fails it. SIGCONT at the end."""
    pid = containerrun_pid(cluster, pod, job_process)
    path = fakepods.socket_path(cluster.namespace, pod, fakepods.JobProcess.parse(job_process))
    senders: list[socket.socket] = []
    os.kill(pid, signal.SIGSTOP)
    try:
        if fill:
            # The queue is bounded by net.unix.max_dgram_qlen (and each sender by its send buffer): fill it from
            # as many sockets as it takes, until a fresh one cannot send either.
            while True:
                sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                sender.setblocking(False)
                sender.connect(str(path))
                senders.append(sender)
                sent = 0
                with contextlib.suppress(BlockingIOError):
                    while True:
                        sender.send(b"NOOP\n")
                        sent += 1
                if sent == 0:
                    break
                assert len(senders) < 100, "the socket's queue does not fill"
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
        for sender in senders:
            sender.close()


def slow_perl(directory: Path, *, look: str = ":", stop: str = ":", start: str = ":") -> str:
    """A PATH whose `perl` (the in-pod script's prober and sender) first runs a shell snippet, by phase: `look` for
    the look's probe (empty payload), `stop` or `start` for a send. kwok runs the script's `sh` from its own PATH,
    so only the tools the script calls can be wrapped. Every call leaves its pid in `started` and, when done, in
    `ended` (see execs_done)."""
    directory.mkdir(parents=True, exist_ok=True)
    wrapper = directory / "perl"
    # The script runs `perl -e PROGRAM -- PAYLOAD SOCKET...`.
    wrapper.write_text(
        f'#!/bin/sh\necho $$ >>{directory}/started\ncase "$4" in\n"") {look} ;;\nSTOP) {stop} ;;\n'
        f'START) {start} ;;\nesac\n/usr/bin/perl "$@"\nstatus=$?\necho $$ >>{directory}/ended\nexit $status\n'
    )
    wrapper.chmod(0o755)
    return f"{directory}:{os.environ['PATH']}"


def calls(directory: Path, name: str) -> int:
    path = directory / name
    return len(path.read_text().split()) if path.exists() else 0


def execs_done(directory: Path) -> bool:
    """Every call of the slow_perl(directory) wrapper has finished: whatever was on its way has landed."""
    return calls(directory, "started") == calls(directory, "ended")


@contextlib.contextmanager
def operator_settings(cluster: Cluster, **env: str) -> Iterator[None]:
    """The operator restarted with these settings for the block, then restarted with its own again."""
    operator = cluster.operator
    saved = dict(operator.env)
    operator.stop()
    operator.env = {**saved, **env}
    try:
        operator.start()
        yield
    finally:
        operator.stop()
        operator.env = saved
        operator.start()


# --- the cases -----------------------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_1_an_undelivered_start_is_shown_keeps_the_deletion_waiting_and_is_sent_again(cluster: Cluster) -> None:
    """Case 1: the START into a frozen containerrun whose queue is full cannot be sent. It is not forgotten: the
    object shows StartUndelivered for that pod (and the pod an event), the ledger keeps the process and the label
    stays; deleted meanwhile, the object stays Terminating with its finalizer. Once the containerrun is thawed the
    START goes, the process runs, the deletion completes and nothing is left on the pods."""
    pods = cluster.group("database", pods=2)
    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    cluster.wait("restore")
    uid = uid_of(cluster, "psus", "restore")
    with frozen(cluster, pods[0], MYSQL, fill=True):
        cluster.kubectl("patch", "psus", "restore", "--type=merge", "-p", '{"spec":{"suspend":false}}')
        wait_until(lambda: pod_events(cluster, pods[0], "StartUndelivered"), 90, "a StartUndelivered event on the pod")
        wait_until(
            lambda: "START not delivered" in pod_entry(cluster, "restore", pods[0]).get("message", ""),
            60,
            "the object's status to say the pod's START was not delivered",
        )
        # Everything else was given back; the frozen one stays held.
        wait_until(lambda: all(cluster.all_states(pods[1:], BOTH).values()), 60, "the other pod to run again")
        wait_until(lambda: cluster.running(pods[0], AGENT), 60, "the agent next to the frozen one to run again")
        assert cluster.condition("restore", "Ready").get("status") == "False", "Ready while a START is undelivered"

        cluster.kubectl("delete", "psus", "restore", "--wait=false")
        wait_until(lambda: "ResumeFailed" in reasons(cluster, "restore"), 60, "ResumeFailed on the suspension")
        # Sent again and again, never given up: still waiting several retries later (failure backoff 2 s).
        time.sleep(6)
        obj = cluster.get("psus", "restore")
        assert obj["metadata"].get("deletionTimestamp"), "the object is Terminating"
        assert obj["metadata"]["finalizers"] == [FINALIZER], "the finalizer stays while a START is undelivered"
        held = cluster.ledger(pods[0])
        assert list(held["processes"]) == [MYSQL], f"only the undelivered process stays in the ledger: {held}"
        assert held["processes"][MYSQL]["holders"] == [uid], held
        assert held["holds"][uid]["releasing"] is True, held
        assert label(cluster, pods[0]) == "true"
        assert not cluster.running(pods[0], MYSQL)
        assert cluster.ledger(pods[1]) == {} and label(cluster, pods[1]) is None
    wait_gone(cluster, "restore", 90)
    wait_until(lambda: cluster.running(pods[0], MYSQL), 30, "the thawed process to run")
    assert all(cluster.all_states(pods, BOTH).values())
    assert_nothing_left(cluster, pods)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "window",
    [
        pytest.param(5, id="its-window-ends-it"),
        pytest.param(60, id="it-reaches-its-go-ahead-after-the-release"),
    ],
)
def test_3_an_exec_that_timed_out_before_its_go_ahead_never_acts_late(
    cluster: Cluster, tmp_path: Path, window: int
) -> None:
    """Case 3, as the issue has it: the first STOP exec is slow in the pod (its look takes 30 s, the operator's
    exec timeout is 3 s) and is abandoned; it is still in the pod when a retry has taken the hold and the
    suspension has been deleted. It never acts: with the default window its own watchdog ends it; with a window
    longer than its look it gets to its go-ahead after the release and finds none (the operator left its stream).
    Either way it ends by itself, leaves no process of its own, and no process stays stopped."""
    pods = cluster.group("database", pods=1)
    pod = pods[0]
    slow = tmp_path / "slow"
    # A process stopped by hand before: every look probes its socket (its sentinel is gone), so the look calls perl.
    agent_socket = fakepods.socket_path(cluster.namespace, pod, fakepods.JobProcess.parse(AGENT))
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as person:
        person.sendto(b"STOP\n", str(agent_socket))
    wait_until(lambda: not cluster.running(pod, AGENT), 20, "the agent stopped by hand")
    # Only the first look is slow.
    cluster.restrict_exec_path(pod, slow_perl(slow, look=f"[ -e {slow}/once ] || {{ : >{slow}/once; sleep 30; }}"))
    settings = {"PROCESSCONTROL_EXEC_TIMEOUT_S": "3", "PROCESSCONTROL_GO_AHEAD_WINDOW_S": str(window)}
    with operator_settings(cluster, **settings):
        cluster.apply(cluster.suspension("restore", instanceGroup="database"))
        wait_until(lambda: "ExecTimeout" in reasons(cluster, "restore"), 60, "the first exec to time out")
        cluster.wait("restore", timeout=90)
        assert not cluster.running(pod, MYSQL), "held by a retry"
        cluster.kubectl("delete", "psus", "restore", "--wait=false")
        wait_gone(cluster, "restore", 60)
        wait_until(lambda: cluster.running(pod, MYSQL), 30, "mysql to run again")
        if window < 30:
            wait_until(lambda: not scripts_in(cluster, pod), window + 15, "its window to end the abandoned exec")
        else:
            assert scripts_in(cluster, pod), "the abandoned exec is still in the pod after the release"
        assert not execs_done(slow), "its look is still under way after the release"
        wait_until(lambda: execs_done(slow), 60, "the abandoned exec to finish its look")
        # With the 60 s window what ends it is the closed stream (EOF) as soon as its look is done.
        wait_until(lambda: not scripts_in(cluster, pod), 15, "the abandoned exec to end by itself")
    assert cluster.running(pod, MYSQL), (
        f"the abandoned exec stopped mysql after its release:\n{container_log_tail(cluster, pod, MYSQL)}"
    )
    assert not cluster.running(pod, AGENT), "stopped by hand before the suspension: left as it was"
    assert_nothing_left(cluster, pods)


@pytest.mark.timeout(300)
def test_3_a_stop_whose_send_is_slow_past_the_exec_timeout_never_outlives_the_release(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Case 3 after the go-ahead: the STOP exec got its go-ahead (the hold was written), then its send is slow in
    the pod (a throttled container) past the operator's exec timeout. The suspension is deleted meanwhile. Once
    every exec in the pod has ended, no process may be stopped that no suspension holds."""
    pods = cluster.group("database", pods=1)
    pod = pods[0]
    slow = tmp_path / "slow"
    # Every STOP's send waits 12 s; the operator gives up on an exec after 4 s.
    cluster.restrict_exec_path(pod, slow_perl(slow, stop="sleep 12"))
    with operator_settings(cluster, PROCESSCONTROL_EXEC_TIMEOUT_S="4"):
        cluster.apply(cluster.suspension("restore", instanceGroup="database"))
        wait_until(lambda: calls(slow, "started"), 60, "a STOP on its way")
        wait_until(lambda: "ExecTimeout" in reasons(cluster, "restore"), 60, "the STOP exec to time out")
        assert uid_of(cluster, "psus", "restore") in cluster.ledger(pod).get("holds", {}), "written before the STOP"
        cluster.kubectl("delete", "psus", "restore", "--wait=false")
        wait_gone(cluster, "restore", 120)
        wait_until(lambda: execs_done(slow), 60, "every STOP still in the pod to land")
        # Whatever was on its way has landed; the operator has nothing left to give back (no ledger, no object).
        time.sleep(2)
        states = cluster.all_states(pods, BOTH)
    assert all(states.values()), (
        f"stopped with no suspension and no ledger after a late STOP: {states}; ledger {cluster.ledger(pod)}; "
        f"containerrun's log:\n{container_log_tail(cluster, pod, MYSQL, 6)}"
    )
    assert_nothing_left(cluster, pods)


@pytest.mark.timeout(300)
def test_4_a_stop_that_lands_in_a_pod_recreated_under_its_name_is_given_back(cluster: Cluster, tmp_path: Path) -> None:
    """Case 4: the STOP is on its way (hold written, go-ahead given) when the pod is deleted and created again
    under its name (a StatefulSet); the STOP lands in the new pod. The new pod records it as held, its processes as
    running before, so that when the suspension is deleted every process runs and nothing is left on the pod."""
    pods = cluster.group("database", pods=2)
    pod = pods[0]
    slow = tmp_path / "slow"
    jps = fakepods.parse_jobs(",".join(BOTH))
    # The STOP waits in the pod until the test lets it go (at most 60 s).
    gate = slow / "go"
    cluster.restrict_exec_path(
        pod, slow_perl(slow, stop=f"for i in $(seq 600); do [ -e {gate} ] && break; sleep 0.1; done")
    )
    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    wait_until(lambda: calls(slow, "started"), 60, "the STOP into the first pod on its way")
    old_uid = uid_of(cluster, "pod", pod)
    assert cluster.ledger(pod)["holds"], "the hold is written before the STOP"

    fakepods.delete_pod(cluster.namespace, pod)
    fakepods.create_pod("database", cluster.namespace, 0, jps)
    fakepods.wait_for_sockets(cluster.namespace, pod, jps)
    fakepods.wait_ready(cluster.namespace, [pod])
    new_uid = uid_of(cluster, "pod", pod)
    assert new_uid != old_uid
    gate.parent.mkdir(parents=True, exist_ok=True)
    gate.touch()  # the old pod's STOP lands in the new pod
    wait_until(lambda: execs_done(slow), 60, "the STOP to land")

    cluster.wait("restore", timeout=120)
    held = cluster.ledger(pod)
    for jp in BOTH:
        assert held["processes"][jp]["wasRunning"] is True, f"the new pod counts its processes as running: {held}"
    assert not any(cluster.all_states(pods, BOTH).values())
    restored = [e for e in pod_events(cluster, pod, "LedgerRestored") if e["involvedObject"]["uid"] == new_uid]
    assert restored, "an event on the new pod says the STOP may have landed there"

    cluster.kubectl("delete", "psus", "restore", "--timeout=90s")
    wait_until(lambda: all(cluster.all_states(pods, BOTH).values()), 30, "every process to run")
    assert_nothing_left(cluster, pods)


@pytest.mark.timeout(300)
def test_5_a_ledger_removed_by_hand_while_held_is_written_back(cluster: Cluster) -> None:
    """Case 5: `kubectl annotate pod X processcontrol.dev/holds-` while the pod is held. The operator writes it
    back (LedgerRestored on the pod), with the processes as running before; deleting the suspension runs them."""
    pods = cluster.group("database", pods=2)
    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    cluster.wait("restore")
    before = cluster.ledger(pods[0])

    cluster.kubectl("annotate", AS_OPERATOR, "pod", pods[0], f"{HOLDS}-")
    wait_until(lambda: pod_events(cluster, pods[0], "LedgerRestored"), 60, "a LedgerRestored event on the pod")
    restored = wait_until(lambda: cluster.ledger(pods[0]), 30, "the ledger written back")
    assert restored["holds"].keys() == before["holds"].keys(), restored
    for jp in BOTH:
        assert restored["processes"][jp] == before["processes"][jp], f"{jp}: {restored} != {before}"
    assert not any(cluster.all_states(pods, BOTH).values()), "still held"

    cluster.kubectl("delete", "psus", "restore", "--timeout=90s")
    wait_until(lambda: all(cluster.all_states(pods, BOTH).values()), 30, "every process to run")
    assert_nothing_left(cluster, pods)


@pytest.mark.timeout(300)
def test_5_a_ledger_lost_while_the_operator_was_down_counts_what_is_stopped_as_held(cluster: Cluster) -> None:
    """Case 5 across an operator restart: the ledger is removed while the operator is down (the suspended label
    stays). The restarted operator has no memory of it; from the label it records the stopped processes as running
    before the hold (not as stopped by hand), so deleting the suspension runs them."""
    pods = cluster.group("database", pods=2)
    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    cluster.wait("restore")
    cluster.operator.stop()
    try:
        cluster.kubectl("annotate", AS_OPERATOR, "pod", pods[0], f"{HOLDS}-")
        assert label(cluster, pods[0]) == "true"
    finally:
        cluster.operator.start()
    retaken = wait_until(lambda: cluster.ledger(pods[0]).get("processes"), 60, "the hold taken again")
    for jp in BOTH:
        assert retaken[jp]["wasRunning"] is True, f"its own STOP taken for a stop by hand: {retaken}"
    cluster.wait("restore")
    assert not any(cluster.all_states(pods, BOTH).values()), "still held"

    cluster.kubectl("delete", "psus", "restore", "--timeout=90s")
    wait_until(lambda: all(cluster.all_states(pods, BOTH).values()), 30, "every process to run")
    assert_nothing_left(cluster, pods)


@pytest.mark.timeout(300)
def test_6_a_hand_over_never_runs_the_process(cluster: Cluster) -> None:
    """Case 6: a rename in Git: the new suspension is applied and the old one deleted at once (as Flux or Argo CD
    apply, then prune). Sampled every few ms throughout, no process ever runs, no containerrun reads a START, and
    the new suspension holds every process."""
    pods = cluster.group("database", pods=2)
    cluster.apply(cluster.suspension("restore-old", instanceGroup="database"))
    cluster.wait("restore-old")
    keys = [(pod, jp) for pod in pods for jp in BOTH]
    starts = {key: starts_received(cluster, *key) for key in keys}
    runners = {key: containerrun_pid(cluster, *key) for key in keys}
    ran: list[tuple[float, str, str]] = []
    samples = 0
    done = threading.Event()
    began = time.monotonic()

    def sample() -> None:
        nonlocal samples
        while not done.is_set():
            for pod, jp in keys:
                if cluster.running(pod, jp):
                    ran.append((round(time.monotonic() - began, 3), pod, jp))
            samples += 1
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        cluster.apply(cluster.suspension("restore-new", instanceGroup="database"))
        cluster.kubectl("delete", "psus", "restore-old", "--wait=false")
        wait_gone(cluster, "restore-old", 90)
        cluster.wait("restore-new", timeout=90)
        time.sleep(2)  # and a moment after: a START on its way would have landed
    finally:
        done.set()
        sampler.join()
    assert samples > 100, f"only {samples} samples"
    assert not ran, f"a process ran during the hand-over (seconds after it began, pod, process): {ran[:10]}"
    assert {key: starts_received(cluster, *key) for key in keys} == starts, "a containerrun read a START"
    assert {key: containerrun_pid(cluster, *key) for key in keys} == runners, "a containerrun was restarted"
    new_uid = uid_of(cluster, "psus", "restore-new")
    for pod in pods:
        held = cluster.ledger(pod)
        assert set(held["holds"]) == {new_uid}, held
        assert all(held["processes"][jp]["holders"] == [new_uid] for jp in BOTH), held
        assert all(held["processes"][jp]["wasRunning"] is True for jp in BOTH), "what ran before is still known"

    cluster.kubectl("delete", "psus", "restore-new", "--timeout=90s")
    wait_until(lambda: all(cluster.all_states(pods, BOTH).values()), 30, "every process to run")
    assert_nothing_left(cluster, pods)


@pytest.mark.timeout(300)
def test_7_a_duration_runs_out_even_when_no_pod_ever_verifies(cluster: Cluster) -> None:
    """Case 7: a one-pod group whose STOP never takes effect (its containerrun frozen): the pod never verifies,
    yet suspendedAt is set from the first hold written and the duration runs out: the suspension resumes by itself
    (Ready, Expired), and once the containerrun is thawed its process runs and nothing is left."""
    pods = cluster.group("database", pods=1, jobs=MYSQL)
    pod = pods[0]
    with frozen(cluster, pod, MYSQL):
        cluster.apply(cluster.suspension("restore", instanceGroup="database", duration="20s"))
        status: dict[str, Any] = wait_until(
            lambda: (s := cluster.get("psus", "restore").get("status", {})).get("suspendedAt") and s,
            60,
            "suspendedAt",
        )
        held = cluster.ledger(pod)
        assert held, "the hold is written"
        since = next(iter(held["holds"].values()))["since"]
        assert status["suspendedAt"] == since, f"suspendedAt {status['suspendedAt']} is not the hold's {since}"
        assert status.get("expiresAt"), status
        assert pod_entry(cluster, "restore", pod).get("state") != "Suspended", "the frozen pod never verifies"
        assert cluster.running(pod, MYSQL)
        wait_until(lambda: cluster.condition("restore", "Ready").get("reason") == "Expired", 90, "Expired")
        ready = cluster.condition("restore", "Ready")
        assert ready["status"] == "True", ready
        wait_until(lambda: cluster.ledger(pod) == {}, 30, "the hold given back")
    wait_until(lambda: starts_received(cluster, pod, MYSQL) or not cluster.running(pod, MYSQL), 10, "the queue read")
    time.sleep(3)  # what the thawed containerrun found in its socket's queue has been read and done by now
    assert cluster.running(pod, MYSQL), (
        "the STOP queued in the frozen containerrun's socket stopped the process after the suspension had expired "
        f"and given it back; containerrun's log:\n{container_log_tail(cluster, pod, MYSQL)}"
    )
    assert_nothing_left(cluster, pods)


@pytest.mark.timeout(300)
def test_a_process_slow_to_stop_released_while_it_stops_runs_again(cluster: Cluster) -> None:
    """Next to cases 3 and 7: the STOP is delivered and containerrun is stopping a process that takes 10 s to shut
    down (its sentinel stays until then) when the suspension is deleted. Once it has stopped, it must be started
    again: no suspension holds it any more."""
    slow_exit = ("sh", "-c", 'trap "sleep 10; exit 0" TERM; while :; do sleep 1; done')
    pods = cluster.group("database", pods=1, jobs=MYSQL, command=slow_exit)
    pod = pods[0]
    log = fakepods.container_log(cluster.namespace, pod, fakepods.JobProcess.parse(MYSQL))
    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    wait_until(lambda: "received STOP" in log.read_text(errors="replace"), 60, "the STOP delivered")
    assert cluster.running(pod, MYSQL), "still shutting down"
    stopping = cluster.main_pid(pod, MYSQL)
    cluster.kubectl("delete", "psus", "restore", "--wait=false")
    wait_gone(cluster, "restore", 60)
    try:
        # The START arrives while it shuts down: containerrun starts it again once the old one is gone (a poll
        # here may never see it stopped in between), so a new pid that runs is the proof.
        wait_until(
            lambda: cluster.running(pod, MYSQL) and cluster.main_pid(pod, MYSQL) not in (None, stopping),
            40,
            "the process to run again",
        )
    except AssertionError as error:
        raise AssertionError(
            f"{error}: stopped with no suspension and no ledger; containerrun's log:\n"
            f"{container_log_tail(cluster, pod, MYSQL)}"
        ) from None
    assert_nothing_left(cluster, pods)


@pytest.mark.timeout(300)
def test_8_unknown_ledger_fields_are_kept_and_the_deletion_completes(cluster: Cluster) -> None:
    """Case 8: fields a newer operator added within v1 (top level and in a hold), written with kubectl annotate
    --overwrite on a held pod: the operator's next writes keep them (a second suspension joins, then the first is
    deleted), and deleting the suspensions completes and runs every process."""
    pods = cluster.group("database", pods=2)
    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    cluster.wait("restore")
    uid = uid_of(cluster, "psus", "restore")
    edited = cluster.ledger(pods[0])
    edited["writer"] = {"build": 3}
    edited["holds"][uid]["phases"] = ["agents", "db"]
    edited["processes"][MYSQL]["note"] = "kept"
    annotate_ledger(cluster, pods[0], edited)

    # The operator writes the ledger again: a second suspension of the same processes joins their holders.
    cluster.apply(cluster.suspension("backup", instanceGroup="database"))
    cluster.wait("backup")
    backup = uid_of(cluster, "psus", "backup")
    rewritten = cluster.ledger(pods[0])
    assert backup in rewritten["holds"], rewritten
    assert rewritten.get("writer") == {"build": 3}, f"an unknown top-level field was dropped: {rewritten}"
    assert rewritten["holds"][uid].get("phases") == ["agents", "db"], f"an unknown hold field was dropped: {rewritten}"
    assert rewritten["processes"][MYSQL].get("note") == "kept", f"an unknown process field was dropped: {rewritten}"

    cluster.kubectl("delete", "psus", "restore", "--timeout=90s")
    rewritten = cluster.ledger(pods[0])
    assert set(rewritten["holds"]) == {backup} and rewritten.get("writer") == {"build": 3}, rewritten
    assert not any(cluster.all_states(pods, BOTH).values()), "still held by the second suspension"
    cluster.kubectl("delete", "psus", "backup", "--timeout=90s")
    wait_until(lambda: all(cluster.all_states(pods, BOTH).values()), 30, "every process to run")
    assert_nothing_left(cluster, pods)


@pytest.mark.timeout(300)
def test_8_a_newer_ledger_format_is_left_alone_and_said_why(cluster: Cluster) -> None:
    """Case 8: a pod whose ledger has v: 2 (a newer operator's): nothing is sent there, the pod shows LedgerTooNew
    in the status and in an event on the pod, its processes run and its ledger is untouched; the other pod is
    suspended and resumed as usual."""
    pods = cluster.group("database", pods=2)
    newer = {"v": 2, "seq": 7, "holds": {}, "processes": {}, "layout": "v2"}
    annotate_ledger(cluster, pods[0], newer)
    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    wait_until(lambda: pod_events(cluster, pods[0], "LedgerTooNew"), 60, "a LedgerTooNew event on the pod")
    wait_until(lambda: pod_entry(cluster, "restore", pods[0]).get("state") == "Failed", 60, "the pod Failed")
    wait_until(lambda: not any(cluster.all_states(pods[1:], BOTH).values()), 60, "the other pod stopped")
    stalled = cluster.condition("restore", "Stalled")
    assert stalled.get("reason") == "LedgerTooNew", stalled
    assert "LedgerTooNew" in reasons(cluster, "restore")
    assert all(cluster.all_states(pods[:1], BOTH).values()), "a process was stopped in a pod with a newer ledger"
    assert cluster.ledger(pods[0]) == newer, "its ledger was changed"
    assert label(cluster, pods[0]) is None

    cluster.kubectl("delete", "psus", "restore", "--timeout=90s")
    wait_until(lambda: all(cluster.all_states(pods, BOTH).values()), 30, "every process to run")
    assert cluster.ledger(pods[0]) == newer, "its ledger was changed"
    assert_nothing_left(cluster, pods[1:])
    assert_converged(cluster, pods, BOTH, None, stopped=False)
