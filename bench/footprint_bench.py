"""Footprint benchmark: the operator's memory and CPU with 1,000 pods watched and 100 suspensions.

    .venv/bin/python bench/footprint_bench.py          # make bench-footprint (about 10 min); also part of bench-full

The operator runs as its own process (`processcontrol operator --all-namespaces`, default settings) against the
local control plane (PROCESSCONTROL_STATE, /tmp/processcontrol-bench unless set). What is run, exactly:

- `--real` pods (default 100) of the instance group `bench` in the namespace `bench`, each a kwok pod backed by 2
  real `containerrun` processes on this host (tests/harness/fakepods.py);
- API-only pods in `bench-idle` up to `--watched` (default 1,000) pods in all: kwok runs them (phase Running) but
  they have no processes and nothing targets them. The operator's pod watch and index hold every one of them;
- `--suspensions` (default 100) ProcessSuspensions, each selecting one real pod by its ordinal label, so every one
  stops 2 real processes (with 100 real pods: one suspension per pod).

Measured from /proc/PID of the operator process: VmRSS and VmHWM (peak RSS since it started) from `status`, CPU from
utime+stime in `stat`:

1. idle with every pod watched and Running (no suspension), over a quiet window (`--window`, 60 s);
2. during the suspend: from the first `kubectl apply` until every suspension is Ready and every process stopped,
   sampled every 0.5 s: max RSS, max CPU over any 1 s, mean CPU over the span;
3. idle with the 100 suspensions holding, over the same quiet window. This is the one the target (< 2 % of a core)
   is judged on: it includes the status daemons and the periodic re-check (a STATUS exec per held pod every
   300 s by default, so a 60 s window sees about a fifth of them).

Targets (issue 14): RSS <= 150 MB (the highest of VmHWM over the run), idle CPU < 2 % of one core.
Results: a table on stdout, bench/results/<date>-footprint.json (not latest.json: `make bench-full` puts its own
record, which includes this one, there).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
os.environ.setdefault("PROCESSCONTROL_STATE", "/tmp/processcontrol-bench")

import recording  # noqa: E402 - bench/ is this script's directory, on sys.path as for any script
import suspend_bench as sb  # noqa: E402
from harness import controlplane, fakepods  # noqa: E402
from harness import operator as harness  # noqa: E402 - the operator as a process

RSS_TARGET_MB = 150.0
IDLE_CPU_TARGET_PERCENT = 2.0
MB = 2**20


def create_api_only_pods(count: int) -> None:
    """`count` pods in bench-idle that kwok runs (phase Running) with no process behind them; waits until all run."""
    if count <= 0:
        return
    sb.create_idle_pods(count)
    deadline = time.monotonic() + 600
    while True:
        phases = sb.kubectl("get", "pods", "-n", sb.IDLE_NAMESPACE, "-o", "jsonpath={.items[*].status.phase}").split()
        if sum(1 for p in phases if p == "Running") >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sum(1 for p in phases if p == 'Running')}/{count} API-only pods Running")
        time.sleep(2)


class Sampler(threading.Thread):
    """RSS and CPU of one process every `interval` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, float, int]] = []  # (monotonic, cpu seconds, rss bytes)
        self.done = threading.Event()

    def run(self) -> None:
        while True:
            cpu, rss, _ = sb.proc_usage(self.pid)
            self.samples.append((time.monotonic(), cpu, rss))
            if self.done.wait(self.interval):
                cpu, rss, _ = sb.proc_usage(self.pid)
                self.samples.append((time.monotonic(), cpu, rss))
                return

    def summary(self) -> dict[str, float]:
        first, last = self.samples[0], self.samples[-1]
        wall = last[0] - first[0]
        # CPU over any ~1 s: each sample against the first one at least 1 s before it.
        peak = 0.0
        j = 0
        for i, (t, cpu, _) in enumerate(self.samples):
            while j < i and t - self.samples[j + 1][0] >= 1.0:
                j += 1
            if t - self.samples[j][0] >= 1.0:
                peak = max(peak, 100 * (cpu - self.samples[j][1]) / (t - self.samples[j][0]))
        return {
            "window_s": wall,
            "cpu_percent_of_one_core": 100 * (last[1] - first[1]) / wall if wall > 0 else 0.0,
            "cpu_percent_max_1s": peak,
            "rss_max_in_window_mb": max(s[2] for s in self.samples) / MB,
            "cpu_seconds": last[1] - first[1],
        }


