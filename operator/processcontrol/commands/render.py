"""What the CLI prints, as pure functions of ProcessSuspension objects (dicts as the API returns them) and the time."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import yaml

from processcontrol.api.reasons import Reason
from processcontrol.api.timestamps import parse_time

NONE = "<none>"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "") -> str:
    """Columns separated by three spaces, as kubectl prints them; the last column is not padded."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = [str(cell).ljust(widths[i]) for i, cell in enumerate(row[:-1])] + [str(row[-1])]
        lines.append((indent + "   ".join(cells)).rstrip())
    return "\n".join(lines)


def human_duration(seconds: float) -> str:
    """kubectl's age format (k8s.io/apimachinery duration.HumanDuration): 45s, 3m20s, 5h, 2d3h."""
    if seconds < -1:
        return "<invalid>"
    s = max(int(seconds), 0)
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 730:
        return f"{days}d"
    years = days // 365
    return f"{years}y{days % 365}d" if days % 365 and days < 2920 else f"{years}y"


def age(timestamp: str | None, now: datetime) -> str:
    """How long ago, kubectl style; `<unknown>` without a time."""
    if not timestamp:
        return "<unknown>"
    return human_duration((now - parse_time(timestamp)).total_seconds())


def until(timestamp: str, now: datetime) -> str:
    """`in 1h30m` or `1h30m ago`."""
    delta = (parse_time(timestamp) - now).total_seconds()
    return f"in {human_duration(delta)}" if delta >= 0 else f"{human_duration(-delta)} ago"


def condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    """The condition of this type from the object's status."""
    for item in (obj.get("status") or {}).get("conditions") or []:
        if item.get("type") == type_:
            return dict(item)
    return None


def target(spec: Mapping[str, Any]) -> str:
    """The target in one phrase: an instance group or a selector in kubectl syntax."""
    if spec.get("instanceGroup"):
        return f"instance group {spec['instanceGroup']}"
    selector = spec.get("selector") or {}
    terms = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression.get("key"), expression.get("operator"), expression.get("values") or []
        terms.append(
            {
                "In": f"{key} in ({','.join(values)})",
                "NotIn": f"{key} notin ({','.join(values)})",
                "Exists": f"{key}",
                "DoesNotExist": f"!{key}",
            }.get(str(operator), f"{key} {operator} {values}")
        )
    return f"selector {','.join(terms)}" if terms else NONE


def goal(obj: Mapping[str, Any]) -> str:
    """The word for done: suspended, or resumed when `suspend` is false or the duration has run out."""
    expired = (condition(obj, "Ready") or {}).get("reason") == Reason.EXPIRED
    return "resumed" if (obj.get("spec") or {}).get("suspend") is False or expired else "suspended"


def requester(spec: Mapping[str, Any]) -> str:
    """Who asked, as recorded: `alice`, `alice (via system:serviceaccount:flux-system:kustomize-controller)`."""
    recorded = spec.get("requestedBy") or {}
    if not recorded.get("username"):
        return NONE
    via = f" (via {recorded['via']})" if recorded.get("via") else ""
    return f"{recorded['username']}{via}"


def stages_text(stages: Sequence[Mapping[str, Any]]) -> str:
    """`1: processes galera-agent; 2: jobs pxc-mysql processes mysql`."""
    parts = []
    for index, stage in enumerate(stages, 1):
        words = [f"{key} {','.join(stage[key])}" for key in ("jobs", "processes") if stage.get(key)]
        parts.append(f"{index}: {' '.join(words) or NONE}")
    return "; ".join(parts)


def _get_row(obj: Mapping[str, Any], now: datetime, wide: bool, all_namespaces: bool) -> list[str]:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    ready = condition(obj, "Ready")
    recorded = spec.get("requestedBy") or {}
    row = [meta.get("namespace", "")] if all_namespaces else []
    row += [
        meta.get("name", ""),
        "true" if spec.get("suspend", True) else "false",
        ready["status"] if ready else "-",
        status.get("summary") or "-",
        # Why Ready is what it is: a group that matches nothing says NoMatchingPods here, not only 0/0.
        (ready.get("reason") or "-") if ready else "-",
        recorded.get("username") or "-",
        spec.get("reason") or "",
        age(meta.get("creationTimestamp"), now),
    ]
    if wide:
        message = ready.get("message", "") if ready else "waiting for the operator"
        stage = (status.get("stage") or {}).get("summary") or "-"
        row += [target(spec), status.get("expiresAt") or "-", stage, recorded.get("via") or "-", message]
    return row


