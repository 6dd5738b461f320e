"""Where a suspension's time goes: py-spy over the operator during suspend + resume of the benchmark's pods.

    .venv/bin/python bench/suspend_bench.py --full --keep     # leaves the control plane and the pods up
    pip install --target /tmp/pyspy py-spy                    # py-spy is not a project dependency
    .venv/bin/python bench/profile_suspend.py --pods 50 --py-spy /tmp/pyspy/bin/py-spy

Starts its own operator (default settings), suspends the first N pods of the benchmark group (a selector on the
pod ordinal), resumes them by deletion, and prints: the operator's CPU seconds against the wall time, the exec
count and time from its metrics, and py-spy's hottest functions (on-CPU samples, by own and by total time).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import suspend_bench as sb  # sets PROCESSCONTROL_STATE (bench/ is this script's directory, on sys.path)
from harness import fakepods
from harness import operator as harness  # the operator as a process


def metric_sums(url: str) -> dict[str, float]:
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    out: dict[str, float] = collections.defaultdict(float)
    for line in text.splitlines():
        match = re.match(r"(processcontrol_exec_seconds_(?:sum|count))\S* (\S+)", line)
        if match:
            out[match.group(1)] += float(match.group(2))
    return dict(out)


def top(collapsed: Path, limit: int = 25) -> str:
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        n = int(count)
        samples += n
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"{samples} on-CPU samples", "", "own time:"]
    lines += [f"  {100 * n / samples:5.1f}%  {f}" for f, n in own.most_common(limit)]
    lines += ["", "total time (incl. callees):"]
    lines += [f"  {100 * n / samples:5.1f}%  {f}" for f, n in total.most_common(limit)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--py-spy", default="py-spy")
    parser.add_argument("--out", type=Path, default=Path("/tmp/processcontrol-profile.txt"))
    args = parser.parse_args()
    pods = [fakepods.pod_name(sb.GROUP, i) for i in range(args.pods)]
    paths = sb.sentinels(pods)
    sb.wait_all(paths, running=True)
    operator = harness.OperatorProcess(harness.service_account_kubeconfig()).start()
    assert operator.process is not None
    pid = operator.process.pid
    name = "bench-profile"
    selector = {
        "matchLabels": {fakepods.LABEL_INSTANCE_GROUP: sb.GROUP},
        "matchExpressions": [
            {"key": fakepods.LABEL_POD_ORDINAL, "operator": "In", "values": [str(i) for i in range(args.pods)]}
        ],
    }
    collapsed = args.out.with_suffix(".collapsed")
    try:
        time.sleep(3)
        spy = subprocess.Popen(
            [args.py_spy, "record", "--pid", str(pid), "--rate", "200", "--format", "raw", "-o", str(collapsed)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
        cpu0 = sb.proc_usage(pid)[0]
        metrics0 = metric_sums(operator.metrics_url)
        began = time.monotonic()
        sb.kubectl("apply", "-f", "-", input_text=sb.suspension(name, {"selector": selector}))
        sb.kubectl("wait", "-n", sb.NAMESPACE, f"psus/{name}", "--for=condition=Ready", "--timeout=600s")
        ready = time.monotonic() - began
        cpu1 = sb.proc_usage(pid)[0]
        metrics1 = metric_sums(operator.metrics_url)
        sb.wait_all(paths, running=False)
        began_resume = time.monotonic()
        sb.kubectl("delete", "-n", sb.NAMESPACE, f"psus/{name}", "--timeout=600s")
        sb.wait_all(paths, running=True)
        resumed = time.monotonic() - began_resume
        cpu2 = sb.proc_usage(pid)[0]
        metrics2 = metric_sums(operator.metrics_url)
        spy.send_signal(2)
        spy.wait(30)
    finally:
        operator.stop()
    count = "processcontrol_exec_seconds_count"
    total = "processcontrol_exec_seconds_sum"
    report = [
        f"{args.pods} pods x 2 processes; load average {[round(x, 2) for x in __import__('os').getloadavg()]}",
        f"suspend: {ready:.2f}s wall, operator CPU {cpu1 - cpu0:.2f}s, "
        f"{metrics1.get(count, 0) - metrics0.get(count, 0):.0f} execs, "
        f"{metrics1.get(total, 0) - metrics0.get(total, 0):.1f} exec-seconds",
        f"resume:  {resumed:.2f}s wall, operator CPU {cpu2 - cpu1:.2f}s, "
        f"{metrics2.get(count, 0) - metrics1.get(count, 0):.0f} execs, "
        f"{metrics2.get(total, 0) - metrics1.get(total, 0):.1f} exec-seconds",
        "",
        top(collapsed) if collapsed.exists() else "(no py-spy output)",
    ]
    text = "\n".join(report)
    print(text)
    args.out.write_text(text + "\n")
    print(json.dumps({"profile": str(args.out), "collapsed": str(collapsed)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
