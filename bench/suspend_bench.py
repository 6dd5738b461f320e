"""Suspend benchmark: the operator against the seed's `kubectl exec` + `nc` loop, on the same pods, in one run.

    .venv/bin/python bench/suspend_bench.py --quick     # make bench:      N = 10, 50; 3 repeats; 10 restarts
    .venv/bin/python bench/suspend_bench.py --full      # make bench-full: N = 10, 50, 200; 3 repeats; 20 restarts;
                                                        #                  footprint (bench/footprint_bench.py)

On the local control plane (its own state directory, /tmp/processcontrol-bench unless PROCESSCONTROL_STATE says
otherwise) with kwok pods backed by real `containerrun` processes (harness.fakepods), 2 processes per pod:

1. ours: `kubectl apply` of a ProcessSuspension -> `kubectl wait --for=condition=Ready` returns, then every
   `.running` sentinel on the host is checked gone; resume: `kubectl delete` (the finalizer resumes) -> every
   sentinel back. Median and p95 over the repeats.
2. baselines on the same pods: (a) the seed's sequential loop, one `kubectl exec` per pod running
   `for sock in $(find $CONTAINERRUN_BASE_DIR/data -name '*_containerrun.sock'); do echo STOP | nc -w 1 -uU $sock;
   done` (OpenBSD nc), then START the same way; (b) the same through `xargs -P 16 kubectl exec` with
   `ncat --send-only --unixsock --udp`. A baseline's time runs until the loop is done AND every sentinel is gone.
3. drift repair: under a suspension of the whole group, `fakepods.restart_container` (SIGKILL containerrun, start
   it again, bump restartCount) and poll the sentinel: time to running, and to stopped again.
4. (full) operator footprint (bench/footprint_bench.py): RSS and CPU with 1,000 pods watched in all (the real
   ones plus API-only ones), idle, while 100 suspensions (one real pod each) take hold, and idle while they hold.
   At N = 200 the seed loop's STOP runs over every pod but its START is not timed (`--seed-start-max`).
5. containerrun: bench/containerrun_bench.py's STOP-to-SIGTERM latency and 10,000-datagram burst.
6. the exec floor: N execs of `true` into the same pods through the operator's own exec transport at its default
   concurrency (32), the least any exec-based tool can take here; and, from the operator's own metrics
   (`processcontrol_exec_seconds_count`), how many execs each pod cost per suspend and per resume.

The operator runs with default settings (only PROCESSCONTROL_METRICS_PORT is set, by harness.operator).
Results: a table on stdout and a new bench/results/<date>-<variant>.json (bench/recording.py); bench/results/latest.json
and latest.md only with --update-latest (`make bench UPDATE=1`).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# Our own control plane, apart from the e2e tests' and the demo's.
os.environ.setdefault("PROCESSCONTROL_STATE", "/tmp/processcontrol-bench")

import containerrun_bench  # noqa: E402 - bench/ is this script's directory, on sys.path as for any script
import recording  # noqa: E402
from harness import controlplane, fakepods  # noqa: E402
from harness import operator as harness  # noqa: E402 - the operator as a process (was hack/harness.py)
from harness.base import kubectl as admin_kubectl  # noqa: E402
from harness.base import state_dir  # noqa: E402
from harness.baselines import KWOK_DATA, Baselines, exec_floor  # noqa: E402

RESULTS = recording.RESULTS

NAMESPACE = "bench"
GROUP = "bench"
IDLE_NAMESPACE = "bench-idle"
JOBS = fakepods.parse_jobs("pxc-mysql/mysql,pxc-mysql/galera-agent")
CONTAINER = JOBS[0].container
WAIT_TIMEOUT_S = 600


def progress(result: dict[str, float]) -> str:
    return f"suspend {result['suspend_s']:.2f}s, resume {result['resume_s']:.2f}s"


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# The seed's nc loop and xargs + ncat, on these pods.
BASELINES = Baselines(NAMESPACE, CONTAINER, KWOK_DATA, report=say)
seed_loop = BASELINES.seed_loop
parallel_script = BASELINES.parallel_script


def kubectl(*args: str, input_text: str | None = None, timeout: float = WAIT_TIMEOUT_S + 60) -> str:
    """kubectl with the admin kubeconfig; raises with its stderr on failure."""
    return admin_kubectl(*args, input_text=input_text, timeout=timeout).stdout


def percentile(values: Sequence[float], q: float) -> float:
    return containerrun_bench.percentile(list(values), q)


def summary(values: Sequence[float]) -> dict[str, float]:
    return {"p50": statistics.median(values), "p95": percentile(values, 95), "max": max(values), "n": len(values)}


# --- host state ----------------------------------------------------------------------------------------------------


def sentinels(pods: Sequence[str]) -> list[Path]:
    return [fakepods.running_path(NAMESPACE, pod, jp) for pod in pods for jp in JOBS]


def running_count(paths: Sequence[Path]) -> int:
    return sum(1 for p in paths if p.exists())


def wait_all(paths: Sequence[Path], running: bool, timeout: float = 60.0) -> float:
    """Poll the sentinels until all are present (running) or all gone; returns the monotonic time it held."""
    deadline = time.monotonic() + timeout
    want = len(paths) if running else 0
    while True:
        now = time.monotonic()
        if running_count(paths) == want:
            return now
        if now > deadline:
            raise TimeoutError(f"{running_count(paths)}/{len(paths)} processes running, wanted {want}")
        time.sleep(0.01)


def grow_group(count: int) -> list[str]:
    """The instance group with exactly `count` pods (adds the missing ones, a few at a time)."""
    fakepods.ensure_namespace(NAMESPACE)
    existing = sorted(
        (p.name for p in (state_dir() / "pods" / NAMESPACE).glob(f"{GROUP}-*")),
        key=lambda n: int(n.rsplit("-", 1)[1]),
    )
    if len(existing) < count:
        say(f"creating pods {len(existing)}..{count - 1} of {GROUP} (2 containerrun each)")
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            new = list(pool.map(lambda i: fakepods.create_pod(GROUP, NAMESPACE, i, JOBS), range(len(existing), count)))
        for pod in new:
            fakepods.wait_for_sockets(NAMESPACE, pod, JOBS)
        # kwok marks pods Ready in its own time; slow when the machine is loaded.
        kubectl("wait", "-n", NAMESPACE, "--for=condition=Ready", "--timeout=600s", *(f"pod/{p}" for p in new))
    pods = [fakepods.pod_name(GROUP, i) for i in range(count)]
    wait_all(sentinels(pods), running=True)
    return pods


# --- ours ----------------------------------------------------------------------------------------------------------


def suspension(name: str, spec: dict[str, object], namespace: str = NAMESPACE) -> str:
    return json.dumps(
        {
            "apiVersion": "processcontrol.dev/v1alpha1",
            "kind": "ProcessSuspension",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"reason": "benchmark", **spec},
        }
    )


def exec_count(operator: harness.OperatorProcess) -> float:
    """The operator's execs so far, from its Prometheus metrics."""
    with urllib.request.urlopen(operator.metrics_url, timeout=10) as answer:
        text = answer.read().decode()
    return sum(
        float(line.split()[-1]) for line in text.splitlines() if line.startswith("processcontrol_exec_seconds_count")
    )