def get_table(
    objects: Sequence[Mapping[str, Any]], now: datetime, wide: bool = False, all_namespaces: bool = False
) -> str:
    """`processcontrol get`: the CRD's printer columns (NAME SUSPEND READY PODS STATUS REQUESTER REASON AGE), plus
    more with -o wide."""
    headers = ["NAMESPACE"] if all_namespaces else []
    headers += ["NAME", "SUSPEND", "READY", "PODS", "STATUS", "REQUESTER", "REASON", "AGE"]
    if wide:
        headers += ["TARGET", "EXPIRES", "STAGE", "VIA", "MESSAGE"]
    rows = [_get_row(o, now, wide, all_namespaces) for o in objects]
    return table(headers, rows)


def _clean(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without managedFields, as kubectl shows it by default."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}
    return {**obj, "metadata": meta}


def dump(objects: Sequence[Mapping[str, Any]], output: str, single: bool) -> str:
    """`-o json` / `-o yaml`: the object, or a List of them."""
    cleaned = [_clean(o) for o in objects]
    document: Any = cleaned[0] if single else {"apiVersion": "v1", "kind": "List", "items": cleaned}
    if output == "json":
        return json.dumps(document, indent=4)
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False).rstrip("\n")


def pods_table(obj: Mapping[str, Any], indent: str = "") -> str:
    """Per pod and per process: state, pid and the pod's message."""
    rows: list[list[str]] = []
    pods = sorted((obj.get("status") or {}).get("pods") or [], key=lambda p: str(p.get("name", "")))
    for pod in pods:
        processes = sorted(pod.get("processes") or [], key=lambda p: (p.get("job", ""), p.get("process", "")))
        first = [pod.get("name", ""), pod.get("state", "")]
        if not processes:
            rows.append([*first, "-", "-", "-", pod.get("message") or ""])
            continue
        for i, process in enumerate(processes):
            lead = first if i == 0 else ["", ""]
            pid = process.get("pid")
            rows.append(
                [
                    *lead,
                    f"{process.get('job', '')}/{process.get('process', '')}",
                    process.get("state", ""),
                    str(pid) if pid is not None else "-",
                    (pod.get("message") or "") if i == 0 else "",
                ]
            )
    if not rows:
        return f"{indent}{NONE}"
    return table(["POD", "STATE", "PROCESS", "PROCESS STATE", "PID", "MESSAGE"], rows, indent)


def preview_table(obj: Mapping[str, Any], indent: str = "") -> str:
    """status.preview, a pod a row: what it would stop, what it would leave running, and what stands in the way;
    then the probe conflicts, a pod a line."""
    preview = (obj.get("status") or {}).get("preview") or {}
    pods = preview.get("pods") or []
    if not pods:
        return f"{indent}{NONE}"
    rows = [
        [
            pod.get("name", ""),
            pod.get("container") or "-",
            ", ".join(pod.get("stop") or []) or "-",
            ", ".join(pod.get("skip") or []) or "-",
            pod.get("reason") or "-",
            pod.get("message") or "",
        ]
        for pod in pods
    ]
    lines = [table(["POD", "CONTAINER", "WOULD STOP", "WOULD SKIP", "PROBLEM", "DETAIL"], rows, indent)]
    probed = [p for p in pods if p.get("probeConflicts")]
    if probed:
        lines += ["", f"{indent}Probe conflicts (a stopped process fails these; the kubelet restarts its container):"]
        lines += [f"{indent}  {p.get('name', '')}: {'; '.join(p['probeConflicts'])}" for p in probed]
    if preview.get("targets", 0) > len(pods):
        lines.append(f"{indent}({len(pods)} of {preview['targets']} pods listed, those that need attention first)")
    return "\n".join(lines)


