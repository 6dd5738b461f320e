"""Failover on the real node (issue 24): the leading operator pod deleted while a container of a suspended group
restarts; seconds until the new leader has stopped its process again. p50/p95 for deploy/'s two replicas and, in the
same run, for one replica with the Recreate strategy.

    .venv/bin/python bench/failover_bench.py [--trials 5]

It runs tests/node/test_real_node_leader.py with that many trials per configuration (each trial after the first on a
new pod, so that the kubelet's restart back-off is not counted), then prints a table and records
bench/results/<date>-failover.json (bench/recording.py), with the machine's load before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
STATE = Path(os.environ.setdefault("PROCESSCONTROL_STATE", "/tmp/processcontrol-failover-bench"))
GOAL_S = 15.0

import recording  # noqa: E402 - bench/ is this script's directory, on sys.path as for any script


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--trials", type=int, default=5, help="trials per configuration")
    args = parser.parse_args()
    started = datetime.now(UTC)
    load_before = os.getloadavg()
    figures = STATE / "failover.json"
    figures.unlink(missing_ok=True)
    test = ROOT / "tests" / "node" / "test_real_node_leader.py"
    env = dict(os.environ, PROCESSCONTROL_FAILOVER_TRIALS=str(args.trials))
    run = subprocess.run([sys.executable, "-m", "pytest", str(test), "-q", "-s"], cwd=ROOT, env=env, check=False)
    if run.returncode != 0 or not figures.exists():
        print(f"failover bench: the node test failed (exit {run.returncode}); nothing recorded", file=sys.stderr)
        return 1
    result = json.loads(figures.read_text())
    print(f"\n{'configuration':<26} {'trials':>6} {'p50':>8} {'p95':>8} {'max':>8}   goal <= {GOAL_S:g} s")
    for key, label in (("two_replicas", "2 replicas (deploy/)"), ("one_replica_recreate", "1 replica, Recreate")):
        row = result[key]
        print(f"{label:<26} {row['trials']:>6} {row['p50']:>7.1f}s {row['p95']:>7.1f}s {row['max']:>7.1f}s")
    record = {
        "date": started.isoformat(timespec="seconds"),
        "what": "leader pod deleted + a held container restarted -> its process stopped again (seconds)",
        "goal_s": GOAL_S,
        "load": {"before": load_before, "after": os.getloadavg()},
        **result,
    }
    path = recording.new_record(started, "failover")
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"recorded {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
