"""Benchmark on the real node (hack/realnode.py): kubelet + containerd + runc, the operator running as a pod.

    .venv/bin/python bench/node_bench.py [--sizes 10,50] [--repeats 2] [--execs 200]

1. exec latency through the kubelet: `kubectl exec POD -c CONTAINER -- true`, p50/p99 (the kubectl process included,
   as a script or the seed's loop pays it), and the bare exec round trip of the operator's own client
   (the kubernetes Python client over a websocket, no process start-up).
2. suspend-to-verified for N pods of the kubecf-like StatefulSet (2 process containers + a logs sidecar each):
   ours: `kubectl apply` -> `kubectl wait --for=condition=Ready` -> every containerrun `.running` sentinel checked
   gone; the seed's sequential loop (`kubectl exec` per pod, `echo STOP | nc -w 1 -uU` per socket); a parallel
   script (`xargs -P16 kubectl exec ... ncat --send-only`) plus the same verifying pass. Resume likewise.
   Sentinels are read on the host, in the pods' emptyDir volumes under the kubelet's root: exact and cheap.

Results: a table on stdout and a new bench/results/<date>-node.json (bench/recording.py; with the machine's load before
and after).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
os.environ.setdefault("PROCESSCONTROL_STATE", "/tmp/processcontrol-node-bench")

import recording  # noqa: E402 - bench/ is this script's directory, on sys.path as for any script
from harness import images, realnode  # noqa: E402
from harness.base import kubeconfig_path, state_dir  # noqa: E402
from harness.base import kubectl as admin_kubectl  # noqa: E402
from harness.baselines import Baselines, exec_floor, kube_env  # noqa: E402
from harness.workload import LABEL_INSTANCE_GROUP, PROCESSES, instance_group  # noqa: E402

NAMESPACE = "bench"
GROUP = "bench"
CONTAINER = PROCESSES[0].container
WAIT_S = 600


def say(text: str) -> None:
    print(text, flush=True)


# The seed's nc loop and xargs + ncat, on these pods.
BASELINES = Baselines(NAMESPACE, CONTAINER, report=say)
seed_loop = BASELINES.seed_loop
parallel_script = BASELINES.parallel_script


def kubectl(*args: str, input_text: str | None = None, timeout: float = WAIT_S + 60) -> str:
    return admin_kubectl(*args, input_text=input_text, timeout=timeout).stdout


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


# --- exec latency --------------------------------------------------------------------------------------------------


def exec_latency(pod: str, count: int) -> dict[str, float]:
    """`kubectl exec ... -- true`, one after the other."""
    times = []
    for _ in range(count):
        began = time.monotonic()
        subprocess.run(
            ["kubectl", "exec", "-n", NAMESPACE, pod, "-c", CONTAINER, "--", "true"],
            env=kube_env(),
            check=True,
            capture_output=True,
            timeout=60,
        )
        times.append(time.monotonic() - began)
    return {"n": count, "p50_s": percentile(times, 0.5), "p99_s": percentile(times, 0.99), "max_s": max(times)}


def client_exec_latency(pod: str, count: int) -> dict[str, float]:
    """The kubernetes Python client's exec (the operator's transport): websocket round trip, no process start."""
    from kubernetes import client, config
    from kubernetes.stream import stream

    config.load_kube_config(str(kubeconfig_path()))  # type: ignore[no-untyped-call]
    api = client.CoreV1Api()
    times = []
    for _ in range(count):
        began = time.monotonic()
        stream(
            api.connect_get_namespaced_pod_exec,
            pod,
            NAMESPACE,
            container=CONTAINER,
            command=["true"],
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
        )
        times.append(time.monotonic() - began)
    return {"n": count, "p50_s": percentile(times, 0.5), "p99_s": percentile(times, 0.99), "max_s": max(times)}


def operator_execs() -> float | None:
    """The operator pod's execs so far, from its Prometheus metrics on the pod IP (port 9090, the default);
    None when they cannot be read."""
    try:
        ip = kubectl(
            "get", "pods", "-n", "processcontrol-system", "-o", "jsonpath={.items[0].status.podIP}", timeout=30
        ).strip()
        with urllib.request.urlopen(f"http://{ip}:9090/metrics", timeout=10) as answer:
            text = answer.read().decode()
    except Exception:  # an unreachable pod IP only loses this column
        return None
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("processcontrol_exec_seconds_count")
    )


# --- the group and its sentinels -----------------------------------------------------------------------------------


def scale(count: int) -> list[str]:
    """The StatefulSet at `count` replicas, all Ready; its pod names."""
    kubectl("apply", "-f", "-", input_text=json.dumps(instance_group(GROUP, NAMESPACE, count)))
    kubectl("rollout", "status", f"statefulset/{GROUP}", "-n", NAMESPACE, f"--timeout={WAIT_S}s")
    pods = json.loads(kubectl("get", "pods", "-n", NAMESPACE, "-l", f"{LABEL_INSTANCE_GROUP}={GROUP}", "-o", "json"))
    return [
        p["metadata"]["uid"] for p in pods["items"] if p["metadata"]["name"] in {f"{GROUP}-{i}" for i in range(count)}
    ]


def sentinels(node: realnode.RealNode, uids: Sequence[str]) -> list[Path]:
    """Each pod's `.running` files, in its `data` emptyDir on the host."""
    return [
        node.kubelet_root
        / "pods"
        / uid
        / "volumes"
        / "kubernetes.io~empty-dir"
        / "data"
        / p.job
        / f"{p.process}_containerrun.running"
        for uid in uids
        for p in PROCESSES
    ]