def leader(lease: Mapping[str, Any] | None, now: datetime, trouble: str = "") -> str:
    """Which operator replica leads, from its Lease: `pod-a (since 2026-12-01T10:00:00Z, 3m)`."""
    if lease is None:
        return f"<unknown> ({trouble})" if trouble else "<unknown>"
    spec = lease.get("spec") or {}
    holder = spec.get("holderIdentity") or ""
    if not holder:
        return "none (the last leader let go; a standby takes over at its next look)"
    since = spec.get("acquireTime")
    text = f"{holder} (since {since}, {age(since, now)})" if since else holder
    renewed, duration = spec.get("renewTime"), spec.get("leaseDurationSeconds")
    if renewed and isinstance(duration, int) and (now - parse_time(renewed)).total_seconds() > duration:
        text += f", but its Lease expired {age(renewed, now)} ago: no replica renews it"
    return text


def describe(obj: Mapping[str, Any], now: datetime, operator: str | None = None) -> str:
    """`processcontrol describe`: the spec, the times, the conditions and every pod with its processes, and which
    operator replica leads (`operator`, from `leader`)."""
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    fields: list[tuple[str, str]] = [
        ("Name", meta.get("name", "")),
        ("Namespace", meta.get("namespace", "")),
        ("Target", target(spec)),
        ("Jobs", ", ".join(spec.get("jobs") or []) or "<all>"),
        ("Processes", ", ".join(spec.get("processes") or []) or "<all>"),
        ("Suspend", "true" if spec.get("suspend", True) else "false"),
        *(
            [("Preview", "true: only looks, holds nothing (set preview: false to suspend)")]
            if spec.get("preview")
            else []
        ),
        ("Reason", spec.get("reason") or NONE),
        ("Requested By", requester(spec)),
        ("Duration", spec.get("duration") or NONE),
    ]
    if spec.get("stages"):
        # Stages replace the jobs and processes filters (the CRD allows only one of them).
        fields = [field for field in fields if field[0] not in ("Jobs", "Processes")]
        fields.insert(3, ("Stages", stages_text(spec["stages"])))
        stage = status.get("stage") or {}
        fields.insert(4, ("Stage", stage.get("summary") or NONE))
    if spec.get("container"):
        fields.append(("Container", spec["container"]))
    fields.append(("Probes", spec.get("probes") or "Warn"))
    if status.get("suspendedAt"):
        fields.append(("Suspended At", f"{status['suspendedAt']} ({until(status['suspendedAt'], now)})"))
    if status.get("expiresAt"):
        fields.append(("Expires At", f"{status['expiresAt']} ({until(status['expiresAt'], now)})"))
    observed = status.get("observedGeneration")
    fields += [
        ("Pods", f"{status['summary']} {goal(obj)}{counts_note(status)}" if status.get("summary") else NONE),
        ("Generation", f"{meta.get('generation', '?')} (observed: {observed if observed is not None else 'none'})"),
        ("Age", age(meta.get("creationTimestamp"), now)),
    ]
    if meta.get("deletionTimestamp"):
        fields.append(("Deleting", f"since {meta['deletionTimestamp']}: resuming before the object goes"))
    if operator is not None:
        fields.append(("Operator", operator))
    width = max(15, *(len(label) + 2 for label, _ in fields))
    lines = [f"{label + ':':<{width}}{value}" for label, value in fields]
    conditions = status.get("conditions") or []
    lines += ["", "Conditions:"]
    if conditions:
        rows = [
            [
                c.get("type", ""),
                c.get("status", ""),
                c.get("reason", ""),
                age(c.get("lastTransitionTime"), now),
                c.get("message", ""),
            ]
            for c in conditions
        ]
        lines.append(table(["TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"], rows, "  "))
    else:
        lines.append(f"  {NONE} (the operator has not written a status yet)")
    lines += ["", "Pods:", pods_table(obj, "  ")]
    if spec.get("preview"):
        previewed = condition(obj, "Previewed") or {}
        lines += ["", f"Preview: {previewed.get('message') or 'not yet looked at'}", preview_table(obj, "  ")]
    probed = [p for p in status.get("pods") or [] if p.get("probeConflicts")]
    if probed:
        lines += ["", "Probe conflicts (a stopped process fails these; the kubelet restarts its container):"]
        lines += [f"  {pod.get('name', '')}: {'; '.join(pod['probeConflicts'])}" for pod in probed]
    # A restart has many causes besides a probe (an OOM kill, a crash, a node problem): its own block, so that it
    # never reads as a probe conflict.
    restarted = [p for p in status.get("pods") or [] if p.get("restarts")]
    if restarted:
        lines += ["", "Restarts (of targeted containers since the suspension took hold; each is stopped again):"]
        lines += [f"  {pod.get('name', '')}: {pod['restarts']}" for pod in restarted]
    listed, counts = len(status.get("pods") or []), status.get("counts") or {}
    if counts.get("targets", 0) + counts.get("releasing", 0) > listed:
        lines.append(
            f"  ({listed} listed, those that need attention first; each pod's own detail is its annotation "
            "processcontrol.dev/holds: kubectl get pod POD -o yaml)"
        )
    return "\n".join(lines)


