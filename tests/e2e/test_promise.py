"""The promise, checked by a machine (issue 23): random operations and faults against the real control plane.

`test_random_steps_and_faults_keep_the_promise` runs one seeded episode (harness.chaos): suspensions created,
patched and deleted, pods relabelled, deleted and re-created, containers restarted, processes stopped and started by
hand, with the operator killed, kube-apiserver restarted, containerruns frozen, execs slowed past their timeout and
the exec grant revoked while the operator acts; after every step the checker (harness.promise) reads the truth
from outside and waits up to the repair time. A failure prints the seed and the step list; `make soak
SEED=... STEPS=...` runs long ones and shrinks what it finds, `bench/soak_promise.py --replay FILE` replays one.

`test_sequences_found_before_keep_the_promise` replays the shrunk sequences that broke the promise before (FOUND).
The other tests show that the checker sees each kind of broken promise on the real plane, so that its silence in
the random run means something.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from harness import fakepods
from harness.chaos import Step, run_in_fresh_namespace
from harness.cluster import Cluster
from harness.operator import OPERATOR_NAMESPACE, SERVICE_ACCOUNT, OperatorProcess
from harness.promise import Base, Checker, Hints, HostProcesses, Limits

# Fixed, so that CI's run is the same run everywhere; about 3-4 minutes on 2 cores.
SEED = int(os.environ.get("PROCESSCONTROL_PROMISE_SEED", "23"))
STEPS = int(os.environ.get("PROCESSCONTROL_PROMISE_STEPS", "16"))
MYSQL = "pxc-mysql/mysql"
AGENT = "pxc-mysql/galera-agent"
DEPLOYMENT = fakepods.LABEL_DEPLOYMENT
AS_OPERATOR = f"--as=system:serviceaccount:{OPERATOR_NAMESPACE}:{SERVICE_ACCOUNT}"
NOT_DB = {"key": fakepods.LABEL_INSTANCE_GROUP, "operator": "NotIn", "values": ["db"]}


@pytest.mark.timeout(1800)
def test_random_steps_and_faults_keep_the_promise(operator: OperatorProcess) -> None:
    outcome = run_in_fresh_namespace(operator, Limits(), lambda runner: runner.episode(SEED, STEPS))
    report = outcome.report()
    print(report)
    replay = json.dumps(outcome.as_json())
    assert not outcome.violations, f"{report}\nreplay: bench/soak_promise.py --replay FILE with FILE:\n{replay}"


# Sequences that broke the promise, each as `make soak` shrank it, or as written by hand where said; replayed as
# they are, they are regression tests from outside (tests/e2e/README.md has each with its fix). Each runs in about
# half a minute.
FOUND: dict[str, list[dict[str, Any]]] = {
    # A START sent for s0's release, slowed past the exec timeout, lands after s2 took hold and said Ready (seed 504).
    "late-start-after-a-new-hold": [
        {
            "action": "create-suspension",
            "args": {"name": "s0", "spec": {"instanceGroup": "db", "processes": ["forwarder"]}},
            "fault": {"kind": "restart-container", "delay": 1.1, "pod": "api-0", "process": "log-cache/forwarder"},
        },
        {
            "action": "delete-suspension",
            "args": {"name": "s0"},
            "fault": {"kind": "slow-exec", "pod": "db-1", "sleep": 12.1, "down": 12.8, "lead": 3.1},
            "settle": False,
        },
        {
            "action": "create-suspension",
            "args": {"name": "s2", "spec": {"probes": "Skip", "selector": {"matchLabels": {DEPLOYMENT: "kubecf"}}}},
        },
    ],
    # A rename (s3 applied, s0 pruned): s0's give-back STARTs a process s3 holds (seed 508). On issue 22's operator:
    # s3 took s0's holds by the hand-over and its next STOP stopped the probed ccng that probes: Skip leaves alone.
    "rename-starts-what-the-new-one-holds": [
        {
            "action": "create-suspension",
            "args": {"name": "s0", "spec": {"probes": "Skip", "selector": {"matchExpressions": [NOT_DB]}}},
            "fault": {"kind": "revoke-exec", "delay": 1.0, "down": 7.8},
            "settle": False,
        },
        {
            "action": "rename-suspension",
            "args": {"name": "s0", "to": "s3"},
            "fault": {"kind": "slow-exec", "pod": "api-0", "sleep": 12.8, "down": 4.8, "lead": 1.7},
            "settle": False,
        },
    ],
    # The duration of an expired suspension removed: one status round says Ready/Expired for the new generation,
    # whose intent is to suspend (seed 509, shrunk by hand).
    "duration-removed-after-expiry": [
        {"action": "create-suspension", "args": {"name": "s3", "spec": {"instanceGroup": "db", "duration": "6s"}}},
        {"action": "wait", "args": {"seconds": 15}},
        {"action": "patch-suspension", "args": {"name": "s3", "patch": {"duration": None}}},
    ],
    # `suspend: false` and `true` again while the first run's hold is still in the ledger, releasing: its START exec
    # timed out (slowed), so nothing is sent into the pod for the window and grace. Taken back, the hold kept the
    # first run's time, and `expiresAt` came before the request + duration (seed 2404, 37 steps; written by hand
    # from its end, on one pod so that no other pod's new hold sets `suspendedAt` first).
    "re-suspend-while-the-old-hold-is-given-back": [
        {"action": "relabel-pod", "args": {"pod": "db-0", "key": "tier", "value": "a"}},
        {
            "action": "create-suspension",
            "args": {"name": "s2", "spec": {"selector": {"matchLabels": {"tier": "a"}}, "jobs": ["pxc-mysql"]}},
        },
        {
            "action": "patch-suspension",
            "args": {"name": "s2", "patch": {"suspend": False}},
            "fault": {"kind": "slow-exec", "pod": "db-0", "sleep": 12.0, "down": 4.0, "lead": 0.3},
            "settle": False,
        },
        {"action": "patch-suspension", "args": {"name": "s2", "patch": {"suspend": True}}, "settle": False},
        {"action": "patch-suspension", "args": {"name": "s2", "patch": {"duration": "15s"}}},
    ],
    # A duration of 6s set to 40s at once: the status still answered the 6s generation when the checker judged its
    # expiresAt against the request + 40s (seed 5101, shrunk; a false alarm of the checker, which now waits for the
    # status of the object's generation).
    "duration-lengthened-at-once": [
        {"action": "relabel-pod", "args": {"pod": "api-0", "key": "tier", "value": "a"}},
        {
            "action": "create-suspension",
            "args": {
                "name": "s3",
                "spec": {
                    "duration": "6s",
                    "probes": "Refuse",
                    "processes": ["forwarder"],
                    "selector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
                },
            },
            "settle": False,
        },
        {"action": "patch-suspension", "args": {"name": "s3", "patch": {"duration": "40s"}}},
    ],
    # A duration removed while the operator is down, past the old expiresAt: back, its pod workers took the stale
    # expiresAt of the status for the expiry, started the process, and stopped it again once the status caught up
    # (`held-started`, seed 5305 in 11 steps; written by hand).
    "duration-removed-while-the-operator-is-down": [
        {
            "action": "create-suspension",
            "args": {"name": "s1", "spec": {"instanceGroup": "db", "processes": ["forwarder"], "duration": "15s"}},
        },
        {
            "action": "patch-suspension",
            "args": {"name": "s1", "patch": {"duration": None}},
            "fault": {"kind": "kill-operator", "down": 20.0, "lead": 1.0},
        },
    ],
    # A STOP slowed past the exec timeout lands after the release's START: stopped, nothing holds it (written by
    # hand after issue 22's case 3).
    "late-stop-after-the-release": [
        {
            "action": "create-suspension",
            "args": {"name": "s0", "spec": {"instanceGroup": "api", "processes": ["forwarder"]}},
            "fault": {"kind": "slow-exec", "pod": "api-0", "sleep": 14.0, "down": 4.0, "lead": 0.3},
            "settle": False,
        },
        {"action": "patch-suspension", "args": {"name": "s0", "patch": {"suspend": False}}},
    ],
    # The two above with only the send slowed (after the go-ahead, within the send grace, past the exec timeout):
    # the command still lands, late, and the operator must send nothing into that pod until the window and the
    # grace have passed (issue 22's quiet time; written by hand).
    "late-start-within-the-grace-after-a-new-hold": [
        {"action": "create-suspension", "args": {"name": "s0", "spec": {"instanceGroup": "db"}}},
        {
            "action": "delete-suspension",
            "args": {"name": "s0"},
            "fault": {"kind": "slow-exec", "phase": "send", "pod": "db-1", "sleep": 9.5, "down": 4.0, "lead": 0.5},
            "settle": False,
        },
        {"action": "create-suspension", "args": {"name": "s2", "spec": {"instanceGroup": "db"}}},
    ],
    "late-stop-within-the-grace-after-the-release": [
        {
            "action": "create-suspension",
            "args": {"name": "s0", "spec": {"instanceGroup": "api", "processes": ["forwarder"]}},
            "fault": {"kind": "slow-exec", "phase": "send", "pod": "api-0", "sleep": 9.5, "down": 4.0, "lead": 0.3},
            "settle": False,
        },
        {"action": "patch-suspension", "args": {"name": "s0", "patch": {"suspend": False}}},
    ],
}


@pytest.mark.parametrize("name", sorted(FOUND))
@pytest.mark.timeout(600)
def test_sequences_found_before_keep_the_promise(operator: OperatorProcess, name: str) -> None:
    steps = [Step.from_json(step) for step in FOUND[name]]
    outcome = run_in_fresh_namespace(operator, Limits(), lambda runner: runner.run(steps))
    assert len(outcome.steps) == len(steps), f"steps skipped: {outcome.skipped}"
    assert not outcome.violations, outcome.report()


def quick(cluster: Cluster, hints: Hints | None = None) -> Checker:
    """A checker with a short repair time: these tests break the promise on purpose and wait for the verdict."""
    return Checker(cluster.namespace, HostProcesses(), Limits(repair_s=8), hints or Hints())


def test_the_checker_sees_a_stopped_process_nothing_holds_and_a_held_one_that_runs(cluster: Cluster) -> None:
    pods = cluster.group("db", pods=1)
    hints = Hints()
    checker = quick(cluster, hints)
    assert checker.converge() == []
    # Stopped by hand, and the checker not told: a process left stopped that nothing holds.
    cluster.send(pods[0], AGENT, "STOP")
    assert [v.kind for v in checker.converge()] == ["unheld-stopped"]
    hints.base[(pods[0], "pxc-mysql", "galera-agent")] = Base.STOPPED
    hints.disturbed = time.time()
    assert checker.converge() == []

    cluster.apply(cluster.suspension("restore", instanceGroup="db", processes=["mysql"]))
    cluster.wait("restore")
    assert checker.converge() == []
    # With the operator away, a restarted container runs its process again: held, and running.
    cluster.operator.kill()
    try:
        fakepods.restart_container(cluster.namespace, pods[0], MYSQL)
        hints.disturbed = time.time()
        found = {v.kind for v in checker.converge()}
        assert "held-running" in found, found
    finally:
        cluster.operator.start()
    assert checker.converge(timeout=90) == []


def test_the_checker_sees_a_ready_that_was_false_when_written_and_a_hold_nothing_owns(cluster: Cluster) -> None:
    pods = cluster.group("db", pods=1)
    cluster.apply(cluster.suspension("restore", instanceGroup="db", suspend=False))
    cluster.wait("restore")
    checker = quick(cluster, Hints(disturbed=time.time() - 30))
    assert checker.converge() == []
    cluster.operator.kill()
    try:
        # What a broken operator would write: Suspended for this generation, while everything runs.
        generation = cluster.get("psus", "restore")["metadata"]["generation"]
        cluster.kubectl("patch", "psus", "restore", "--type=merge", "-p", '{"spec":{"suspend":true}}')
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ready = {"type": "Ready", "status": "True", "reason": "Suspended", "message": "forged"}
        condition = {**ready, "lastTransitionTime": now, "observedGeneration": generation + 1}
        status = {"status": {"observedGeneration": generation + 1, "conditions": [condition]}}
        cluster.kubectl("patch", "psus", "restore", "--subresource=status", "--type=merge", "-p", json.dumps(status))
        assert [v.kind for v in checker.converge()] == ["ready-not-in-force"]
        # A ledger naming a suspension that does not exist, and the label with it.
        cluster.kubectl("patch", "psus", "restore", "--type=merge", "-p", '{"spec":{"suspend":false}}')
        ledger = {"v": 1, "holds": {"no-such-uid": {"name": "gone"}}, "processes": {}}
        # Only the operator's ServiceAccount may write these (the admission policy): forged the break-glass way.
        cluster.kubectl("annotate", AS_OPERATOR, "pod", pods[0], f"processcontrol.dev/holds={json.dumps(ledger)}")
        cluster.kubectl("label", AS_OPERATOR, "pod", pods[0], "processcontrol.dev/suspended=true")
        found = {v.kind for v in checker.converge()}
        assert {"ledger-dead-hold", "label-without-hold"} <= found, found
        cluster.kubectl("annotate", AS_OPERATOR, "pod", pods[0], "processcontrol.dev/holds-")
        cluster.kubectl("label", AS_OPERATOR, "pod", pods[0], "processcontrol.dev/suspended-")
    finally:
        cluster.operator.start()
    assert checker.converge(timeout=90) == []
