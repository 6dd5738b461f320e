"""Soak: random operations and faults against the real control plane, the promise checked after every step
(`make soak SEED=... STEPS=...`, not in CI; issue 23).

    .venv/bin/python bench/soak_promise.py --seed 1 --steps 1000              # about 2-3 hours on 2 cores
    .venv/bin/python bench/soak_promise.py --seed 7 --steps 60 --shrink-budget 0
    .venv/bin/python bench/soak_promise.py --replay bench/results/promise-....json [--violation 0]

On its own local control plane (/tmp/processcontrol-soak unless PROCESSCONTROL_STATE says otherwise), with the
operator as in the e2e tests (its ServiceAccount, deploy/'s RBAC, the e2e settings). The steps run in episodes of at
most `--episode-steps`, each in a fresh namespace with the seed `--seed` + its index (harness.chaos): an episode
ends at its first violation, which is then shrunk (delta debugging, at most `--shrink-budget` seconds, each try a
fresh replay) and the next episode starts, until `--steps` steps have run.

Prints the seed, the steps by kind, the faults by kind and every violation with its (shrunk) sequence; records the
run as JSON in bench/results/promise-<date>-seed<seed>.json, whose violations' `steps` `--replay` takes back.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
os.environ.setdefault("PROCESSCONTROL_STATE", "/tmp/processcontrol-soak")

from harness.base import ControlPlaneError  # noqa: E402
from harness.chaos import Outcome, Runner, Step, run_in_fresh_namespace, shrink  # noqa: E402
from harness.fakepods import FakePodError  # noqa: E402
from harness.operator import HarnessError, OperatorProcess, start_soak_operator  # noqa: E402
from harness.promise import Limits  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=1, help="the first episode's seed; episode i uses seed + i")
    parser.add_argument("--steps", type=int, default=1000, help="steps in all")
    parser.add_argument("--episode-steps", type=int, default=50, help="steps of one episode at most")
    parser.add_argument("--shrink-budget", type=float, default=1800, help="seconds of shrinking per violation")
    parser.add_argument("--repair", type=float, default=Limits.repair_s, help="the checker's repair time, seconds")
    parser.add_argument("--replay", type=Path, help="replay a recorded run's (or a test's) step list instead")
    parser.add_argument("--violation", type=int, default=0, help="with --replay of a run: which violation")
    parser.add_argument("--output", type=Path, help="where to record the run (default: bench/results/)")
    args = parser.parse_args(argv)

    limits = Limits(repair_s=args.repair)
    operator = start_soak_operator("operator-promise.log")
    try:
        if args.replay:
            return replay(operator, limits, args.replay, args.violation)
        return soak(operator, limits, args)
    finally:
        operator.stop()


def replay(operator: OperatorProcess, limits: Limits, path: Path, index: int) -> int:
    """Run a recorded step list once more, as it is (steps that make no sense any more are skipped)."""
    record = json.loads(path.read_text())
    found = record["violations"][index] if "episodes" in record else record
    steps = [Step.from_json(s) for s in found.get("shrunk", found)["steps"]]
    outcome = run_in_fresh_namespace(operator, limits, lambda r: r.run(steps, found.get("seed")))
    print(outcome.report())
    return 1 if outcome.violations else 0


def soak(operator: OperatorProcess, limits: Limits, args: argparse.Namespace) -> int:
    started, total = time.monotonic(), 0
    episodes: list[dict[str, Any]] = []
    violations: list[dict[str, Any]] = []
    actions: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    index = 0
    while total < args.steps:
        seed = args.seed + index
        count = min(args.episode_steps, args.steps - total)
        print(f"\n=== episode {index}: seed {seed}, up to {count} steps ({total}/{args.steps} done)", flush=True)

        def play(runner: Runner, seed: int = seed, count: int = count) -> Outcome:
            return runner.episode(seed, count)

        try:
            outcome = run_in_fresh_namespace(operator, limits, play)
        except (ControlPlaneError, FakePodError, HarnessError) as error:
            # The harness, not the operator: say so, and go on with the next episode.
            print(f"episode {index} could not run: {error}", flush=True)
            episodes.append({"seed": seed, "error": str(error)})
            index += 1
            continue
        print(outcome.report(), flush=True)
        by_action, by_fault = outcome.counts()
        actions.update(by_action)
        faults.update(by_fault)
        total += max(1, len(outcome.steps))
        episodes.append({"seed": seed, "steps": len(outcome.steps), "violations": [str(v) for v in outcome.violations]})
        if outcome.violations:
            entry: dict[str, Any] = outcome.as_json()
            if args.shrink_budget > 0:
                print(f"--- shrinking {len(outcome.steps)} steps (at most {args.shrink_budget:.0f}s)", flush=True)
                shrunk = shrink(operator, limits, outcome, args.shrink_budget, log=print)
                entry["shrunk"] = shrunk.as_json()
                print("--- shrunk:\n" + shrunk.report(), flush=True)
            violations.append(entry)
        index += 1
        record(args, limits, started, total, episodes, violations, actions, faults)

    out = record(args, limits, started, total, episodes, violations, actions, faults)
    seconds = time.monotonic() - started
    print(f"\npromise soak: seed {args.seed}, {total} steps in {len(episodes)} episodes, {seconds / 60:.0f} min")
    print("steps by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(actions.items())))
    print("faults by kind: " + (", ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "none"))
    print(f"violations: {len(violations)}")
    for number, entry in enumerate(violations):
        best: dict[str, Any] = entry.get("shrunk", entry)
        print(f"\n[{number}] seed {entry['seed']}: " + "; ".join(best["violations"]))
        for i, step in enumerate(best["steps"], 1):
            print(f"   {i:>3}. {Step.from_json(step)}")
    print(f"\nrecorded in {out}")
    return 1 if violations else 0


def record(
    args: argparse.Namespace,
    limits: Limits,
    started: float,
    total: int,
    episodes: list[dict[str, Any]],
    violations: list[dict[str, Any]],
    actions: Counter[str],
    faults: Counter[str],
) -> Path:
    """Write the run so far (after each episode, so that an interrupted soak keeps what it found)."""
    data = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seed": args.seed,
        "steps": total,
        "minutes": round((time.monotonic() - started) / 60, 1),
        "limits": vars(limits),
        "stepsByKind": dict(sorted(actions.items())),
        "faultsByKind": dict(sorted(faults.items())),
        "episodes": episodes,
        "violations": violations,
    }
    out: Path = args.output or RESULTS / f"promise-{datetime.now(UTC):%Y-%m-%d}-seed{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    return out


if __name__ == "__main__":
    sys.exit(main())