def ours_once(pods: Sequence[str], name: str, operator: harness.OperatorProcess) -> dict[str, float]:
    """apply -> Ready (then every sentinel gone); delete -> every sentinel back."""
    paths = sentinels(pods)
    execs_before = exec_count(operator)
    began = time.monotonic()
    kubectl("apply", "-f", "-", input_text=suspension(name, {"instanceGroup": GROUP}))
    kubectl("wait", "-n", NAMESPACE, f"psus/{name}", "--for=condition=Ready", f"--timeout={WAIT_TIMEOUT_S}s")
    ready = time.monotonic()
    still = running_count(paths)
    stopped = wait_all(paths, running=False) if still else ready
    obj = json.loads(kubectl("get", "-n", NAMESPACE, f"psus/{name}", "-o", "json"))
    if (
        obj["status"].get("observedGeneration") != obj["metadata"]["generation"]
        or obj["status"].get("summary") != f"{len(pods)}/{len(pods)}"
    ):
        raise RuntimeError(
            f"Ready but status is {obj['status'].get('summary')} / {obj['status'].get('observedGeneration')}"
        )
    execs_suspended = exec_count(operator)
    began_resume = time.monotonic()
    kubectl("delete", "-n", NAMESPACE, f"psus/{name}", f"--timeout={WAIT_TIMEOUT_S}s")
    deleted = time.monotonic()
    resumed = wait_all(paths, running=True)
    return {
        "execs_per_pod_suspend": (execs_suspended - execs_before) / len(pods),
        "execs_per_pod_resume": (exec_count(operator) - execs_suspended) / len(pods),
        "suspend_s": max(ready, stopped) - began,
        "ready_s": ready - began,
        "running_at_ready": still,
        "resume_s": max(deleted, resumed) - began_resume,
        "delete_returned_s": deleted - began_resume,
    }