def one_pod(ordinal: int) -> dict[str, object]:
    """A suspension spec selecting the real pod of that ordinal."""
    labels = {fakepods.LABEL_INSTANCE_GROUP: sb.GROUP, fakepods.LABEL_POD_ORDINAL: str(ordinal)}
    return {"selector": {"matchLabels": labels}}


def measure(
    operator: harness.OperatorProcess, real_pods: Sequence[str], watched: int, suspensions: int, window: float
) -> dict[str, Any]:
    """The footprint with `watched` pods in all (the real ones plus API-only ones) and `suspensions` suspensions,
    one real pod each. Leaves the real pods running and removes the API-only ones."""
    assert operator.process is not None
    if suspensions > len(real_pods):
        raise ValueError(f"{suspensions} suspensions need as many real pods, got {len(real_pods)}")
    pid = operator.process.pid
    api_only = max(0, watched - len(real_pods))
    result: dict[str, Any] = {
        "what_ran": (
            f"{len(real_pods) + api_only} pods watched: {len(real_pods)} pods x {len(sb.JOBS)} real containerrun "
            f"processes, {api_only} API-only pods (Running in kwok, no processes, targeted by nothing); "
            f"{suspensions} suspensions, each selecting one real pod ({suspensions * len(sb.JOBS)} real processes "
            "stopped)"
        ),
        "watched_pods": len(real_pods) + api_only,
        "real_pods": len(real_pods),
        "api_only_pods": api_only,
        "suspensions": suspensions,
        "processes_stopped": suspensions * len(sb.JOBS),
        "before": sb.sample(pid, 5),
    }
    sb.say(f"footprint: creating {api_only} API-only pods in {sb.IDLE_NAMESPACE}")
    create_api_only_pods(api_only)
    time.sleep(10)  # the operator's watch catches up with the last creations
    sb.say(f"footprint: idle with {result['watched_pods']} pods watched, {window:.0f}s")
    result["idle"] = sb.sample(pid, window)

    sb.say(f"footprint: {suspensions} suspensions, one real pod each")
    sampler = Sampler(pid)
    sampler.start()
    began = time.monotonic()
    manifests = [json.loads(sb.suspension(f"bench-fp-{i}", one_pod(i))) for i in range(suspensions)]
    sb.kubectl("apply", "-f", "-", input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests}))
    sb.kubectl("wait", "-n", sb.NAMESPACE, "psus", "--all", "--for=condition=Ready", f"--timeout={sb.WAIT_TIMEOUT_S}s")
    ready = time.monotonic()
    sb.wait_all(sb.sentinels(real_pods[:suspensions]), running=False)
    result["all_ready_s"] = ready - began
    result["all_stopped_s"] = time.monotonic() - began
    sampler.done.set()
    sampler.join()
    result["during_suspend"] = sampler.summary()
    time.sleep(5)  # the last status writes settle
    sb.say(f"footprint: idle with {suspensions} suspensions holding, {window:.0f}s")
    result["with_suspensions"] = sb.sample(pid, window)
    result["peak_rss_mb"] = sb.proc_usage(pid)[2] / MB
    sb.kubectl("delete", "-n", sb.NAMESPACE, "psus", "--all", f"--timeout={sb.WAIT_TIMEOUT_S}s")
    sb.wait_all(sb.sentinels(real_pods), running=True)
    sb.kubectl("delete", "namespace", sb.IDLE_NAMESPACE, "--wait=false")
    result["targets"] = targets(result)
    return result


