"""Soak: the long variant of tests/e2e/test_faults.py's fault scenarios (`make soak-faults`, not part of CI).

    .venv/bin/python bench/soak_faults.py                       # 20 kill trials, 5 apiserver and 5 etcd restarts
    .venv/bin/python bench/soak_faults.py --kill-trials 50 --restarts 10 --pods 30 --seed 1000

On its own local control plane (/tmp/processcontrol-soak unless PROCESSCONTROL_STATE says otherwise), with the
operator as in the e2e tests (its ServiceAccount and deploy/'s RBAC, the e2e settings), one instance group of
`--pods` fake pods with one real containerrun each:

1. kill trials (reliability.kill_trial): suspend, resume, suspend again and delete, the operator SIGKILLed at a seeded
   random moment in each phase (0-6 s after the request) and started again;
2. restart trials: kube-apiserver, then etcd, stopped at a seeded random moment while suspending and while resuming
   and started again with the same ports, flags and data; the operator is not restarted.

After each phase the common check (reliability.check_state) counts the wrong states: a process running that should
be stopped or the reverse, status not saying so, a label or finalizer left behind. The result must be 0 everywhere.
Prints a table and writes a new bench/soak_results/<date>-soak.json (every trial: seed, kill moments, wrong states,
seconds); bench/soak_results/latest.json only with --update-latest (`make soak-faults UPDATE=1`).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RESULTS = BENCH / "soak_results"
os.environ.setdefault("PROCESSCONTROL_STATE", "/tmp/processcontrol-soak")

import recording  # noqa: E402 - bench/ is this script's directory, on sys.path as for any script
from harness import fakepods  # noqa: E402
from harness import operator as harness  # noqa: E402 - the operator as a process (was hack/harness.py)
from harness.base import kubectl  # noqa: E402
from harness.cluster import Cluster  # noqa: E402
from harness.reliability import check_state, kill_trial, restart_component, wait_gone  # noqa: E402

JOB = "pxc-mysql/mysql"


def settled(cluster: Cluster, pods: list[str], name: str | None, stopped: bool, timeout: float = 120) -> list[str]:
    """Wait for the requested state; return what is still wrong at the end (empty: converged)."""
    deadline = time.monotonic() + timeout
    verdict = check_state(cluster, pods, [JOB], name, stopped)
    while not verdict and time.monotonic() < deadline:
        time.sleep(1)
        verdict = check_state(cluster, pods, [JOB], name, stopped)
    return verdict.wrong


def restart_trial(cluster: Cluster, pods: list[str], component: str, seed: int) -> dict[str, Any]:
    """A control plane component restarted while suspending and while resuming; the operator keeps running."""
    rng = random.Random(seed)
    name = f"{component.split('-')[-1]}-{seed}"
    pid = cluster.operator.process.pid if cluster.operator.process else None
    result: dict[str, Any] = {"seed": seed, "component": component, "moments": {}, "wrong": {}}
    start = time.monotonic()
    cluster.apply(cluster.suspension(name, instanceGroup="database"))
    for phase, stopped in (("suspending", True), ("resuming", False)):
        if phase == "resuming":
            cluster.kubectl("patch", "psus", name, "--type=merge", "-p", '{"spec":{"suspend":false}}')
        delay = round(rng.uniform(0.0, 5.0), 2)
        result["moments"][phase] = delay
        time.sleep(delay)
        restart_component(component, down_s=rng.uniform(1.0, 5.0))
        result["wrong"][phase] = settled(cluster, pods, name, stopped)
    cluster.kubectl("delete", "psus", name, "--timeout=120s", check=False)
    try:
        wait_gone(cluster, name, 120)
        result["wrong"]["deleted"] = settled(cluster, pods, None, False)
    except AssertionError as error:
        result["wrong"]["deleted"] = [str(error)]
    now_pid = cluster.operator.process.pid if cluster.operator.process else None
    if now_pid != pid or cluster.operator.process is None or cluster.operator.process.poll() is not None:
        result["wrong"].setdefault("operator", []).append("the operator exited or was restarted")
    result["seconds"] = round(time.monotonic() - start, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--kill-trials", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=5, help="trials per component (kube-apiserver, etcd)")
    parser.add_argument("--pods", type=int, default=30)
    parser.add_argument("--seed", type=int, default=100, help="first seed; trial i uses seed + i")
    parser.add_argument("--update-latest", action="store_true", help="also replace the committed latest.json")
    args = parser.parse_args(argv)

    operator = harness.start_soak_operator("operator-soak.log")
    namespace = f"soak-{uuid.uuid4().hex[:5]}"
    fakepods.ensure_namespace(namespace)
    cluster = Cluster(namespace, operator)
    rows: list[dict[str, Any]] = []
    started = time.monotonic()
    try:
        pods = fakepods.create_group("database", namespace, args.pods, JOB)
        for i in range(args.kill_trials):
            trial = kill_trial(cluster, pods, [JOB], args.seed + i)
            row = json.loads(trial.as_json())
            row["scenario"] = "operator SIGKILL"
            rows.append(row)
            print(f"kill trial {i + 1}/{args.kill_trials}: {trial.as_json()}", flush=True)
        for component in ("kube-apiserver", "etcd"):
            for i in range(args.restarts):
                row = restart_trial(cluster, pods, component, args.seed + i)
                row["scenario"] = f"{component} restart"
                rows.append(row)
                print(f"{component} trial {i + 1}/{args.restarts}: {json.dumps(row)}", flush=True)
    finally:
        kubectl("delete", "psus", "--all", "-n", namespace, "--timeout=120s", check=False)
        fakepods.delete_group("database", namespace)
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)
        operator.stop()

    table: dict[str, dict[str, int]] = {}
    for row in rows:
        entry = table.setdefault(row["scenario"], {"trials": 0, "wrong": 0})
        entry["trials"] += 1
        entry["wrong"] += sum(len(w) for w in row["wrong"].values())
    print(f"\n{'scenario':<28} {'trials':>6} {'wrong states':>13}")
    for scenario, entry in table.items():
        print(f"{scenario:<28} {entry['trials']:>6} {entry['wrong']:>13}")
    total_wrong = sum(e["wrong"] for e in table.values())
    print(f"\n{len(rows)} trials in {time.monotonic() - started:.0f}s, {total_wrong} wrong states")
    now = datetime.now(UTC)
    record = {
        "date": now.isoformat(timespec="seconds"),
        "pods": args.pods,
        "summary": table,
        "trials": rows,
    }
    path = recording.new_record(now, "soak", RESULTS)
    path.write_text(json.dumps(record, indent=1) + "\n")
    if args.update_latest:
        (RESULTS / "latest.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"recorded in {path}")
    return 1 if total_wrong else 0


if __name__ == "__main__":
    sys.exit(main())