# --- baselines -----------------------------------------------------------------------------------------------------


def baseline_once(pods: Sequence[str], send: Callable[[Sequence[str], str], None]) -> dict[str, float]:
    """STOP (until the loop is done and every sentinel gone), then START (until every sentinel is back)."""
    paths = sentinels(pods)
    began = time.monotonic()
    send(pods, "STOP")
    done = time.monotonic()
    stopped = wait_all(paths, running=False, timeout=120)
    began_start = time.monotonic()
    send(pods, "START")
    done_start = time.monotonic()
    started = wait_all(paths, running=True, timeout=120)
    return {
        "suspend_s": max(done, stopped) - began,
        "loop_s": done - began,
        "resume_s": max(done_start, started) - began_start,
    }


def seed_stop_only(pods: Sequence[str]) -> dict[str, float]:
    """The seed loop's STOP over every pod, timed as in `baseline_once`; the START that puts things back goes
    through xargs + ncat and is not timed (at N = 200 each seed pass takes about 7 minutes)."""
    paths = sentinels(pods)
    began = time.monotonic()
    seed_loop(pods, "STOP")
    done = time.monotonic()
    stopped = wait_all(paths, running=False, timeout=120)
    parallel_script(pods, "START")
    wait_all(paths, running=True, timeout=120)
    return {"suspend_s": max(done, stopped) - began, "loop_s": done - began}


def uptime() -> str:
    """`uptime`'s line: the load average the machine had (it is shared with other sessions)."""
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


# --- drift ---------------------------------------------------------------------------------------------------------


def drift(pods: Sequence[str], restarts: int) -> dict[str, Any]:
    """Container restarts under a suspension: restart -> process running again -> stopped again."""
    name = "bench-drift"
    kubectl("apply", "-f", "-", input_text=suspension(name, {"instanceGroup": GROUP}))
    kubectl("wait", "-n", NAMESPACE, f"psus/{name}", "--for=condition=Ready", f"--timeout={WAIT_TIMEOUT_S}s")
    wait_all(sentinels(pods), running=False)
    to_running: list[float] = []
    to_stopped: list[float] = []
    running_to_stopped: list[float] = []
    failures = 0
    for i in range(restarts):
        pod, jp = pods[(i * 7) % len(pods)], JOBS[i % len(JOBS)]
        path = fakepods.running_path(NAMESPACE, pod, jp)
        errors: list[BaseException] = []

        def restart(pod: str = pod, jp: fakepods.JobProcess = jp, errors: list[BaseException] = errors) -> None:
            try:
                fakepods.restart_container(NAMESPACE, pod, jp)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=restart)
        began = time.monotonic()
        thread.start()
        seen: float | None = None
        gone: float | None = None
        while time.monotonic() - began < 60:
            exists = path.exists()
            now = time.monotonic()
            if exists and seen is None:
                seen = now
            if seen is not None and not exists:
                gone = now
                break
            time.sleep(0.002)
        thread.join()
        if errors:
            raise RuntimeError(f"restart of {pod} {jp} failed: {errors[0]}")
        if seen is None or gone is None:
            failures += 1
            say(f"  restart {i + 1}: {pod} {jp} not stopped again within 60s")
            continue
        to_running.append(seen - began)
        to_stopped.append(gone - began)
        running_to_stopped.append(gone - seen)
        say(
            f"  restart {i + 1}/{restarts}: {pod} {jp}: running after {seen - began:.2f}s, "
            f"stopped after {gone - began:.2f}s"
        )
        time.sleep(0.5)
    kubectl("delete", "-n", NAMESPACE, f"psus/{name}", f"--timeout={WAIT_TIMEOUT_S}s")
    wait_all(sentinels(pods), running=True)
    return {
        "restarts": restarts,
        "not_repaired": failures,
        "restart_to_stopped_s": summary(to_stopped) if to_stopped else None,
        "restart_to_running_s": summary(to_running) if to_running else None,
        "running_to_stopped_s": summary(running_to_stopped) if running_to_stopped else None,
    }


