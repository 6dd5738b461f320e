"""Two replicas, one actor (issue 24), on the local control plane: two operator processes elect a leader on the
Lease of deploy/'s RBAC; the standby acts on nothing, takes over when the leader is killed, and a leader paused
past its lease changes no process's state when it wakes: it exits.

The session's operator leads at the start of each test here; each test leaves it leading again."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from harness.base import kubectl, wait_until
from harness.cluster import Cluster
from harness.operator import E2E_OPERATOR_ENV, OPERATOR_NAMESPACE, OperatorProcess
from harness.reliability import assert_converged, log_offset, restart_component

MYSQL = "pxc-mysql/mysql"
AGENT = "pxc-mysql/galera-agent"
BOTH = (MYSQL, AGENT)
LEASE = "processcontrol"


def lease() -> dict[str, object]:
    spec: dict[str, object] = json.loads(kubectl("get", "lease", LEASE, "-n", OPERATOR_NAMESPACE, "-o", "json").stdout)[
        "spec"
    ]
    return spec


def second_operator(cluster: Cluster, name: str) -> OperatorProcess:
    return OperatorProcess(
        cluster.operator.kubeconfig,
        env=E2E_OPERATOR_ENV,
        log_path=cluster.operator.log_path.with_name(f"operator-{name}-{uuid.uuid4().hex[:5]}.log"),
    )


@pytest.fixture
def standby(cluster: Cluster) -> Iterator[OperatorProcess]:
    """A second replica, standing by; afterwards the session's operator leads again."""
    main = cluster.operator
    main.wait_leading()
    other = second_operator(cluster, "standby").start()
    yield other
    if main.pid is None:
        main.start()  # as the kubelet would: it comes back as a standby while `other` leads
    other.stop()  # SIGTERM: it gives the Lease back (if it has it) and main takes over at its next look
    main.wait_leading(timeout=60)


def operator_log(process: OperatorProcess, since: int = 0) -> str:
    """Its log from `since` (log_offset): the session's operator logs every test's shutdowns into one file."""
    return process.log_path.read_bytes()[since:].decode(errors="replace") if process.log_path.exists() else ""


@pytest.mark.timeout(600)
def test_leader_sigkilled_while_suspending_20_pods_the_standby_finishes(
    cluster: Cluster, standby: OperatorProcess
) -> None:
    main = cluster.operator
    pods = cluster.group("database", pods=20, jobs=MYSQL, ready_timeout=240)
    assert lease()["holderIdentity"] == main.identity and standby.leading() is False
    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    # Some stopped, not all: then the leader dies mid-suspension.
    wait_until(lambda: 0 < sum(not s for s in cluster.all_states(pods, [MYSQL]).values()) < 20, 60, "midway", 0.02)
    stopped_at_kill = sum(not s for s in cluster.all_states(pods, [MYSQL]).values())
    main.kill()
    killed = time.monotonic()
    standby.wait_leading(timeout=60)
    took_over_s = time.monotonic() - killed
    assert_converged(cluster, pods, [MYSQL], "restore", stopped=True)
    finished_s = time.monotonic() - killed
    print(json.dumps({"stopped_at_kill": stopped_at_kill, "took_over_s": took_over_s, "finished_s": finished_s}))
    assert lease()["holderIdentity"] == standby.identity
    assert (
        "LeaderElected"
        in kubectl(
            "get", "events", "-n", OPERATOR_NAMESPACE, "--field-selector", f"involvedObject.name={LEASE}", "-o", "json"
        ).stdout
    )
    assert "took the Lease over from" in operator_log(standby)
    cluster.kubectl("delete", "psus", "restore", "--timeout=90s")
    assert_converged(cluster, pods, [MYSQL], None, stopped=False)


@pytest.mark.timeout(600)
def test_leader_sigtermed_while_suspending_hands_over_as_soon_as_its_execs_report(
    cluster: Cluster, standby: OperatorProcess
) -> None:
    """A rollout or a deleted pod (SIGTERM) mid-suspension: the leader steps down, its execs in flight report, and it
    gives the Lease back then; it does not wait out the window and send grace (15 s) of the go-aheads it just wrote."""
    main = cluster.operator
    pods = cluster.group("database", pods=20, jobs=MYSQL, ready_timeout=240)
    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    wait_until(lambda: 0 < sum(not s for s in cluster.all_states(pods, [MYSQL]).values()) < 20, 60, "midway", 0.02)
    offset = log_offset(main.log_path)
    terminated = time.monotonic()
    main.stop()  # SIGTERM, and waits for the process to end
    stopped_s = time.monotonic() - terminated
    standby.wait_leading(timeout=60)
    took_over_s = time.monotonic() - terminated
    assert_converged(cluster, pods, [MYSQL], "restore", stopped=True)
    print(json.dumps({"stopped_s": stopped_s, "took_over_s": took_over_s}))
    assert "gave the Lease back" in operator_log(main, since=offset), operator_log(main, since=offset)[-3000:]
    assert took_over_s < 10, f"the standby led {took_over_s:.1f}s after the SIGTERM"
    # Started by hand: the new leader's worker (started by the takeover, not by a kopf handler) stops it again and
    # says so in an event; kopf.event() outside a handler's context raised LookupError and failed the pod.
    cluster.send(pods[0], MYSQL, "START")
    wait_until(lambda: "Resuspended" in cluster.kubectl("get", "events", "-o", "json").stdout, 60, "Resuspended event")
    assert_converged(cluster, pods, [MYSQL], "restore", stopped=True)
    cluster.kubectl("delete", "psus", "restore", "--timeout=90s")
    assert_converged(cluster, pods, [MYSQL], None, stopped=False)


