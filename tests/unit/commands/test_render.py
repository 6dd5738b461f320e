"""What the CLI prints, from status objects alone: tables, describe, progress and the wait verdict."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import yaml
from gitops.objects import SCENARIOS

from processcontrol.commands import render

NOW = datetime(2026, 11, 28, 12, 30, 0, tzinfo=UTC)


def scenario(name: str) -> dict[str, Any]:
    return SCENARIOS[name]()


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 600, "5h10m"),
        (30 * 3600, "30h"),
        (3 * 86400 + 3600, "3d1h"),
        (100 * 86400, "100d"),
        (800 * 86400, "2y70d"),
        (-5, "<invalid>"),
    ],
)
def test_ages_read_like_kubectls(seconds: float, text: str) -> None:
    assert render.human_duration(seconds) == text


def test_table_pads_all_but_the_last_column() -> None:
    assert render.table(["A", "LONGER"], [["xyz", "1"], ["", "22"]]) == "A     LONGER\nxyz   1\n      22"


def test_get_table_has_the_printer_columns() -> None:
    objects = [scenario("suspended"), scenario("suspending"), scenario("new")]
    objects[1]["metadata"]["name"] = "api"
    objects[2]["metadata"]["name"] = "fresh"
    objects[0]["spec"]["requestedBy"] = {"username": "alice"}
    assert render.get_table(objects, NOW).splitlines() == [
        "NAME         SUSPEND   READY   PODS   STATUS       REQUESTER   REASON                                   AGE",
        "restore-db   true      True    3/3    Suspended    alice       restoring from backup, ticket OPS-1234   30m",
        "api          true      False   1/3    Suspending   -           restoring from backup, ticket OPS-1234   30m",
        "fresh        true      -       -      -            -           restoring from backup, ticket OPS-1234   30m",
    ]


def test_wide_and_all_namespaces_add_columns() -> None:
    obj = scenario("stalled.no-matching-pods")
    lines = render.get_table([obj], NOW, wide=True, all_namespaces=True).splitlines()
    assert lines[0].split() == [
        "NAMESPACE", "NAME", "SUSPEND", "READY", "PODS", "STATUS", "REQUESTER", "REASON", "AGE", "TARGET", "EXPIRES",
        "STAGE", "VIA", "MESSAGE",
    ]  # fmt: skip
    assert lines[1].startswith("kubecf ")
    assert "instance group databse" in lines[1]
    assert lines[1].endswith("no running pod matches the target")


def wide_cell(obj: dict[str, Any], column: str) -> str:
    header, row = render.get_table([obj], NOW, wide=True).splitlines()
    at = header.index(column)
    return row[at:].split("   ")[0]


def test_wide_shows_a_staged_suspensions_stage_as_kubectl_does() -> None:
    staged = scenario("suspending")
    staged["status"]["stage"] = {"index": 2, "of": 3, "phase": "Stopping", "summary": "2/3 Stopping"}
    assert wide_cell(staged, "STAGE") == "2/3 Stopping"
    assert wide_cell(scenario("suspended"), "STAGE") == "-"


def test_get_says_why_a_suspension_is_not_ready() -> None:
    # A group that matches nothing: READY False and PODS 0/0 alone do not say why; STATUS does.
    obj = scenario("stalled.no-matching-pods")
    header, row = render.get_table([obj], NOW).splitlines()
    cells = dict(zip(header.split(), row.split(), strict=False))
    assert (cells["READY"], cells["PODS"], cells["STATUS"]) == ("False", "0/0", "NoMatchingPods")


def test_selector_targets_read_in_kubectl_syntax() -> None:
    spec = {
        "selector": {
            "matchLabels": {"app": "api"},
            "matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["a", "b"]},
                {"key": "legacy", "operator": "DoesNotExist"},
            ],
        }
    }
    assert render.target(spec) == "selector app=api,zone in (a,b),!legacy"


def test_dump_drops_managed_fields_and_lists_many() -> None:
    obj = scenario("suspended")
    obj["metadata"]["managedFields"] = [{"manager": "processcontrol-cli"}]
    single = json.loads(render.dump([obj], "json", single=True))
    assert "managedFields" not in single["metadata"]
    assert single["status"]["summary"] == "3/3"
    listed = yaml.safe_load(render.dump([obj, obj], "yaml", single=False))
    assert listed["kind"] == "List" and len(listed["items"]) == 2


def test_describe_shows_spec_times_conditions_pods_and_processes() -> None:
    text = render.describe(scenario("suspended"), NOW)
    assert "Name:          restore-db" in text
    assert "Target:        instance group database" in text
    assert "Jobs:          <all>" in text
    assert "Expires At:    2026-11-28T14:00:06Z (in 90m)" in text
    assert "Pods:          3/3 suspended" in text
    assert "Generation:    1 (observed: 1)" in text
    assert "  Ready           True     Suspended     29m     3/3 pods suspended, verified" in text
    rows = text.split("\nPods:\n", 1)[1].splitlines()
    assert rows[0].split() == ["POD", "STATE", "PROCESS", "PROCESS", "STATE", "PID", "MESSAGE"]
    assert rows[1].split() == [
        "database-0",
        "Suspended",
        "loggregator-agent/loggr-syslog-agent",
        "Stopped",
        "-",
        "3",
        "processes",
        "stopped",
    ]
    assert [row.split()[0] for row in rows[2:4]] == ["pxc-mysql/galera-agent", "pxc-mysql/mysql"]  # sorted


def test_an_expired_suspension_counts_resumed_pods() -> None:
    assert "Pods:          3/3 resumed" in render.describe(scenario("expired"), NOW)


def test_describe_shows_why_a_pod_failed() -> None:
    text = render.describe(scenario("stalled.no-sockets"), NOW)
    assert "Stalled         True     NoSockets" in text
    failed = next(line for line in text.splitlines() if line.strip().startswith("database-2"))
    assert failed.split()[:5] == ["database-2", "Failed", "-", "-", "-"]
    assert failed.endswith("no containerrun sockets matching jobs=pxc-mysql in container pxc-mysql")


def test_describe_shows_restarts_on_their_own_not_as_a_probe_conflict() -> None:
    # A container restarted (say, OOM-killed) in a pod without any probe conflict.
    obj = scenario("suspended")
    obj["status"]["pods"][0]["restarts"] = 1
    text = render.describe(obj, NOW)
    assert "Probe conflicts" not in text
    assert "\nRestarts (of targeted containers since the suspension took hold; each is stopped again):\n" in text
    assert "\n  database-0: 1\n" in text + "\n"
    # With a conflict too, each in its block.
    obj["status"]["pods"][0]["probeConflicts"] = ["pxc-mysql-mysql: livenessProbe tcpSocket :3306"]
    blocks = render.describe(obj, NOW).split("\n\n")
    (probes,) = [b for b in blocks if b.startswith("Probe conflicts")]
    (restarts,) = [b for b in blocks if b.startswith("Restarts")]
    assert probes.splitlines()[1:] == ["  database-0: pxc-mysql-mysql: livenessProbe tcpSocket :3306"]
    assert restarts.splitlines()[1:] == ["  database-0: 1"]


def test_describe_shows_who_asked() -> None:
    obj = scenario("suspended")
    assert "Requested By:  <none>" in render.describe(obj, NOW)
    obj["spec"]["requestedBy"] = {"username": "alice"}
    assert "Requested By:  alice\n" in render.describe(obj, NOW)
    flux = "system:serviceaccount:flux-system:kustomize-controller"
    obj["spec"]["requestedBy"] = {"username": "alice", "via": flux}
    assert f"Requested By:  alice (via {flux})\n" in render.describe(obj, NOW)


def test_describe_shows_the_stages_and_the_current_one() -> None:
    obj = scenario("suspended")
    obj["spec"].pop("jobs", None)
    obj["spec"].pop("processes", None)
    obj["spec"]["stages"] = [{"processes": ["galera-agent"]}, {"jobs": ["pxc-mysql"], "processes": ["mysql"]}]
    obj["status"]["stage"] = {"index": 2, "of": 2, "phase": "Stopping", "summary": "2/2 Stopping"}
    text = render.describe(obj, NOW)
    assert "Stages:        1: processes galera-agent; 2: jobs pxc-mysql processes mysql\n" in text
    assert "Stage:         2/2 Stopping\n" in text
    assert "Jobs:" not in text and "Processes:" not in text


def test_describe_without_status() -> None:
    text = render.describe(scenario("new"), NOW)
    assert "<none> (the operator has not written a status yet)" in text
    assert "Generation:    1 (observed: none)" in text


@pytest.mark.parametrize(
    ("name", "done", "ok", "observed", "reason"),
    [
        ("new", False, False, False, "NotObserved"),
        ("suspending", False, False, True, "Suspending"),
        ("suspended", True, True, True, "Suspended"),
        ("spec-changed", False, False, False, "NotObserved"),
        ("resuming", False, False, True, "Resuming"),
        ("resumed", True, True, True, "Resumed"),
        ("expired", True, True, True, "Expired"),
        ("stalled.no-matching-pods", True, False, True, "NoMatchingPods"),
        ("stalled.exec-forbidden", True, False, True, "ExecForbidden"),
    ],
)
def test_assess_per_state(name: str, done: bool, ok: bool, observed: bool, reason: str) -> None:
    obj = scenario(name)
    outcome = render.assess(obj, obj["metadata"]["generation"])
    assert (outcome.done, outcome.ok, outcome.observed, outcome.reason) == (done, ok, observed, reason)


def test_assess_ignores_conditions_of_an_older_generation() -> None:
    obj = scenario("suspended")
    obj["status"]["observedGeneration"] = 2
    assert not render.assess(obj, 2).done


def test_progress_lines_report_changes_only() -> None:
    first = scenario("suspending")
    lines = render.progress_lines({}, first, 1.25)
    assert lines == [
        "[  1.2s] database-0  Suspended   3 processes stopped",
        "[  1.2s] database-1  Suspending  waiting for pxc-mysql/galera-agent, pxc-mysql/mysql",
        "[  1.2s] database-2  Suspending",
    ]
    second = scenario("suspended")
    assert render.progress_lines(render.pod_view(first), second, 2.0) == [
        "[  2.0s] database-1  Suspended   3 processes stopped",
        "[  2.0s] database-2  Suspended   3 processes stopped",
    ]
    assert render.progress_lines(render.pod_view(second), second, 3.0) == []


def test_summary_lines() -> None:
    obj = scenario("suspended")
    assert (
        render.summary_line(obj, render.assess(obj, 1), 4.25)
        == "restore-db: 3/3 pods suspended and verified in 4.2s (Suspended)"
    )
    stalled = scenario("stalled.no-matching-pods")
    assert (
        render.summary_line(stalled, render.assess(stalled, 1), 1)
        == "restore-db: stalled (NoMatchingPods): no running pod matches the target"
    )
    resumed = scenario("resumed")
    assert render.summary_line(resumed, render.assess(resumed, 2), 1).startswith("restore-db: 3/3 pods resumed and")