# --- footprint -----------------------------------------------------------------------------------------------------


def proc_usage(pid: int) -> tuple[float, int, int]:
    """(CPU seconds user+system, RSS bytes, peak RSS bytes) of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return cpu, int(status["VmRSS"].split()[0]) * 1024, int(status["VmHWM"].split()[0]) * 1024


def sample(pid: int, seconds: float) -> dict[str, float]:
    """RSS and CPU of the process over a window."""
    cpu0, _, _ = proc_usage(pid)
    began = time.monotonic()
    rss: list[int] = []
    while time.monotonic() - began < seconds:
        rss.append(proc_usage(pid)[1])
        time.sleep(1)
    cpu1, last, peak = proc_usage(pid)
    wall = time.monotonic() - began
    return {
        "window_s": wall,
        "cpu_percent_of_one_core": 100 * (cpu1 - cpu0) / wall,
        "rss_mb": last / 2**20,
        "rss_max_in_window_mb": max(rss) / 2**20,
        "peak_rss_since_start_mb": peak / 2**20,
    }


def create_idle_pods(count: int) -> None:
    """API-only pods (no containerrun, no Exec) that the operator's pod watch has to hold."""
    fakepods.ensure_namespace(IDLE_NAMESPACE)
    for start in range(0, count, 100):
        items = [fakepods.build_pod("idle", IDLE_NAMESPACE, i, JOBS) for i in range(start, min(count, start + 100))]
        kubectl("apply", "-f", "-", input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))


# --- facts ---------------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    cpu_model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "memory_gb": round(int(meminfo["MemTotal"].split()[0]) / 2**20, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for dist in ("processcontrol", "kopf", "kubernetes"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[dist] = importlib.metadata.version(dist)
    out["kube-apiserver"] = controlplane.K8S_VERSION
    out["etcd"] = controlplane.ETCD_VERSION
    out["kwok"] = controlplane.KWOK_VERSION
    with contextlib.suppress(Exception):
        out["kubectl"] = json.loads(kubectl("version", "--client", "-o", "json"))["clientVersion"]["gitVersion"]
    with contextlib.suppress(Exception):
        query = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", "netcat-openbsd", "ncat"],
            capture_output=True,
            text=True,
            check=False,
        )
        for line in query.stdout.splitlines():
            name, _, version = line.partition(" ")
            out[name] = version
    with contextlib.suppress(Exception):
        out["git"] = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    return out


# --- report --------------------------------------------------------------------------------------------------------


def ratio(theirs: float | None, ours: float) -> float | None:
    return None if theirs is None else theirs / ours


def fmt(value: float | None, suffix: str = "s", digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}{suffix}"


