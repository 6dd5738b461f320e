"""The exec floor (issue 14 item 5): N execs of `true` against N execs of the in-pod script, same path, same run.

    PROCESSCONTROL_STATE=/tmp/pc-x .venv/bin/python bench/exec_floor.py --pods 50 --repeats 3

On the local control plane with bench/suspend_bench.py's fake pods (kwok, 2 real `containerrun` each), through the
operator's own exec transport (`KubernetesPodExecutor`, its default concurrency 32), one exec per pod, all at once:

- floor:        `true`
- stop+wait:    one fenced transition with STOP and wait_s=5: the script looks, the operator's dialogue answers
                its ready line with the go-ahead for every socket it reported (as the worker does, minus the ledger
                write), the script sends, waits in the pod until every sentinel is gone, reports; the time runs until
                every exec has answered, and every sentinel is checked gone on the host after
- start+wait:   the same for START (restores the pods for the next repeat)
- status:       the script's look alone (no dialogue: stdin at EOF, it sends nothing; nothing is probed while every
                sentinel is there)
- status-stopped: the look with every process stopped (each socket is probed: the stale check)
- old-status:   the script before issue 14 (read from git, `--old-ref`) in STATUS mode, for comparison

Then the in-pod cost alone: the same commands run directly on this host against each pod's base directory (what
kwok's local exec runs, without the exec), one pod after another: wall time and CPU (user+sys of the children) per
pod. The floor there is `sh -c true`. There the go-ahead is in the script's stdin from the start (it reads it only
after its look).

Prints a table and writes bench/results/exec-floor-<date>.json. Leaves the control plane and the pods up (they
belong to suspend_bench.py's group; `python -m harness.controlplane down` stops them).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import recording  # bench/ is this script's directory, on sys.path as for any script
import suspend_bench as sb
from harness import fakepods
from harness import operator as harness  # the operator as a process
from harness.base import kubeconfig_path
from processcontrol.k8s import load_configuration
from processcontrol.podexec.script import COMPACT_SCRIPT, READY, Action, build_command, go_ahead, parse_output
from processcontrol.podexec.transport import Dialogue, KubernetesPodExecutor
from processcontrol.settings import ProcessControlSettings


def container_of(pod: str) -> str:
    obj = json.loads(sb.kubectl("get", "-n", sb.NAMESPACE, f"pod/{pod}", "-o", "json"))
    return str(obj["spec"]["containers"][0]["name"])


def answering(action: Action | None) -> Dialogue | None:
    """The dialogue of a transition: the go-ahead for every socket the look reported. None: a look alone."""
    if action is None:
        return None

    async def answer(stdout: str) -> str:
        look = parse_output(stdout, look_only=True).look
        return go_ahead(action, 1, [(s.job, s.process) for s in look.sockets])

    return Dialogue(READY, answer)


async def run_all(
    executor: KubernetesPodExecutor,
    pods: Sequence[str],
    container: str,
    command: list[str],
    action: Action | None = None,
) -> dict[str, Any]:
    began = time.monotonic()
    results = await asyncio.gather(
        *(executor.run(sb.NAMESPACE, pod, container, command, answering(action)) for pod in pods)
    )
    wall = time.monotonic() - began
    durations = [r.duration_s for r in results]
    return {
        "wall_s": wall,
        "exec_p50_s": statistics.median(durations),
        "exec_max_s": max(durations),
        "stdout": [r.stdout for r in results],
    }


def check(outputs: Sequence[str], action: Action | None, want_running: bool | None) -> dict[str, Any]:
    """The reports of a round: a transition's (what its go-ahead did, checked to echo it), or a look's."""
    outcomes = [parse_output(out) for out in outputs]
    if action is not None:
        wrong_go = [o for o in outcomes if (o.action, o.seq) != (action, 1) or o.acted is None]
        assert not wrong_go, f"{len(wrong_go)} execs did not act on their go-ahead: {wrong_go[0]}"
    reports = [o.acted or o.look for o in outcomes]
    sockets = [s for r in reports for s in r.sockets]
    wrong = [s for s in sockets if want_running is not None and s.running is not want_running]
    return {
        "sockets": len(sockets),
        "not_at_target": len(wrong),
        "tools": sorted({r.tool or "none" for r in reports}),
        "results": sorted({s.result for s in sockets}),
        "action": str(action or "look"),
    }


def in_pod_cost(
    pods: Sequence[str], commands: dict[str, list[str]], actions: dict[str, Action], repeats: int
) -> dict[str, dict[str, float]]:
    """Each command on each pod's base dir, no exec: ms of wall and of CPU per pod (median over the repeats). A
    transition's go-ahead (for every process of sb.JOBS) is on its stdin from the start; the rest get EOF."""
    paths = sb.sentinels(pods)
    local = {"floor": ["sh", "-c", "true"], **{k: v for k, v in commands.items() if k != "floor"}}
    pairs = [(jp.job, jp.process) for jp in sb.JOBS]
    stdin = {name: go_ahead(action, 1, pairs).encode() for name, action in actions.items()}
    out: dict[str, dict[str, float]] = {}
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in local}
    for _ in range(repeats):
        for name in ("floor", "status", "old-status", "stop+wait", "status-stopped", "start+wait"):
            sb.wait_all(paths, running=name != "start+wait" and name != "status-stopped")
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            began = time.monotonic()
            for pod in pods:
                base = fakepods.base_dir(sb.NAMESPACE, pod)
                env = dict(os.environ, CONTAINERRUN_BASE_DIR=str(base))
                given = stdin.get(name, b"")
                subprocess.run(local[name], env=env, cwd=base, input=given, capture_output=True, check=True)
            wall = time.monotonic() - began
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            samples[name].append((wall, cpu))
    for name, values in samples.items():
        out[name] = {
            "wall_ms_per_pod": 1000 * statistics.median(w for w, _ in values) / len(pods),
            "cpu_ms_per_pod": 1000 * statistics.median(c for _, c in values) / len(pods),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--old-ref", default="f6382f4", help="git commit whose inpod.sh is the 'old' script")
    args = parser.parse_args()
    harness.ensure_control_plane()
    pods = sb.grow_group(args.pods)
    paths = sb.sentinels(pods)
    container = container_of(pods[0])
    settings = ProcessControlSettings()
    old_script = subprocess.run(
        ["git", "show", f"{args.old_ref}:operator/processcontrol/podexec/inpod.sh"],
        cwd=sb.ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    window_s = settings.go_ahead_window_s
    commands: dict[str, list[str]] = {
        "floor": ["true"],
        "stop+wait": build_command([], [], wait_s=5.0, window_s=window_s),
        "start+wait": build_command([], [], wait_s=5.0, window_s=window_s),
        "status": build_command([], []),
        "status-stopped": build_command([], []),
        "old-status": ["sh", "-c", old_script, "processcontrol", "STATUS", "", ""],
    }
    actions = {"stop+wait": Action.STOP, "start+wait": Action.START}

    async def bench() -> dict[str, list[dict[str, Any]]]:
        executor = KubernetesPodExecutor(
            load_configuration(str(kubeconfig_path())),
            max_concurrency=settings.exec_concurrency,
            timeout_s=settings.exec_timeout_s,
            retries=0,
            backoff_s=settings.exec_backoff_s,
        )
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in commands}
        try:
            await run_all(executor, pods, container, ["true"])  # warm the clients and connections
            for _ in range(args.repeats):
                for name in ("floor", "status", "old-status", "stop+wait", "status-stopped", "start+wait"):
                    sb.wait_all(paths, running=name != "start+wait" and name != "status-stopped")
                    row = await run_all(executor, pods, container, commands[name], actions.get(name))
                    outputs = row.pop("stdout")
                    if name == "stop+wait":
                        row |= check(outputs, Action.STOP, want_running=False)
                        row["running_on_host_after"] = sb.running_count(paths)
                    elif name == "start+wait":
                        row |= check(outputs, Action.START, want_running=True)
                        row["running_on_host_after"] = sb.running_count(paths)
                    elif name in ("status", "status-stopped"):
                        row |= check(outputs, None, want_running=name == "status")
                    rows[name].append(row)
                    sb.say(f"{name}: {row['wall_s']:.3f}s")
        finally:
            executor.close()
        return rows

    rows = asyncio.run(bench())
    sb.say("in-pod cost, no exec")
    local = in_pod_cost(pods, commands, actions, args.repeats)
    floor = statistics.median(r["wall_s"] for r in rows["floor"])
    summary = {
        name: {
            "wall_p50_s": statistics.median(r["wall_s"] for r in samples),
            "wall_max_s": max(r["wall_s"] for r in samples),
            "vs_floor": statistics.median(r["wall_s"] for r in samples) / floor,
        }
        for name, samples in rows.items()
    }
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "pods": args.pods,
        "processes_per_pod": len(sb.JOBS),
        "concurrency": settings.exec_concurrency,
        "repeats": args.repeats,
        "script_bytes": len(COMPACT_SCRIPT.encode()),
        "old_script_bytes": len(old_script.encode()),
        "machine": sb.machine(),
        "summary": summary,
        "in_pod_cost": local,
        "samples": rows,
    }
    lines = [
        f"{args.pods} pods x {len(sb.JOBS)} processes, {settings.exec_concurrency} execs at once,"
        f" {args.repeats} repeats"
    ]
    lines.append(f"{'command':<16} {'wall p50':>9} {'max':>7} {'x floor':>8}")
    for name, s in summary.items():
        lines.append(f"{name:<16} {s['wall_p50_s']:>8.3f}s {s['wall_max_s']:>6.3f}s {s['vs_floor']:>8.2f}")
    lines += ["", "in-pod cost alone (no exec), per pod:", f"{'command':<16} {'wall':>9} {'CPU':>9}"]
    for name, c in local.items():
        lines.append(f"{name:<16} {c['wall_ms_per_pod']:>7.1f}ms {c['cpu_ms_per_pod']:>7.1f}ms")
    print("\n".join(lines))
    out = recording.new_record(datetime.now(UTC), f"exec-floor-n{args.pods}")
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