def counts_note(status: Mapping[str, Any]) -> str:
    """`, 2 failed (ExecTimeout: 2), 1 being given back` from the status counts; empty when there is nothing."""
    counts = status.get("counts") or {}
    notes = []
    if counts.get("failed"):
        reasons = ", ".join(f"{reason}: {n}" for reason, n in (counts.get("failedByReason") or {}).items())
        notes.append(f"{counts['failed']} failed ({reasons})" if reasons else f"{counts['failed']} failed")
    if counts.get("releasing"):
        notes.append(f"{counts['releasing']} no longer targeted, being given back")
    return "".join(f", {note}" for note in notes)


@dataclass(frozen=True)
class Assessment:
    """Where a wait stands: done (verified or failed) or still going, and whether the operator has answered."""

    done: bool
    ok: bool
    observed: bool
    reason: str
    message: str


def assess(obj: Mapping[str, Any], generation: int) -> Assessment:
    """Judge an object against the generation we wrote, the kstatus way: Ready or Stalled at that generation."""
    status = obj.get("status") or {}
    observed = status.get("observedGeneration")
    if observed is None or observed < generation:
        return Assessment(
            False, False, False, Reason.NOT_OBSERVED, f"waiting for the operator to observe generation {generation}"
        )
    ready, stalled = condition(obj, "Ready"), condition(obj, "Stalled")

    def current(c: Mapping[str, Any] | None) -> bool:
        return c is not None and (c.get("observedGeneration") is None or c["observedGeneration"] >= generation)

    if current(ready) and ready is not None and ready.get("status") == "True":
        return Assessment(True, True, True, ready.get("reason", ""), ready.get("message", ""))
    if current(stalled) and stalled is not None and stalled.get("status") == "True":
        return Assessment(True, False, True, stalled.get("reason", ""), stalled.get("message", ""))
    source = ready if ready is not None else {}
    return Assessment(False, False, True, source.get("reason", ""), source.get("message", ""))


PodView = dict[str, tuple[str, str]]


def pod_view(obj: Mapping[str, Any]) -> PodView:
    """Each pod's (state, message): what a progress line reports."""
    return {
        p.get("name", ""): (p.get("state", ""), p.get("message", ""))
        for p in (obj.get("status") or {}).get("pods") or []
    }


def progress_lines(before: PodView, obj: Mapping[str, Any], elapsed: float) -> list[str]:
    """One line per pod whose state or message changed since `before`, prefixed with the seconds waited."""
    after = pod_view(obj)
    width = max((len(name) for name in after), default=0)
    lines = []
    for name, (state, message) in sorted(after.items()):
        if before.get(name) != (state, message):
            lines.append(f"[{elapsed:5.1f}s] {name:<{width}}  {state:<10}  {message}".rstrip())
    return lines


def summary_line(obj: Mapping[str, Any], outcome: Assessment, elapsed: float) -> str:
    """The last line of a wait."""
    name = (obj.get("metadata") or {}).get("name", "")
    pods = (obj.get("status") or {}).get("summary") or "0/0"
    if outcome.ok:
        return f"{name}: {pods} pods {goal(obj)} and verified in {elapsed:.1f}s ({outcome.reason})"
    return f"{name}: stalled ({outcome.reason}): {outcome.message}"