def wait_all(paths: Sequence[Path], running: bool, timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.exists() == running for p in paths):
            return time.monotonic()
        time.sleep(0.02)
    left = sum(p.exists() != running for p in paths)
    raise RuntimeError(f"{left} sentinel(s) not {'back' if running else 'gone'} after {timeout:.0f}s")


def suspension(name: str) -> str:
    return json.dumps(
        {
            "apiVersion": "processcontrol.dev/v1alpha1",
            "kind": "ProcessSuspension",
            "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"instanceGroup": GROUP, "reason": "benchmark"},
        }
    )


def ours_once(paths: Sequence[Path], count: int, name: str) -> dict[str, float | None]:
    execs_before = operator_execs()
    began = time.monotonic()
    kubectl("apply", "-f", "-", input_text=suspension(name))
    kubectl("wait", "-n", NAMESPACE, f"psus/{name}", "--for=condition=Ready", f"--timeout={WAIT_S}s")
    ready = time.monotonic()
    still = sum(p.exists() for p in paths)
    stopped = wait_all(paths, running=False)
    summary = json.loads(kubectl("get", "-n", NAMESPACE, f"psus/{name}", "-o", "json"))["status"].get("summary")
    if summary != f"{count}/{count}":
        raise RuntimeError(f"Ready but summary {summary}")
    execs_suspended = operator_execs()
    began_resume = time.monotonic()
    kubectl("delete", "-n", NAMESPACE, f"psus/{name}", f"--timeout={WAIT_S}s")
    deleted = time.monotonic()
    resumed = wait_all(paths, running=True)
    execs_after = operator_execs()
    return {
        "execs_per_pod_suspend": per_pod(execs_before, execs_suspended, count),
        "execs_per_pod_resume": per_pod(execs_suspended, execs_after, count),
        "suspend_s": max(ready, stopped) - began,
        "running_at_ready": still,
        "resume_s": max(deleted, resumed) - began_resume,
    }


def per_pod(before: float | None, after: float | None, count: int) -> float | None:
    return None if before is None or after is None else (after - before) / count


def pod_names(count: int) -> list[str]:
    return [f"{GROUP}-{i}" for i in range(count)]


def baseline_once(
    paths: Sequence[Path], pods: Sequence[str], send: Callable[[Sequence[str], str], None]
) -> dict[str, float]:
    began = time.monotonic()
    send(pods, "STOP")
    done = time.monotonic()
    stopped = wait_all(paths, running=False)
    began_start = time.monotonic()
    send(pods, "START")
    done_start = time.monotonic()
    started = wait_all(paths, running=True)
    return {"suspend_s": max(done, stopped) - began, "resume_s": max(done_start, started) - began_start}


