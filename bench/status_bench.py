#!/usr/bin/env python3
"""The status daemon's build_status at N pods: milliseconds per call and microseconds per pod.

The daemon builds the whole status from every target's outcome at each write (at most once per status interval,
1 s by default), so its cost per call times the writes of a suspension grows as N^2. At N = 10,000 py-spy put it
at a third of the operator's samples (bench/README.md, scale). Half the pods are done (two processes each), a
quarter in progress, a quarter not heard from yet, one in a hundred failed.

    python bench/status_bench.py [--pods 1000,10000] [--repeats 20]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Any

import recording
from processcontrol.api import INSTANCE_GROUP_LABEL, ProcessState, ProcessStatus, ProcessSuspensionSpec
from processcontrol.api.models import PodState, ProcessSuspensionStatus
from processcontrol.api.reasons import Reason
from processcontrol.reconcile.plan import Intent, Mode, PodRecord, build_status
from processcontrol.targets import PodInfo

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def scenario(n: int) -> tuple[list[PodInfo], dict[str, PodRecord]]:
    targets = [
        PodInfo(
            namespace="kubecf",
            name=f"database-{i}",
            uid=f"uid-{i}",
            labels={INSTANCE_GROUP_LABEL: "database"},
            phase="Running",
            terminating=False,
            containers=("pxc-mysql",),
            data_containers=("pxc-mysql",),
        )
        for i in range(n)
    ]
    processes = [ProcessStatus(job="pxc-mysql", process=p, state=ProcessState.STOPPED) for p in ("mysql", "agent")]
    records: dict[str, PodRecord] = {}
    for i, target in enumerate(targets):
        if i % 4 == 3:
            continue  # not heard from yet
        state = PodState.FAILED if i % 100 == 7 else PodState.SUSPENDED if i % 2 == 0 else PodState.SUSPENDING
        record = PodRecord(uid=target.uid, state=state, mode=Mode.SUSPEND, generation=1, transition_time=NOW)
        record.processes = processes if state is PodState.SUSPENDED else []
        record.reason = "ExecTimeout" if state is PodState.FAILED else ""
        records[target.name] = record
    return targets, records


def measure(n: int, repeats: int) -> dict[str, Any]:
    targets, records = scenario(n)
    spec = ProcessSuspensionSpec.model_validate({"instanceGroup": "database"})
    intent = Intent(Mode.SUSPEND, Reason("SuspendRequested"))
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        status = build_status(spec, 1, intent, targets, records, ProcessSuspensionStatus(), NOW)
        times.append(time.perf_counter() - began)
    median = statistics.median(times)
    return {
        "pods": n,
        "repeats": repeats,
        "ms_per_call": median * 1000,
        "us_per_pod": median * 1e6 / n,
        "status_bytes": len(json.dumps(status.model_dump(by_alias=True, mode="json"))),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 10000])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    started = datetime.now(UTC)
    rows = [measure(n, args.repeats) for n in args.pods]
    print("| pods | build_status ms per call (median) | us per pod | status bytes |")
    print("| ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['pods']:,} | {row['ms_per_call']:.1f} | {row['us_per_pod']:.2f} | {row['status_bytes']:,} |")
    path = recording.new_record(started, "status")
    path.write_text(json.dumps({"date": started.isoformat(timespec="seconds"), "rows": rows}, indent=1) + "\n")
    print(f"recorded {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
