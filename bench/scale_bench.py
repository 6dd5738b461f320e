"""Scale benchmark (issue 26): one suspension of N pods, N up to 10,000, with every part real but the supervisors.

    .venv/bin/python bench/scale_bench.py                      # make bench-scale: N = 1,000, 2,000, 5,000, 10,000
    .venv/bin/python bench/scale_bench.py --pods 1000,2000     # a shorter curve
    .venv/bin/python bench/scale_bench.py --check 20           # the simulator against real containerrun, N = 20
    .venv/bin/python bench/scale_bench.py --pods 5000 --baseline f2ac92b   # and an earlier build, in the same run

The local control plane (its own state directory, /tmp/processcontrol-scale unless PROCESSCONTROL_STATE says
otherwise), kwok pods of harness.fakepods' kubecf layout (2 processes each), the real operator (default settings,
its own ServiceAccount) and the real in-pod script, run by kwok on this host for every exec. Only the process
supervisors are simulated: one harness.simpods process serves every pod's containerrun sockets and files.

For each N, in one instance group that grows from the previous N, a fresh operator (with `--baseline`, the
baseline's first, then this tree's; both under this tree's CRD):

0. start: a ProcessSuspension that targets nothing -> its status written (`operator_started_s`; kopf handles
   nothing before it has indexed every object it listed, which grows faster than N);
1. suspend: `kubectl apply` of one ProcessSuspension selecting the group -> its Ready condition True with summary
   N/N, and every `.running` sentinel on the host gone ("all verified");
2. resume: `kubectl delete` -> the object gone and every sentinel back;
3. per phase: the operator's CPU seconds and RSS (/proc, sampled every 0.5 s), its execs (processcontrol_exec_seconds)
   and exec concurrency (the high-water mark of processcontrol_execs_in_flight, and the most execs seen waiting
   for a slot), API requests by verb (kube-apiserver's apiserver_request_total before and after: every client's,
   the operator's are most; the bench's own polls are a handful), watch events sent (apiserver_watch_events_total);
4. sizes: the suspension's status (JSON bytes) at Ready, the hold ledger annotation of every 100th pod.

5. watch lag: from the API server's answer to each ledger write to that pod version's event reaching the
   operator's handlers (its processcontrol_watch_lag_seconds): the mean, and the bucket its 99th percentile is in.

`--check N`: N pods backed by real containerrun processes and N simulated pods, the same suspend/resume
alternately (3 repeats each): the end state of both (status summary and counts, sentinels, pid files, the hold
ledger's shape) must match and the times are printed side by side.

Prints a table and writes bench/results/<date>-scale.json (or -scale-check.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
os.environ.setdefault("PROCESSCONTROL_STATE", "/tmp/processcontrol-scale")

import ab_bench  # noqa: E402 - bench/ is this script's directory, on sys.path as for any script
import recording  # noqa: E402
import suspend_bench as sb  # noqa: E402
from harness import controlplane, fakepods, simpods  # noqa: E402
from harness import operator as harness  # noqa: E402
from harness.base import state_dir  # noqa: E402

NAMESPACE = "scale"
GROUP = "scale"
JOBS = sb.JOBS
SERVER = "scale"
DEFAULT_SIZES = [1000, 2000, 5000, 10000]
TIMEOUT_S = 3600.0
MB = 2**20
HOLDS = "processcontrol.dev/holds"


def say(text: str) -> None:
    sb.say(text)


# --- the API server ------------------------------------------------------------------------------------------------


def api_get(path: str, timeout: float = 60.0) -> tuple[int, str]:
    """GET on kube-apiserver as its admin (the client certificate of the control plane)."""
    cp = controlplane.ControlPlane(state_dir())
    ports = cp.ports()
    assert ports is not None, "the control plane is not up"
    return controlplane.https_get(f"https://{ports.address}:{ports.apiserver}{path}", cp.pki, timeout=timeout)


METRIC = re.compile(r"^(\w+)\{(.*)\} (\S+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


def metric_lines(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        m = METRIC.match(line)
        if m and m.group(1) == name:
            out.append((dict(LABEL.findall(m.group(2))), float(m.group(3))))
    return out


def apiserver_counts() -> dict[str, dict[str, float]]:
    """apiserver_request_total by verb and by verb/resource/subresource; watch events by kind."""
    code, text = api_get("/metrics")
    assert code == 200, f"GET /metrics: {code}"
    by_verb: dict[str, float] = {}
    by_resource: dict[str, float] = {}
    for labels, value in metric_lines(text, "apiserver_request_total"):
        by_verb[labels.get("verb", "")] = by_verb.get(labels.get("verb", ""), 0) + value
        key = f"{labels.get('verb')} {labels.get('resource')}" + (
            f"/{labels['subresource']}" if labels.get("subresource") else ""
        )
        by_resource[key] = by_resource.get(key, 0) + value
    watch: dict[str, float] = {}
    for labels, value in metric_lines(text, "apiserver_watch_events_total"):
        kind = labels.get("kind", labels.get("resource", ""))
        watch[kind] = watch.get(kind, 0) + value
    return {"verb": by_verb, "resource": by_resource, "watch_events": watch}


def diff(after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {
        part: {k: v - before[part].get(k, 0) for k, v in sorted(values.items()) if v - before[part].get(k, 0) > 0}
        for part, values in after.items()
    }


# --- the operator --------------------------------------------------------------------------------------------------


def phase_costs(
    op0: dict[str, float], op1: dict[str, float], api0: dict[str, dict[str, float]], api1: dict[str, dict[str, float]]
) -> dict[str, Any]:
    """What one phase cost between two readings of the operator's and the API server's metrics."""
    return {
        "execs": op1.get("processcontrol_exec_seconds_count", 0) - op0.get("processcontrol_exec_seconds_count", 0),
        "exec_seconds": op1.get("processcontrol_exec_seconds_sum", 0) - op0.get("processcontrol_exec_seconds_sum", 0),
        "execs_in_flight_max": op1.get("processcontrol_execs_in_flight_max", 0),
        "go_aheads_late": op1.get(GO_AHEADS_LATE, 0) - op0.get(GO_AHEADS_LATE, 0),
        "watch_lag": watch_lag(op0, op1),
        "api": diff(api1, api0),
    }


def watch_lag(op0: dict[str, float], op1: dict[str, float]) -> dict[str, float]:
    """The operator's watch lag over a phase: events observed, their mean, and the upper bound of the histogram
    bucket the 99th percentile falls in (inf: above the largest bucket)."""
    count = op1.get(f"{WATCH_LAG}_count", 0) - op0.get(f"{WATCH_LAG}_count", 0)
    total = op1.get(f"{WATCH_LAG}_sum", 0) - op0.get(f"{WATCH_LAG}_sum", 0)
    bounds = sorted(
        (float(key.split('le="', 1)[1].rstrip('"}')), op1[key] - op0.get(key, 0))
        for key in op1
        if key.startswith(f"{WATCH_LAG}_bucket")
    )
    p99 = next((bound for bound, below in bounds if below >= 0.99 * count), float("inf")) if count else 0.0
    return {"events": count, "mean_s": total / count if count else 0.0, "p99_le_s": p99}


WATCH_LAG = "processcontrol_watch_lag_seconds"
GO_AHEADS_LATE = "processcontrol_go_aheads_late_total"


def operator_metrics(operator: harness.OperatorProcess) -> dict[str, float]:
    with urllib.request.urlopen(operator.metrics_url, timeout=10) as answer:
        text = answer.read().decode()
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, _, value = line.rpartition(" ")
        key = name.split("{", 1)[0]
        if key in (
            "processcontrol_exec_seconds_count",
            "processcontrol_exec_seconds_sum",
            "processcontrol_execs_in_flight",
            "processcontrol_execs_in_flight_max",
            "processcontrol_execs_waiting",
            GO_AHEADS_LATE,
        ):
            values[key] = values.get(key, 0.0) + float(value)
        elif key == "processcontrol_exec_failures_total" or key.startswith(WATCH_LAG):
            values[name] = float(value)
    return values


class Sampler(threading.Thread):
    """The operator's CPU and RSS from /proc, and its exec gauges, every `interval` seconds until stopped."""

    def __init__(self, operator: harness.OperatorProcess, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        assert operator.process is not None
        self.operator = operator
        self.pid = operator.process.pid
        self.interval = interval
        self.samples: list[tuple[float, float, int]] = []
        self.in_flight_max = 0.0
        self.waiting_max = 0.0
        self.done = threading.Event()

    def _sample(self) -> None:
        cpu, rss, _ = sb.proc_usage(self.pid)
        self.samples.append((time.monotonic(), cpu, rss))
        with contextlib.suppress(OSError):
            m = operator_metrics(self.operator)
            self.in_flight_max = max(self.in_flight_max, m.get("processcontrol_execs_in_flight", 0.0))
            self.waiting_max = max(self.waiting_max, m.get("processcontrol_execs_waiting", 0.0))

    def run(self) -> None:
        while True:
            self._sample()
            if self.done.wait(self.interval):
                self._sample()
                return

    def stop(self) -> dict[str, float]:
        self.done.set()
        self.join()
        first, last = self.samples[0], self.samples[-1]
        return {
            "cpu_s": last[1] - first[1],
            "rss_max_mb": max(s[2] for s in self.samples) / MB,
            "rss_end_mb": last[2] / MB,
            "execs_in_flight_max_sampled": self.in_flight_max,
            "execs_waiting_max_sampled": self.waiting_max,
        }


# --- host state ----------------------------------------------------------------------------------------------------


def sentinels(namespace: str, pods: Sequence[str]) -> list[Path]:
    return [fakepods.running_path(namespace, pod, jp) for pod in pods for jp in JOBS]


def wait_sentinels(paths: Sequence[Path], running: bool, timeout: float) -> float:
    """Until every sentinel is there (running) or gone; the monotonic time it held. Only the pending ones are
    looked at again, every 0.1 s."""
    pending = list(paths)
    deadline = time.monotonic() + timeout
    while True:
        pending = [p for p in pending if p.exists() != running]
        now = time.monotonic()
        if not pending:
            return now
        if now > deadline:
            raise TimeoutError(f"{len(pending)}/{len(paths)} sentinels not {'there' if running else 'gone'}")
        time.sleep(0.1)


def wait_pods_running(namespace: str, count: int, timeout: float = 1800) -> None:
    """Until kwok has `count` pods of the namespace Running (one list per 5 s: it is large)."""
    deadline = time.monotonic() + timeout
    while True:
        out = sb.kubectl("get", "pods", "-n", namespace, "--no-headers", "-o", "custom-columns=P:.status.phase")
        running = sum(1 for line in out.split() if line == "Running")
        if running >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{running}/{count} pods Running in {namespace}")
        say(f"  {running}/{count} pods Running")
        time.sleep(5)


def grow(count: int, have: int) -> list[str]:
    """The group with `count` simulated pods (creates have..count-1), the server serving all of them."""
    if count > have:
        say(f"creating pods {have}..{count - 1} (kubectl create, {simpods.CREATE_CHUNK} a call)")
        began = time.monotonic()
        simpods.create_pods(GROUP, NAMESPACE, range(have, count), JOBS)
        say(f"  created in {time.monotonic() - began:.0f}s; waiting for kwok to run them")
        wait_pods_running(NAMESPACE, count)
        say(f"  all Running {time.monotonic() - began:.0f}s after the first create")
    pods = [fakepods.pod_name(GROUP, i) for i in range(count)]
    began = time.monotonic()
    simpods.start_server(SERVER, simpods.endpoints_of(NAMESPACE, pods, JOBS))
    say(f"  simpods serving {count * len(JOBS)} sockets ({time.monotonic() - began:.1f}s to bind)")
    return pods


# --- one suspension ------------------------------------------------------------------------------------------------


def get_suspension(namespace: str, name: str) -> dict[str, Any] | None:
    code, body = api_get(f"/apis/processcontrol.dev/v1alpha1/namespaces/{namespace}/processsuspensions/{name}")
    if code == 404:
        return None
    assert code == 200, f"GET psus {name}: {code} {body[:200]}"
    result: dict[str, Any] = json.loads(body)
    return result


def ready(obj: dict[str, Any] | None, count: int) -> bool:
    if obj is None:
        return False
    status = obj.get("status") or {}
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions", [])}
    return (
        conditions.get("Ready") == "True"
        and status.get("summary") == f"{count}/{count}"
        and status.get("observedGeneration") == obj["metadata"]["generation"]
    )


def ledger_sizes(namespace: str, pods: Sequence[str]) -> dict[str, float]:
    """The hold ledger annotation of every 100th pod (at least 10 pods), in bytes."""
    step = max(1, min(100, len(pods) // 10))
    sizes = []
    for pod in pods[::step]:
        code, body = api_get(f"/api/v1/namespaces/{namespace}/pods/{pod}")
        assert code == 200
        annotations = json.loads(body)["metadata"].get("annotations") or {}
        sizes.append(len(annotations.get(HOLDS, "")))
    return {"sampled": len(sizes), "mean_bytes": statistics.mean(sizes), "max_bytes": max(sizes)}


def suspend_resume(
    operator: harness.OperatorProcess, namespace: str, group: str, pods: Sequence[str], name: str
) -> dict[str, Any]:
    """One suspension of the group: apply -> all verified; delete -> all running again. Everything measured."""
    paths = sentinels(namespace, pods)
    count = len(pods)
    result: dict[str, Any] = {"pods": count, "processes": len(paths)}
    assert operator.process is not None

    api0, op0 = apiserver_counts(), operator_metrics(operator)
    sampler = Sampler(operator)
    sampler.start()
    began = time.monotonic()
    sb.kubectl("apply", "-f", "-", input_text=sb.suspension(name, {"instanceGroup": group}, namespace))
    polls = 0
    while True:
        obj = get_suspension(namespace, name)
        polls += 1
        if ready(obj, count):
            break
        if time.monotonic() - began > TIMEOUT_S:
            raise TimeoutError(f"{name}: not Ready after {TIMEOUT_S:.0f}s: {(obj or {}).get('status', {})}")
        time.sleep(0.5)
    ready_at = time.monotonic()
    stopped_at = wait_sentinels(paths, running=False, timeout=600)
    assert obj is not None
    usage = sampler.stop()
    api1, op1 = apiserver_counts(), operator_metrics(operator)
    result["suspend"] = {
        "all_verified_s": max(ready_at, stopped_at) - began,
        "ready_s": ready_at - began,
        **usage,
        **phase_costs(op0, op1, api0, api1),
        "bench_polls": polls,
        "status_bytes": len(json.dumps(obj["status"], separators=(",", ":"))),
        "status_pods_listed": len(obj["status"].get("pods", [])),
        "counts": obj["status"].get("counts"),
    }
    result["ledger"] = ledger_sizes(namespace, pods)
    # Between the phases, what the end state is: every process stopped, every pod's ledger holding.
    result["end_state_suspended"] = end_state(namespace, pods, obj)
    time.sleep(2)

    api0, op0 = api1, op1
    sampler = Sampler(operator)
    sampler.start()
    began = time.monotonic()
    sb.kubectl("delete", "-n", namespace, f"psus/{name}", "--wait=false")
    polls = 0
    while get_suspension(namespace, name) is not None:
        polls += 1
        if time.monotonic() - began > TIMEOUT_S:
            raise TimeoutError(f"{name}: still there {TIMEOUT_S:.0f}s after the delete")
        time.sleep(0.5)
    gone_at = time.monotonic()
    running_at = wait_sentinels(paths, running=True, timeout=600)
    usage = sampler.stop()
    api1, op1 = apiserver_counts(), operator_metrics(operator)
    result["resume"] = {
        "all_verified_s": max(gone_at, running_at) - began,
        "deleted_s": gone_at - began,
        **usage,
        **phase_costs(op0, op1, api0, api1),
        "bench_polls": polls,
    }
    result["exec_failures"] = {k: v for k, v in op1.items() if k.startswith("processcontrol_exec_failures_total")}
    return result


def end_state(namespace: str, pods: Sequence[str], obj: dict[str, Any]) -> dict[str, Any]:
    """What a suspension left: sentinels, pid files, its counts and summary (comparable across backends)."""
    running = sum(1 for p in sentinels(namespace, pods) if p.exists())
    pid_files = sum(1 for pod in pods for jp in JOBS if fakepods.pid_path(namespace, pod, jp).exists())
    status = obj.get("status") or {}
    return {
        "running": running,
        "pid_files": pid_files,
        "summary": status.get("summary"),
        "counts": status.get("counts"),
        "conditions": sorted((c["type"], c["status"]) for c in status.get("conditions", [])),
    }


def ledger_shape(namespace: str, pod: str) -> Any:
    """The hold ledger of one pod with numbers, times and names blanked: what must match across backends."""
    code, body = api_get(f"/api/v1/namespaces/{namespace}/pods/{pod}")
    assert code == 200
    raw = (json.loads(body)["metadata"].get("annotations") or {}).get(HOLDS)

    def blank(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: blank(v) for k, v in sorted(value.items())}
        if isinstance(value, list):
            return [blank(v) for v in value]
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return 0
        if isinstance(value, str) and re.match(r"^\d{4}-\d\d-\d\dT", value):
            return "T"
        return value

    if not raw:
        return None
    ledger = json.loads(raw)
    # Hold keys are the suspensions' uids and holders list them: the same shape has other uids.
    uids = {uid: f"hold{i}" for i, uid in enumerate(sorted(ledger.get("holds", {})))}
    ledger["holds"] = {uids[k]: {**v, "name": "-"} for k, v in ledger.get("holds", {}).items()}
    for entry in ledger.get("processes", {}).values():
        entry["holders"] = [uids.get(h, h) for h in entry.get("holders", [])]
    return blank(ledger)


# --- report --------------------------------------------------------------------------------------------------------


def per_pod(row: dict[str, Any], phase: str) -> dict[str, float]:
    n = row["pods"]
    p = row[phase]
    requests = sum(p["api"]["verb"].values())
    return {
        "ms_per_pod": 1000 * p["all_verified_s"] / n,
        "cpu_ms_per_pod": 1000 * p["cpu_s"] / n,
        "requests_per_pod": requests / n,
        "execs_per_pod": p["execs"] / n,
    }


def lag_text(phase: dict[str, Any]) -> str:
    lag = phase.get("watch_lag") or {}
    if not lag.get("events"):
        return "-"
    return f"{1000 * lag['mean_s']:.0f} ms / <= {lag['p99_le_s']:g} s"


def late(phase: dict[str, Any]) -> str:
    """Late go-aheads of a phase ('?' in records made before the operator counted them)."""
    return f"{phase['go_aheads_late']:.0f}" if "go_aheads_late" in phase else "?"


def table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| build | pods | handling objects after start "
        "| suspend: all verified | per pod | resume: all verified | per pod "
        "| operator CPU s (susp / res) | CPU ms per pod | RSS idle / peak MB | execs per pod (late go-aheads) "
        "| exec in flight max (waiting) "
        "| API requests per pod (susp / res) | status bytes | ledger bytes per pod "
        "| watch lag mean / p99 (susp; res) |",
        "| --- " + "| ---: " * 15 + "|",
    ]
    for row in rows:
        s, r = row["suspend"], row["resume"]
        ps, pr = per_pod(row, "suspend"), per_pod(row, "resume")
        waiting = max(s["execs_waiting_max_sampled"], r["execs_waiting_max_sampled"])
        lines.append(
            f"| {row['build']} | {row['pods']:,} | {row['operator_started_s']:.0f} s "
            f"| {s['all_verified_s']:.1f} s | {ps['ms_per_pod']:.1f} ms "
            f"| {r['all_verified_s']:.1f} s | {pr['ms_per_pod']:.1f} ms "
            f"| {s['cpu_s']:.1f} / {r['cpu_s']:.1f} | {ps['cpu_ms_per_pod']:.1f} / {pr['cpu_ms_per_pod']:.1f} "
            f"| {row['idle_rss_mb']:.0f} / {max(s['rss_max_mb'], r['rss_max_mb']):.0f} "
            f"| {ps['execs_per_pod']:.2f}, {pr['execs_per_pod']:.2f} ({late(s)}, {late(r)}) "
            f"| {s['execs_in_flight_max']:.0f} ({waiting:.0f}) "
            f"| {ps['requests_per_pod']:.1f} / {pr['requests_per_pod']:.1f} "
            f"| {s['status_bytes']:,} | {row['ledger']['mean_bytes']:.0f} "
            f"| {lag_text(s)}; {lag_text(r)} |"
        )
    lines.append("")
    lines.append("API requests by verb (suspend / resume):")
    for row in rows:
        verbs = sorted(set(row["suspend"]["api"]["verb"]) | set(row["resume"]["api"]["verb"]))
        parts = [
            f"{v} {row['suspend']['api']['verb'].get(v, 0):.0f} / {row['resume']['api']['verb'].get(v, 0):.0f}"
            for v in verbs
        ]
        lines.append(f"- N = {row['pods']:,} ({row['build']}): " + ", ".join(parts))
    return "\n".join(lines)


# --- runs ----------------------------------------------------------------------------------------------------------


def prepare(record: dict[str, Any]) -> None:
    """The control plane up, this tree's install (CRD, RBAC, admission) applied."""
    harness.ensure_control_plane()
    harness.install()
    record["versions"] = sb.versions()


def start_operator(executable: Path = harness.PROCESSCONTROL, build: str = "current") -> harness.OperatorProcess:
    operator = harness.OperatorProcess(
        harness.service_account_kubeconfig(),
        executable=executable,
        log_path=state_dir() / "logs" / f"operator-{build}.log",
    )
    operator.start(timeout=120)
    assert operator.process is not None
    say(f"operator ({build}) pid {operator.process.pid}, log {operator.log_path}")
    return operator


def wait_started(namespace: str, timeout_s: float = 3600) -> float:
    """Seconds until the operator handles objects: the status of a suspension that targets nothing. kopf runs no
    handler before every object it listed at its start is indexed (at 10,000 pods: 25 minutes with kopf's own
    readiness set, 26 s with reconcile/readiness.py's). Measured apart, so that it does not count in the
    suspension's time."""
    began = time.monotonic()
    name = "scale-started"
    sb.kubectl("apply", "-f", "-", input_text=sb.suspension(name, {"instanceGroup": "nothing-here"}, namespace))
    while "observedGeneration" not in ((get_suspension(namespace, name) or {}).get("status") or {}):
        if time.monotonic() - began > timeout_s:
            raise TimeoutError(f"the operator wrote no status in {timeout_s:.0f}s")
        time.sleep(1)
    started = time.monotonic() - began
    sb.kubectl("delete", "-n", namespace, f"psus/{name}", "--timeout=300s")
    return started


def baseline_of(commit: str) -> tuple[str, Path]:
    """The baseline's name and `processcontrol` (built as bench-ab builds it). Both operators run under this tree's
    CRD here, so a baseline whose CRD differs is refused: bench-ab compares those, each under its own."""
    tree = ab_bench.baseline_tree(commit)
    executable = ab_bench.baseline_build(commit)
    crd = Path("crds") / "processsuspensions.yaml"
    if (tree / crd).read_text() != (ab_bench.ROOT / crd).read_text():
        raise SystemExit(f"the CRD of {commit} differs from this tree's: compare with make bench-ab BASELINE={commit}")
    return ab_bench.git("rev-parse", "--short", commit), executable


def run_scale(sizes: Sequence[int], record: dict[str, Any], dated: Path, baseline: str | None) -> None:
    """Each N: the group grows to N, then each build in turn (the baseline first, when there is one) starts a fresh
    operator, suspends and resumes the whole group, and stops."""
    builds = [(ab_bench.git("describe", "--always", "--dirty"), harness.PROCESSCONTROL)]
    if baseline is not None:
        builds.insert(0, baseline_of(baseline))
        record["baseline"] = builds[0][0]
    prepare(record)
    have = 0
    for n in sizes:
        pods = grow(n, have)
        have = max(have, n)
        for build, executable in builds:
            operator = start_operator(executable, build)
            assert operator.process is not None
            try:
                started_s = wait_started(NAMESPACE)
                idle = sb.sample(operator.process.pid, 10)
                say(
                    f"N={n} ({build}): handling objects {started_s:.0f}s after its start; idle RSS "
                    f"{idle['rss_mb']:.0f} MB; load {os.getloadavg()[0]:.1f}"
                )
                row = suspend_resume(operator, NAMESPACE, GROUP, pods, f"scale-n{n}")
            finally:
                operator.stop()
            row["build"] = build
            row["operator_started_s"] = started_s
            row["idle_rss_mb"] = idle["rss_mb"]
            row["idle_cpu_percent"] = idle["cpu_percent_of_one_core"]
            row["load_average"] = [round(x, 2) for x in os.getloadavg()]
            record["rows"].append(row)
            s, r = row["suspend"], row["resume"]
            say(
                f"N={n} ({build}): suspend {s['all_verified_s']:.1f}s (CPU {s['cpu_s']:.1f}s, {s['execs']:.0f} "
                f"execs, in flight max {s['execs_in_flight_max']:.0f}), resume {r['all_verified_s']:.1f}s "
                f"(CPU {r['cpu_s']:.1f}s)"
            )
            sb.checkpoint(record, dated)


def run_check(count: int, repeats: int, record: dict[str, Any]) -> None:
    """The same suspend/resume against real containerrun pods and simulated ones, alternately."""
    prepare(record)
    operator = start_operator()
    real_ns, sim_ns = "scale-real", "scale-sim"
    try:
        say(f"check: {count} pods with real containerrun in {real_ns}, {count} simulated in {sim_ns}")
        real = fakepods.create_group("check", real_ns, count, JOBS, ready_timeout=600)
        sim = simpods.create_pods("check", sim_ns, range(count), JOBS)
        wait_pods_running(sim_ns, count)
        simpods.start_server("check", simpods.endpoints_of(sim_ns, sim, JOBS))
        time.sleep(5)
        runs: dict[str, list[dict[str, Any]]] = {"real": [], "sim": []}
        shapes: dict[str, Any] = {}
        for r in range(repeats):
            # Alternating which goes first: whatever the first of a pair pays (a cold watch cache) is shared.
            order = [("real", real_ns, real), ("sim", sim_ns, sim)]
            for kind, ns, pods in order if r % 2 == 0 else order[::-1]:
                row = suspend_resume(operator, ns, "check", pods, f"check-{kind}-{r}")
                runs[kind].append(row)
                say(
                    f"check {kind} {r + 1}/{repeats}: suspend {row['suspend']['all_verified_s']:.2f}s, "
                    f"resume {row['resume']['all_verified_s']:.2f}s"
                )
        # The ledger's shape while held: one more suspension of each, looked at before it is deleted.
        for kind, ns, pods in (("real", real_ns, real), ("sim", sim_ns, sim)):
            name = f"check-{kind}-ledger"
            sb.kubectl("apply", "-f", "-", input_text=sb.suspension(name, {"instanceGroup": "check"}, ns))
            sb.kubectl("wait", "-n", ns, f"psus/{name}", "--for=condition=Ready", "--timeout=300s")
            shapes[kind] = ledger_shape(ns, pods[0])
            sb.kubectl("delete", "-n", ns, f"psus/{name}", "--timeout=300s")
        wait_sentinels(sentinels(real_ns, real) + sentinels(sim_ns, sim), running=True, timeout=120)
        after = {
            "real": [fakepods.pid_path(real_ns, p, jp).exists() for p in real for jp in JOBS],
            "sim": [fakepods.pid_path(sim_ns, p, jp).exists() for p in sim for jp in JOBS],
        }
    finally:
        operator.stop()
    pairs = zip(runs["real"], runs["sim"], strict=True)
    same_end = [a["end_state_suspended"] == b["end_state_suspended"] for a, b in pairs]
    summary = {}
    for kind in ("real", "sim"):
        summary[kind] = {
            "suspend_s": statistics.median(x["suspend"]["all_verified_s"] for x in runs[kind]),
            "resume_s": statistics.median(x["resume"]["all_verified_s"] for x in runs[kind]),
            "suspend_execs_per_pod": statistics.median(x["suspend"]["execs"] / count for x in runs[kind]),
            "resume_execs_per_pod": statistics.median(x["resume"]["execs"] / count for x in runs[kind]),
            "suspend_cpu_s": statistics.median(x["suspend"]["cpu_s"] for x in runs[kind]),
        }
    record["check"] = {
        "pods": count,
        "repeats": repeats,
        "runs": runs,
        "summary": summary,
        "same_end_state_when_suspended": same_end,
        "end_state_suspended": {k: runs[k][-1]["end_state_suspended"] for k in runs},
        "ledger_shape_same": shapes["real"] == shapes["sim"],
        "ledger_shapes": shapes,
        "all_pid_files_back": {k: all(v) for k, v in after.items()},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pods", type=lambda s: [int(x) for x in s.split(",")], default=DEFAULT_SIZES, help="N list, e.g. 1000,2000"
    )
    parser.add_argument("--baseline", metavar="COMMIT", help="also run this build at each N, before the current one")
    parser.add_argument("--check", type=int, metavar="N", help="the simulator against real containerrun at N pods")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of --check")
    parser.add_argument("--keep", action="store_true", help="leave the control plane and the pods up")
    args = parser.parse_args()
    started = datetime.now(UTC)
    dated = recording.new_record(started, "scale-check" if args.check else "scale")
    record: dict[str, Any] = {
        "date": started.isoformat(timespec="seconds"),
        "machine": sb.machine(),
        "settings": "operator defaults (docs/configuration.md); PROCESSCONTROL_METRICS_PORT set by harness.operator",
        "processes_per_pod": len(JOBS),
        "supervisors": f"harness.simpods (stop {simpods.DEFAULT_STOP_MS} ms, start {simpods.DEFAULT_START_MS} ms)",
        "rows": [],
    }
    record["machine"]["uptime_start"] = sb.uptime()
    say(f"scale: {'check at ' + str(args.check) if args.check else 'N = ' + str(args.pods)}; {sb.uptime()}")
    try:
        if args.check:
            run_check(args.check, args.repeats, record)
        else:
            run_scale(args.pods, record, dated, args.baseline)
    finally:
        record["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
        record["machine"]["uptime_end"] = sb.uptime()
        if not args.keep:
            say(f"stopped {fakepods.stop_all_host_processes()} host processes")
            controlplane.main(["down"])
        record["duration_s"] = (datetime.now(UTC) - started).total_seconds()
        dated.write_text(json.dumps(record, indent=2) + "\n")
    if args.check:
        check = record["check"]
        print(json.dumps(check["summary"], indent=2))
        print(
            f"end state same when suspended: {check['same_end_state_when_suspended']}; ledger shape same: "
            f"{check['ledger_shape_same']}; pid files back after resume: {check['all_pid_files_back']}"
        )
    else:
        print(table(record["rows"]))
    print(f"recorded in {dated}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