def median(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


def median_or_none(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def cell(value: float | None, suffix: str, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10,50")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--execs", type=int, default=200)
    parser.add_argument("--keep", action="store_true", help="leave the node up")
    parser.add_argument("--name", default="node", help="results file bench/results/<date>-<name>.json")
    parser.add_argument("--floor-repeats", type=int, default=3, help="repeats of the exec floor at each N")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    started = datetime.now(UTC)
    record: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "load_average_start": [round(x, 2) for x in os.getloadavg()]},
        "variant": "node",
    }
    node = realnode.RealNode(state_dir())
    node.check_host()
    subprocess.run(["bash", str(ROOT / "hack" / "build-node.sh")], check=True, capture_output=True)
    built = images.ensure()
    began = time.monotonic()
    node.up([built[name].archive for name in ("pause", "operator", "workload")])
    record["node_up_s"] = round(time.monotonic() - began, 1)
    try:
        kubectl("apply", "-k", str(ROOT / "hack" / "realnode-overlay"))
        kubectl("rollout", "status", "deployment/processcontrol", "-n", "processcontrol-system", "--timeout=180s")
        kubectl("create", "namespace", NAMESPACE)
        scale(1)
        say(f"node up in {record['node_up_s']}s; exec latency, {args.execs} calls ...")
        record["exec_kubectl"] = exec_latency(f"{GROUP}-0", args.execs)
        record["exec_client"] = client_exec_latency(f"{GROUP}-0", args.execs)
        say(f"  kubectl exec true: {record['exec_kubectl']}")
        say(f"  client exec true:  {record['exec_client']}")
        record["sizes"] = {}
        for count in sizes:
            began = time.monotonic()
            uids = scale(count)
            say(f"N={count}: {count} pods Ready in {time.monotonic() - began:.0f}s")
            paths = sentinels(node, uids)
            wait_all(paths, running=True)
            pods = pod_names(count)
            result: dict[str, Any] = {"ours": [], "seed_loop": [], "xargs_ncat": []}
            for i in range(args.repeats):
                result["ours"].append(ours_once(paths, count, f"bench-{count}-{i}"))
                say(f"  ours {result['ours'][-1]}")
            result["xargs_ncat"].append(baseline_once(paths, pods, parallel_script))
            say(f"  xargs+ncat {result['xargs_ncat'][-1]}")
            result["seed_loop"].append(baseline_once(paths, pods, seed_loop))
            say(f"  seed loop {result['seed_loop'][-1]}")
            result["exec_floor_s"] = [exec_floor(NAMESPACE, CONTAINER, pods) for _ in range(args.floor_repeats)]
            say(f"  exec floor {result['exec_floor_s']}")
            result["load_average"] = [round(x, 2) for x in os.getloadavg()]
            record["sizes"][str(count)] = result
    finally:
        record["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        out = recording.new_record(started, args.name)
        out.write_text(json.dumps(record, indent=2) + "\n")
        if not args.keep:
            node.down(quiet=True)
    say("\n| N | suspend: ours (median) | seed loop | xargs+ncat | resume: ours | seed loop | xargs+ncat |")
    say("| --- | --- | --- | --- | --- | --- | --- |")
    for count, result in record["sizes"].items():
        cells = [
            median(result[who], key) for key in ("suspend_s", "resume_s") for who in ("ours", "seed_loop", "xargs_ncat")
        ]
        say(f"| {count} | " + " | ".join(f"{c:.2f} s" for c in cells) + " |")
    say("\n| N | ours suspend | (a) / ours | (b) / ours | exec floor (c) | ours / (c) | execs per pod: stop, start |")
    say("| --- | --- | --- | --- | --- | --- | --- |")
    for count, result in record["sizes"].items():
        ours = median(result["ours"], "suspend_s")
        floor = statistics.median(result["exec_floor_s"]) if result.get("exec_floor_s") else None
        say(
            f"| {count} | {ours:.2f} s | {median(result['seed_loop'], 'suspend_s') / ours:.1f}x "
            f"| {median(result['xargs_ncat'], 'suspend_s') / ours:.1f}x | {cell(floor, ' s')} "
            f"| {cell(None if floor is None else ours / floor, 'x')} "
            f"| {cell(median_or_none(result['ours'], 'execs_per_pod_suspend'), '', 1)}, "
            f"{cell(median_or_none(result['ours'], 'execs_per_pod_resume'), '', 1)} |"
        )
    kc, cl = record["exec_kubectl"], record["exec_client"]
    say(
        f"\nexec through the kubelet: kubectl p50 {kc['p50_s']:.3f} s p99 {kc['p99_s']:.3f} s; "
        f"client p50 {cl['p50_s']:.3f} s p99 {cl['p99_s']:.3f} s"
    )
    say(f"written {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
