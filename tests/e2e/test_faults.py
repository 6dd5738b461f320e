"""Faults real clusters have, on the real control plane: the operator SIGKILLed, kube-apiserver and etcd restarted,
pods deleted or hanging in the middle of an exec, crash-looping containers, a namespaced install without exec rights.

Each scenario ends with the same check (reliability.check_state): every process that should be stopped is stopped,
every other one runs, status says so, and no finalizer or label is left behind. The long variant is `make soak`.
"""

from __future__ import annotations

import os

import pytest
from e2e_helpers import Cluster
from reliability import (
    forbidden_lines,
    kill_trial,
    log_offset,
)

MYSQL = "pxc-mysql/mysql"
AGENT = "pxc-mysql/galera-agent"
BOTH = (MYSQL, AGENT)
# Seeds of the CI trials (the soak runs more): fixed, so that a failure is reproducible.
CI_SEEDS = tuple(int(s) for s in os.environ.get("PROCESSCONTROL_KILL_SEEDS", "1,2,3").split(","))


@pytest.mark.timeout(900)
def test_operator_sigkilled_while_suspending_resuming_and_deleting_converges(cluster: Cluster) -> None:
    pods = cluster.group("database", pods=30, jobs=MYSQL)
    others = cluster.group("api", pods=1, jobs=MYSQL)
    since = log_offset(cluster.operator.log_path)
    failures = []
    for seed in CI_SEEDS:
        # Every trial kills while suspending and while resuming; the last also while deleting (the finalizer).
        trial = kill_trial(cluster, pods, [MYSQL], seed, kill_deleting=seed == CI_SEEDS[-1])
        print(trial.as_json())
        failures += [f"seed {seed} {phase}: {w}" for phase, wrong in trial.wrong.items() for w in wrong]
    assert not failures, "\n".join(failures)
    assert all(cluster.all_states(others, [MYSQL]).values()), "another instance group was touched"
    assert forbidden_lines(cluster.operator.log_path, since) == []