@dataclass
class Sampler:
    """Every process's pid and state (its .running sentinel), sampled every few ms in a thread: a change in the
    window shows up even if it is undone a moment later."""

    cluster: Cluster
    pods: Sequence[str]
    jps: Sequence[str]
    changes: list[str] = field(default_factory=list)
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def snapshot(self) -> dict[tuple[str, str], tuple[bool, int | None]]:
        return {
            (pod, jp): (self.cluster.running(pod, jp), self.cluster.main_pid(pod, jp))
            for pod in self.pods
            for jp in self.jps
        }

    def run(self) -> None:
        last = self.snapshot()
        while not self._stop.is_set():
            now = self.snapshot()
            self.samples += 1
            for key, value in now.items():
                if value != last[key]:
                    self.changes.append(f"{key}: {last[key]} -> {value}")
            last = now
            time.sleep(0.005)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.timeout(600)
def test_leader_sigstopped_past_its_lease_changes_nothing_when_it_wakes_and_exits(
    cluster: Cluster, standby: OperatorProcess
) -> None:
    main = cluster.operator
    pods = cluster.group("database", pods=4)
    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    assert_converged(cluster, pods, BOTH, "restore", stopped=True)
    assert main.pid is not None
    offset = log_offset(main.log_path)
    main.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
    try:
        standby.wait_leading(timeout=60)
        # The new leader works: it resumes what the old one stopped.
        cluster.kubectl("patch", "psus", "restore", "--type=merge", "-p", '{"spec":{"suspend":false}}')
        assert_converged(cluster, pods, BOTH, "restore", stopped=False)
    finally:
        with Sampler(cluster, pods, BOTH) as sampler:
            main.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
            woke = time.monotonic()
            wait_until(lambda: main.process is not None and main.process.poll() is not None, 30, "the old leader exits")
            exited_s = time.monotonic() - woke
            # Anything it had in flight could act until its window and send grace were over: watch past them.
            time.sleep(16)
    assert sampler.samples > 100
    assert sampler.changes == [], "a process changed state because of the old leader"
    assert all(cluster.all_states(pods, BOTH).values())
    log = operator_log(main, since=offset)
    assert "leadership lost" in log, log[-2000:]
    print(json.dumps({"exited_s": exited_s, "samples": sampler.samples}))
    assert lease()["holderIdentity"] == standby.identity
    # The new leader goes on: suspend again.
    cluster.kubectl("patch", "psus", "restore", "--type=merge", "-p", '{"spec":{"suspend":true}}')
    assert_converged(cluster, pods, BOTH, "restore", stopped=True)
    cluster.kubectl("delete", "psus", "restore", "--timeout=90s")
    assert_converged(cluster, pods, BOTH, None, stopped=False)


@pytest.mark.timeout(600)
def test_an_apiserver_restart_leaves_one_leader(cluster: Cluster, standby: OperatorProcess) -> None:
    main = cluster.operator
    pods = cluster.group("database", pods=4)
    restart_component("kube-apiserver", down_s=3)
    replicas = (main, standby)

    def one_leader() -> bool:
        for replica in replicas:
            if replica.pid is None:
                replica.start()  # as the kubelet would after it exited on a missed renew deadline
        leading = [r for r in replicas if r.leading()]
        return len(leading) == 1 and lease().get("holderIdentity") == leading[0].identity

    wait_until(one_leader, 120, "exactly one leader, the Lease's holder")
    # And it stays one while the cluster works.
    cluster.apply(cluster.suspension("restore", instanceGroup="database"))
    assert_converged(cluster, pods, BOTH, "restore", stopped=True)
    assert sum(bool(r.leading()) for r in replicas) == 1
    cluster.kubectl("delete", "psus", "restore", "--timeout=90s")
    assert_converged(cluster, pods, BOTH, None, stopped=False)
