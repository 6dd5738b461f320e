"""The operator as it is against an earlier build of it, on the same N pods of one control plane, in turns.

    .venv/bin/python bench/ab_bench.py --baseline 7d3e18a          # make bench-ab BASELINE=7d3e18a
    .venv/bin/python bench/ab_bench.py --baseline 7d3e18a --pods 50 --rounds 5

"No slower than before" needs both in the same run: these machines are noisy. The baseline is built once into a
git worktree with its own venv (`.bench-baseline/<commit>`, ignored by git); the control plane, the pods and the
install (deploy/: RBAC, admission) are this tree's, and each operator's turn applies its own CRD first (a newer
CRD defaults fields an older operator refuses). Each round runs both operators one after the other, in
alternating order, one at a time (the other stopped): bench/suspend_bench.py's `ours_once` (apply -> Ready and
every sentinel gone; delete -> every sentinel back) with default settings. The table gives the medians and the
ratio current / baseline; the record goes to a new bench/results/<date>-ab.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
os.environ.setdefault("PROCESSCONTROL_STATE", "/tmp/processcontrol-bench")

import recording  # noqa: E402 - bench/ is this script's directory, on sys.path as for any script
import suspend_bench as sb  # noqa: E402
from harness import controlplane, fakepods  # noqa: E402
from harness import operator as harness  # noqa: E402
from harness.base import kubectl as admin_kubectl  # noqa: E402
from harness.base import state_dir  # noqa: E402

CURRENT, BASELINE = "current", "baseline"


def git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def baseline_tree(commit: str) -> Path:
    return ROOT / ".bench-baseline" / git("rev-parse", "--verify", f"{commit}^{{commit}}")[:12]


def baseline_build(commit: str) -> Path:
    """The baseline's `processcontrol`, built once into `.bench-baseline/<commit>`."""
    full = git("rev-parse", "--verify", f"{commit}^{{commit}}")
    tree = baseline_tree(commit)
    executable = tree / ".venv" / "bin" / "processcontrol"
    if executable.exists():
        return executable
    if not tree.exists():
        git("worktree", "add", "--detach", str(tree), full)
    sb.say(f"building the baseline {full[:12]} into {tree}")
    subprocess.run([sys.executable, "-m", "venv", str(tree / ".venv")], check=True)
    subprocess.run([str(tree / ".venv" / "bin" / "python"), "-m", "pip", "install", "-q", str(tree)], check=True)
    return executable


def one_turn(which: str, executable: Path, crd: Path, pods: list[str], name: str) -> dict[str, Any]:
    """One suspend and resume by this operator, under its own CRD."""
    admin_kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
    admin_kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/processsuspensions.processcontrol.dev")
    operator = harness.OperatorProcess(
        harness.service_account_kubeconfig(),
        executable=executable,
        log_path=state_dir() / "logs" / f"operator-{which}.log",
    )
    operator.start(timeout=120)
    try:
        return {"operator": which, **sb.ours_once(pods, name, operator)}
    finally:
        operator.stop()


def medians(turns: list[dict[str, Any]], which: str) -> dict[str, float]:
    mine = [t for t in turns if t["operator"] == which]
    keys = ("suspend_s", "resume_s", "execs_per_pod_suspend", "execs_per_pod_resume")
    return {key: statistics.median(t[key] for t in mine) for key in keys}


def table(record: dict[str, Any]) -> str:
    current, baseline = record["medians"][CURRENT], record["medians"][BASELINE]
    lines = [
        f"| {record['pods']} pods, {record['rounds']} rounds | suspend (median) | resume (median) "
        "| execs per pod: suspend, resume |",
        "| --- | ---: | ---: | ---: |",
    ]
    for label, row in ((f"baseline {record['baseline']}", baseline), (f"current {record['current']}", current)):
        lines.append(
            f"| {label} | {row['suspend_s']:.2f} s | {row['resume_s']:.2f} s "
            f"| {row['execs_per_pod_suspend']:.2f}, {row['execs_per_pod_resume']:.2f} |"
        )
    lines.append(
        f"| current / baseline | {current['suspend_s'] / baseline['suspend_s']:.2f}x "
        f"| {current['resume_s'] / baseline['resume_s']:.2f}x | |"
    )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", required=True, help="the commit to compare with, e.g. 7d3e18a")
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5, help="turns of each operator")
    parser.add_argument("--keep", action="store_true", help="leave the control plane and the pods up")
    args = parser.parse_args()
    started = datetime.now(UTC)
    executables = {CURRENT: harness.PROCESSCONTROL, BASELINE: baseline_build(args.baseline)}
    trees = {CURRENT: ROOT, BASELINE: baseline_tree(args.baseline)}
    crds = {which: tree / "crds" / "processsuspensions.yaml" for which, tree in trees.items()}
    record: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "machine": sb.machine(),
        "settings": "operator defaults (docs/configuration.md); PROCESSCONTROL_METRICS_PORT set by harness.operator",
        "pods": args.pods,
        "rounds": args.rounds,
        "current": git("describe", "--always", "--dirty"),
        "baseline": git("rev-parse", "--short", args.baseline),
        "turns": [],
    }
    record["machine"]["uptime_start"] = sb.uptime()
    dated = recording.new_record(started, "ab")
    try:
        harness.ensure_control_plane()
        harness.install()
        pods = sb.grow_group(args.pods)
        for round_ in range(args.rounds):
            order = (BASELINE, CURRENT) if round_ % 2 == 0 else (CURRENT, BASELINE)
            for which in order:
                turn = one_turn(which, executables[which], crds[which], pods, f"ab-{which}-{round_}")
                record["turns"].append(turn)
                sb.say(f"round {round_ + 1}/{args.rounds} {which}: {sb.progress(turn)}")
        record["medians"] = {which: medians(record["turns"], which) for which in (CURRENT, BASELINE)}
    finally:
        record["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        record["machine"]["uptime_end"] = sb.uptime()
        if not args.keep:
            sb.say(f"stopped {fakepods.stop_all_host_processes()} host processes")
            controlplane.main(["down"])
        record["duration_s"] = (datetime.now(UTC) - started).total_seconds()
        dated.write_text(json.dumps(record, indent=2) + "\n")
    print(table(record))
    print(f"recorded in {dated}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