def table(record: dict[str, Any]) -> str:
    lines = [
        "| pods | processes | ours suspend p50 / p95 | ours resume p50 / p95 | seed loop stop / start (a) "
        "| xargs -P16 + ncat stop p50 / p95, start (b) | (a) / ours | (b) / ours "
        "| exec floor (c) | ours / (c) | execs per pod: suspend, resume |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in record["suspend"]:
        lines.append(
            f"| {row['pods']} | {row['processes']} "
            f"| {fmt(row['ours_s'])} / {fmt(row['ours_p95_s'])} "
            f"| {fmt(row['ours_resume_s'])} / {fmt(row['ours_resume_p95_s'])} "
            f"| {fmt(row['seed_loop_s'], digits=1)} / {fmt(row['seed_loop_start_s'], digits=1)} "
            f"| {fmt(row['parallel_script_s'])} / {fmt(row['parallel_script_p95_s'])}, {fmt(row['parallel_start_s'])} "
            f"| {fmt(row['seed_ratio'], 'x', 1)} | {fmt(row['parallel_ratio'], 'x', 1)} "
            f"| {fmt(row.get('exec_floor_s'))} | {fmt(row.get('floor_ratio'), 'x', 2)} "
            f"| {fmt(row.get('execs_per_pod_suspend'), '', 1)}, {fmt(row.get('execs_per_pod_resume'), '', 1)} |"
        )
    untimed = [str(row["pods"]) for row in record["suspend"] if row["seed_loop_s"] and not row["seed_loop_start_s"]]
    if untimed:
        lines += [
            "",
            f"At N = {', '.join(untimed)} the seed loop's STOP is measured over every pod; its START was not timed "
            "(the processes were started again with xargs + ncat).",
        ]
    drift_result = record.get("drift")
    if drift_result and drift_result["restart_to_stopped_s"]:
        d, r = drift_result["restart_to_stopped_s"], drift_result["running_to_stopped_s"]
        lines += [
            "",
            f"Drift repair ({drift_result['restarts']} container restarts, {drift_result['pods']} pods under one "
            f"suspension, {drift_result['not_repaired']} not repaired): restart -> stopped again p50 "
            f"{d['p50']:.2f}s, p95 {d['p95']:.2f}s, max {d['max']:.2f}s; process running -> stopped again "
            f"p50 {r['p50']:.2f}s, p95 {r['p95']:.2f}s.",
        ]
    fp = record.get("footprint")
    if fp:
        import footprint_bench  # it imports this module

        lines += ["", footprint_bench.describe(fp)]
    cr = record.get("containerrun")
    if cr:
        term, burst = cr["stop_to_sigterm_ms"], cr["burst"]
        lines += [
            "",
            f"containerrun (ours): STOP -> SIGTERM p50 {term['p50']:.2f} ms, "
            f"p99 {term['p99']:.2f} ms over {cr['rounds']} rounds; burst: {burst['lost']} of {burst['sent']} lost.",
        ]
    lines += ["", "| target | measured | met |", "| --- | --- | --- |"]
    for t in record["targets"]:
        lines.append(f"| {t['target']} | {t['measured']} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines)


def targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    row = next((r for r in record["suspend"] if r["pods"] == 50), None)
    if row:
        if row["seed_ratio"] is not None:
            out.append(
                {
                    "target": "N=50: >= 100x faster than the seed loop",
                    "measured": f"{row['seed_ratio']:.1f}x",
                    "met": row["seed_ratio"] >= 100,
                }
            )
        out.append(
            {
                "target": "N=50: >= 3x faster than xargs -P16 + ncat",
                "measured": f"{row['parallel_ratio']:.1f}x",
                "met": row["parallel_ratio"] >= 3,
            }
        )
    for row in record["suspend"]:
        if row["pods"] in (50, 200):
            out.append(
                {
                    "target": f"N={row['pods']}: within 1.5x of the exec floor (N execs of `true`, same transport)",
                    "measured": f"{row['floor_ratio']:.2f}x",
                    "met": row["floor_ratio"] <= 1.5,
                }
            )
    d = record.get("drift")
    if d and d["restart_to_stopped_s"]:
        p95 = d["restart_to_stopped_s"]["p95"]
        out.append(
            {
                "target": "drift repair p95 <= 2 s (from the restart)",
                "measured": f"{p95:.2f}s",
                "met": p95 <= 2 and d["not_repaired"] == 0,
            }
        )
    fp = record.get("footprint")
    if fp:
        out += fp["targets"]
    cr = record.get("containerrun")
    if cr:
        p99, lost = cr["stop_to_sigterm_ms"]["p99"], cr["burst"]["lost"]
        out.append(
            {
                "target": "containerrun STOP->SIGTERM p99 <= 5 ms, 0 of 10,000 lost",
                "measured": f"{p99:.2f} ms, {lost} lost",
                "met": p99 <= 5 and lost == 0,
            }
        )
    return out


def run_containerrun(rounds: int, burst: int) -> dict[str, Any]:
    impl = containerrun_bench.IMPLEMENTATIONS[0]
    to_term, to_gone = containerrun_bench.measure_latency(impl, rounds)
    return {
        "implementation": impl.name,
        "rounds": rounds,
        "stop_to_sigterm_ms": {"p50": percentile(to_term, 50) * 1e3, "p99": percentile(to_term, 99) * 1e3},
        "stop_to_gone_ms": {"p50": percentile(to_gone, 50) * 1e3, "p99": percentile(to_gone, 99) * 1e3},
        "burst": containerrun_bench.measure_burst(impl, burst),
        "go_original": "measured side by side by bench/containerrun_bench.py (bench/results/containerrun.json)",
    }


def checkpoint(record: dict[str, Any], path: Path) -> None:
    """What is measured so far, so that a run cut short still leaves its numbers (marked partial)."""
    partial = {**record, "partial": True}
    path.write_text(json.dumps(partial, indent=2) + "\n")


# --- main ----------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    variant = parser.add_mutually_exclusive_group()
    variant.add_argument("--quick", action="store_const", dest="variant", const="quick", help="make bench (default)")
    variant.add_argument("--full", action="store_const", dest="variant", const="full", help="make bench-full")
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], help="pod counts, e.g. 10,50")
    parser.add_argument("--repeats", type=int, help="repeats of ours and of (b)")
    parser.add_argument("--seed-repeats", type=int, default=1, help="repeats of the seed loop (a), slow")
    parser.add_argument(
        "--seed-start-max",
        type=int,
        default=50,
        help="time the seed loop's START only up to this many pods (above: its STOP over every pod, START untimed)",
    )
    parser.add_argument("--restarts", type=int, help="container restarts for drift repair")
    parser.add_argument("--no-footprint", action="store_true")
    parser.add_argument("--keep", action="store_true", help="leave the control plane and the pods up")
    parser.add_argument(
        "--update-latest", action="store_true", help="also replace the committed results/latest.json and latest.md"
    )
    args = parser.parse_args()
    full = args.variant == "full"
    variant_name = args.variant or "quick"
    sizes = args.sizes or ([10, 50, 200] if full else [10, 50])
    # The full run keeps the quick run's 3 repeats so that it stays under ~40 minutes on 2 cores.
    repeats = args.repeats or 3
    restarts = args.restarts or (20 if full else 10)

    started = datetime.now(UTC)
    dated = recording.new_record(started, variant_name)
    record: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "variant": variant_name,
        "machine": machine(),
        "settings": "operator defaults (docs/configuration.md); PROCESSCONTROL_METRICS_PORT set by harness.operator",
        "processes_per_pod": len(JOBS),
        "suspend": [],
    }
    record["machine"]["uptime_start"] = uptime()
    say(
        f"{variant_name}: sizes {sizes}, {repeats} repeats, seed loop {args.seed_repeats}x, {restarts} restarts; "
        f"load {record['machine']['load_average_start']}"
    )
    harness.ensure_control_plane()
    harness.install()
    record["versions"] = versions()
    operator = harness.OperatorProcess(harness.service_account_kubeconfig())
    try:
        operator.start()
        assert operator.process is not None
        say(f"operator pid {operator.process.pid}, log {operator.log_path}")
        pods: list[str] = []
        for n in sizes:
            pods = grow_group(n)
            ours = []
            for r in range(repeats):
                ours.append(ours_once(pods, f"bench-n{n}-r{r}", operator))
                say(f"N={n} ours {r + 1}/{repeats}: {progress(ours[-1])}")
            parallel = []
            for r in range(repeats):
                parallel.append(baseline_once(pods, parallel_script))
                say(f"N={n} xargs+ncat {r + 1}/{repeats}: {progress(parallel[-1])}")
            seed = []
            if n <= 50 or full:
                for r in range(args.seed_repeats):
                    if n <= args.seed_start_max:
                        seed.append(baseline_once(pods, seed_loop))
                        say(f"N={n} seed loop {r + 1}/{args.seed_repeats}: {progress(seed[-1])}")
                    else:
                        seed.append(seed_stop_only(pods))
                        say(f"N={n} seed loop STOP {r + 1}/{args.seed_repeats}: {seed[-1]['suspend_s']:.1f}s")
            floors = [exec_floor(NAMESPACE, CONTAINER, pods) for _ in range(repeats)]
            say(f"N={n} exec floor: {', '.join(f'{f:.2f}s' for f in floors)}")
            ours_s = statistics.median(o["suspend_s"] for o in ours)
            seed_s = statistics.median(s["suspend_s"] for s in seed) if seed else None
            parallel_s = statistics.median(p["suspend_s"] for p in parallel)
            record["suspend"].append(
                {
                    "pods": n,
                    "processes": n * len(JOBS),
                    "ours_s": ours_s,
                    "ours_p95_s": percentile([o["suspend_s"] for o in ours], 95),
                    "ours_resume_s": statistics.median(o["resume_s"] for o in ours),
                    "ours_resume_p95_s": percentile([o["resume_s"] for o in ours], 95),
                    "seed_loop_s": seed_s,
                    "seed_loop_start_s": (
                        statistics.median(s["resume_s"] for s in seed) if seed and "resume_s" in seed[0] else None
                    ),
                    "parallel_script_s": parallel_s,
                    "parallel_script_p95_s": percentile([p["suspend_s"] for p in parallel], 95),
                    "parallel_start_s": statistics.median(p["resume_s"] for p in parallel),
                    "seed_ratio": ratio(seed_s, ours_s),
                    "parallel_ratio": ratio(parallel_s, ours_s),
                    "exec_floor_s": statistics.median(floors),
                    "floor_ratio": ours_s / statistics.median(floors),
                    "execs_per_pod_suspend": statistics.median(o["execs_per_pod_suspend"] for o in ours),
                    "execs_per_pod_resume": statistics.median(o["execs_per_pod_resume"] for o in ours),
                    "repeats": {"ours": repeats, "parallel_script": repeats, "seed_loop": len(seed)},
                    "samples": {"ours": ours, "parallel_script": parallel, "seed_loop": seed},
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                }
            )
            checkpoint(record, dated)
        say(f"drift repair: {restarts} container restarts under a suspension of {len(pods)} pods")
        record["drift"] = {"pods": len(pods), **drift(pods, restarts)}
        checkpoint(record, dated)
        if full and not args.no_footprint:
            import footprint_bench  # it imports this module

            if len(pods) < 100:
                pods = grow_group(100)
            # 1,000 pods watched in all: the real ones of the group plus API-only ones.
            record["footprint"] = footprint_bench.measure(operator, pods, 1000, 100, 60)
            checkpoint(record, dated)
        say("containerrun: 200 STOP/START rounds, 10,000-datagram burst")
        record["containerrun"] = run_containerrun(200, 10_000)
    finally:
        record["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        record["machine"]["uptime_end"] = uptime()
        with contextlib.suppress(Exception):
            kubectl("delete", "psus", "--all", "-n", NAMESPACE, "--timeout=120s")
        operator.stop()
        if not args.keep:
            say(f"stopped {fakepods.stop_all_host_processes()} containerrun processes")
            controlplane.main(["down"])
    record["duration_s"] = (datetime.now(UTC) - started).total_seconds()
    record["targets"] = targets(record)
    text = table(record)
    print(text)
    dated.write_text(json.dumps(record, indent=2) + "\n")
    if args.update_latest:
        (RESULTS / "latest.json").write_text(json.dumps(record, indent=2) + "\n")
        m = record["machine"]
        header = (
            f"# Benchmark results ({variant_name}, {record['date']})\n\n"
            f"Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, load average {m['load_average_start']} at "
            f"start, {m['load_average_end']} at end (shared with other test runs). Versions: "
            + ", ".join(f"{k} {v}" for k, v in record["versions"].items())
            + f". Run took {record['duration_s'] / 60:.0f} min.\n\nSeconds; ours = `kubectl apply` -> `kubectl wait "
            "--for=condition=Ready` with every `.running` sentinel gone; resume = `kubectl delete` -> every sentinel "
            "back. (a) and (b) count until the loop is done and every sentinel is gone.\n\n"
        )
        (RESULTS / "latest.md").write_text(header + text + "\n")
    print(f"recorded in {dated}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