def targets(fp: dict[str, Any]) -> list[dict[str, Any]]:
    rss = fp["peak_rss_mb"]
    idle = fp["with_suspensions"]["cpu_percent_of_one_core"]
    return [
        {
            "target": f"operator RSS <= {RSS_TARGET_MB:.0f} MB with {fp['watched_pods']} pods watched (VmHWM)",
            "measured": f"{rss:.0f} MB",
            "met": rss <= RSS_TARGET_MB,
        },
        {
            "target": (
                f"operator idle CPU < {IDLE_CPU_TARGET_PERCENT:.0f}% of a core, {fp['watched_pods']} pods, "
                f"{fp['suspensions']} suspensions holding"
            ),
            "measured": f"{idle:.2f}%",
            "met": idle < IDLE_CPU_TARGET_PERCENT,
        },
    ]


def describe(fp: dict[str, Any]) -> str:
    """The footprint as a table, with exactly what was run."""
    idle, during, held = fp["idle"], fp["during_suspend"], fp["with_suspensions"]
    return "\n".join(
        [
            f"Operator footprint ({fp['what_ran']}):",
            "",
            "| phase | window | RSS (max in window) | CPU, % of one core (mean) | CPU max over 1 s |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| idle, no suspension | {idle['window_s']:.0f} s | {idle['rss_max_in_window_mb']:.0f} MB "
            f"| {idle['cpu_percent_of_one_core']:.2f}% | - |",
            f"| suspending (apply -> all Ready and stopped) | {during['window_s']:.1f} s "
            f"| {during['rss_max_in_window_mb']:.0f} MB | {during['cpu_percent_of_one_core']:.1f}% "
            f"| {during['cpu_percent_max_1s']:.0f}% |",
            f"| idle, {fp['suspensions']} suspensions holding | {held['window_s']:.0f} s "
            f"| {held['rss_max_in_window_mb']:.0f} MB | {held['cpu_percent_of_one_core']:.2f}% | - |",
            "",
            f"Peak RSS since the operator started (VmHWM): {fp['peak_rss_mb']:.0f} MB. All {fp['suspensions']} Ready "
            f"{fp['all_ready_s']:.1f} s after the apply, every process stopped at {fp['all_stopped_s']:.1f} s.",
        ]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watched", type=int, default=1000, help="pods watched in all (real + API-only)")
    parser.add_argument("--real", type=int, default=100, help="pods backed by real containerrun processes")
    parser.add_argument("--suspensions", type=int, default=100)
    parser.add_argument("--window", type=float, default=60.0, help="seconds of each quiet window")
    parser.add_argument("--keep", action="store_true", help="leave the control plane and the pods up")
    parser.add_argument(
        "--operator-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment of the operator process, e.g. MALLOC_ARENA_MAX=2 (recorded with the results)",
    )
    args = parser.parse_args()
    operator_env = dict(item.split("=", 1) for item in args.operator_env)

    started = datetime.now(UTC)
    record: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "machine": sb.machine(),
        "operator_env": operator_env,
    }
    sb.say(f"footprint: {args.watched} pods watched, {args.real} real, {args.suspensions} suspensions")
    harness.ensure_control_plane()
    harness.install()
    record["versions"] = sb.versions()
    operator = harness.OperatorProcess(harness.service_account_kubeconfig(), env=operator_env)
    try:
        operator.start()
        assert operator.process is not None
        sb.say(f"operator pid {operator.process.pid}, log {operator.log_path}")
        pods = sb.grow_group(args.real)
        record["footprint"] = measure(operator, pods, args.watched, args.suspensions, args.window)
    finally:
        record["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        with contextlib.suppress(Exception):
            sb.kubectl("delete", "psus", "--all", "-n", sb.NAMESPACE, "--timeout=120s")
        operator.stop()
        if not args.keep:
            sb.say(f"stopped {fakepods.stop_all_host_processes()} containerrun processes")
            controlplane.main(["down"])
    fp = record["footprint"]
    print(describe(fp))
    print()
    for t in fp["targets"]:
        print(f"- {t['target']}: {t['measured']} ({'met' if t['met'] else 'MISSED'})")
    suffix = "".join(f"-{k.lower()}{v}" for k, v in operator_env.items())
    path = recording.new_record(started, f"footprint{suffix}")
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"recorded in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
