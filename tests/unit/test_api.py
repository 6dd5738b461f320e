"""The ProcessSuspension models: round trips, the shipped examples, and bad specs rejected with the field named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from processcontrol.api import (
    API_VERSION,
    Condition,
    ConditionStatus,
    PodState,
    PodStatus,
    ProcessState,
    ProcessStatus,
    ProcessSuspension,
    ProcessSuspensionSpec,
    ProcessSuspensionStatus,
)
from processcontrol.api.duration import parse_duration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def manifest(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "ProcessSuspension",
        "metadata": {"name": "x", "namespace": "kubecf"},
        "spec": spec,
    }


def test_round_trip_of_a_full_object() -> None:
    status = ProcessSuspensionStatus(
        observed_generation=2,
        conditions=[
            Condition(
                type="Ready",
                status=ConditionStatus.TRUE,
                reason="Suspended",
                message="3/3 pods suspended",
                last_transition_time="2024-05-01T10:00:00Z",
                observed_generation=2,
            )
        ],
        pods=[
            PodStatus(
                name="database-0",
                uid="0b7f",
                state=PodState.SUSPENDED,
                processes=[ProcessStatus(job="pxc-mysql", process="galera-agent", state=ProcessState.STOPPED)],
            )
        ],
        summary="1/1",
        suspended_at="2024-05-01T10:00:00Z",
        expires_at="2024-05-01T12:00:00Z",
    )
    original = ProcessSuspension(
        metadata={"name": "restore-db", "namespace": "kubecf"},
        spec=ProcessSuspensionSpec(
            instance_group="database",
            jobs=["pxc-mysql"],
            processes=["galera-agent"],
            duration="2h",
            reason="restoring from backup, ticket OPS-1234",
            container="pxc-mysql",
        ),
        status=status,
    )
    wire = original.model_dump(by_alias=True, exclude_none=True, mode="json")
    assert wire["apiVersion"] == API_VERSION
    assert wire["spec"]["instanceGroup"] == "database"
    assert wire["status"]["conditions"][0]["lastTransitionTime"] == "2024-05-01T10:00:00Z"
    assert wire["status"]["pods"][0]["processes"][0]["state"] == "Stopped"
    again = ProcessSuspension.model_validate(wire)
    assert again == original
    assert yaml.safe_load(yaml.safe_dump(wire)) == wire


def test_defaults_of_a_minimal_spec() -> None:
    spec = ProcessSuspension.model_validate(manifest(instanceGroup="database")).spec
    assert spec.suspend is True
    assert spec.jobs == [] and spec.processes == []
    assert spec.selector is None and spec.duration is None and spec.reason is None and spec.container is None


def test_status_read_back_leniently() -> None:
    """kopf keeps bookkeeping under status.kopf; reading the status back must not fail on it."""
    status = ProcessSuspensionStatus.model_validate({"summary": "0/2", "kopf": {"progress": {}}})
    assert status.summary == "0/2"


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_validates(path: Path) -> None:
    documents = [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
    assert documents
    for document in documents:
        obj = ProcessSuspension.model_validate(document)
        assert obj.metadata["name"]
        assert obj.metadata["namespace"] == "kubecf"


def test_the_three_examples_are_there() -> None:
    names = {path.name for path in EXAMPLES}
    assert {"instance-group.yaml", "selector.yaml", "timed.yaml"} <= names
    timed = yaml.safe_load((ROOT / "examples/timed.yaml").read_text())["spec"]
    assert timed["duration"] and timed["reason"]
    selector = yaml.safe_load((ROOT / "examples/selector.yaml").read_text())["spec"]
    assert selector["selector"] and selector["jobs"] and selector["processes"]
    whole = yaml.safe_load((ROOT / "examples/instance-group.yaml").read_text())
    assert whole["spec"]["instanceGroup"] == "database" and whole["metadata"]["namespace"] == "kubecf"


SELECTOR = {"matchLabels": {"app": "db"}}

# (spec, words the error message must contain): every message names the field at fault.
BAD_SPECS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("both targets", {"instanceGroup": "database", "selector": SELECTOR}, ["instanceGroup", "selector"]),
    ("no target", {"jobs": ["pxc-mysql"]}, ["instanceGroup", "selector"]),
    ("empty selector", {"selector": {}}, ["selector", "matchLabels"]),
    ("instance group with a space", {"instanceGroup": "data base"}, ["instanceGroup"]),
    ("instance group too long", {"instanceGroup": "a" * 64}, ["instanceGroup"]),
    ("label value with a slash", {"selector": {"matchLabels": {"app": "a/b"}}}, ["matchLabels"]),
    ("label key with a space", {"selector": {"matchLabels": {"a b": "x"}}}, ["matchLabels"]),
    ("label key name longer than 63", {"selector": {"matchLabels": {"x" * 64: "v"}}}, ["matchLabels"]),
    (
        "prefixed label key name longer than 63",
        {"selector": {"matchExpressions": [{"key": "example.com/" + "x" * 64, "operator": "Exists"}]}},
        ["matchExpressions", "key"],
    ),
    ("probes not a policy", {"instanceGroup": "db", "probes": "Ignore"}, ["probes"]),
    (
        "unknown selector operator",
        {"selector": {"matchExpressions": [{"key": "app", "operator": "Like", "values": ["x"]}]}},
        ["matchExpressions", "operator"],
    ),
    (
        "In without values",
        {"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}},
        ["matchExpressions", "values"],
    ),
    (
        "Exists with values",
        {"selector": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}},
        ["matchExpressions", "values"],
    ),
    ("shell command separator in a job", {"instanceGroup": "db", "jobs": ["a;rm -rf /"]}, ["jobs"]),
    ("command substitution in a job", {"instanceGroup": "db", "jobs": ["$(id)"]}, ["jobs"]),
    ("backticks in a process", {"instanceGroup": "db", "processes": ["`id`"]}, ["processes"]),
    ("pipe in a process", {"instanceGroup": "db", "processes": ["a|b"]}, ["processes"]),
    ("option-like job", {"instanceGroup": "db", "jobs": ["-rf"]}, ["jobs"]),
    ("path traversal in a job", {"instanceGroup": "db", "jobs": [".."]}, ["jobs"]),
    ("slash in a job", {"instanceGroup": "db", "jobs": ["a/b"]}, ["jobs"]),
    ("newline in a process", {"instanceGroup": "db", "processes": ["a\nb"]}, ["processes"]),
    ("empty job name", {"instanceGroup": "db", "jobs": [""]}, ["jobs"]),
    ("job name too long", {"instanceGroup": "db", "jobs": ["a" * 129]}, ["jobs"]),
    ("too many jobs", {"instanceGroup": "db", "jobs": [f"job{i}" for i in range(65)]}, ["jobs"]),
    ("too many processes", {"instanceGroup": "db", "processes": [f"p{i}" for i in range(65)]}, ["processes"]),
    ("too many matchLabels", {"selector": {"matchLabels": {f"k{i}": "v" for i in range(33)}}}, ["matchLabels"]),
    ("negative duration", {"instanceGroup": "db", "duration": "-5m"}, ["duration"]),
    ("zero duration", {"instanceGroup": "db", "duration": "0s"}, ["duration"]),
    ("zero in two units", {"instanceGroup": "db", "duration": "0h0m"}, ["duration"]),
    ("duration without a unit", {"instanceGroup": "db", "duration": "90"}, ["duration"]),
    ("duration in days", {"instanceGroup": "db", "duration": "1d"}, ["duration"]),
    ("unparseable duration", {"instanceGroup": "db", "duration": "two hours"}, ["duration"]),
    ("empty duration", {"instanceGroup": "db", "duration": ""}, ["duration"]),
    ("duration beyond Go's range", {"instanceGroup": "db", "duration": "9999999h"}, ["duration"]),
    ("reason too long", {"instanceGroup": "db", "reason": "x" * 257}, ["reason"]),
    ("container with capitals", {"instanceGroup": "db", "container": "PXC"}, ["container"]),
    ("suspend not a boolean", {"instanceGroup": "db", "suspend": "maybe"}, ["suspend"]),
    ("misspelt field", {"instanceGroup": "db", "suspended": True}, ["suspended"]),
    ("one stage", {"instanceGroup": "db", "stages": [{"jobs": ["a"]}]}, ["stages", "two"]),
    (
        "stages and jobs",
        {"instanceGroup": "db", "jobs": ["a"], "stages": [{"jobs": ["a"]}, {"jobs": ["b"]}]},
        ["stages", "jobs"],
    ),
    ("an empty stage", {"instanceGroup": "db", "stages": [{"jobs": ["a"]}, {}]}, ["stage", "jobs or processes"]),
    ("too many stages", {"instanceGroup": "db", "stages": [{"jobs": [f"j{i}"]} for i in range(9)]}, ["stages"]),
    (
        "option-like process in a stage",
        {"instanceGroup": "db", "stages": [{"jobs": ["a"]}, {"processes": ["-x"]}]},
        ["stages"],
    ),
]


@pytest.mark.parametrize(("spec", "words"), [(s, w) for _, s, w in BAD_SPECS], ids=[n for n, _, _ in BAD_SPECS])
def test_bad_spec_is_rejected_naming_the_field(spec: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(ValidationError) as caught:
        ProcessSuspension.model_validate(manifest(**spec))
    message = str(caught.value)
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("name", ["pxc-mysql", "galera-agent", "bpm_1", "cloud_controller_ng", "a.b", "0"])
def test_good_bosh_names(name: str) -> None:
    spec = ProcessSuspensionSpec.model_validate({"instanceGroup": "db", "jobs": [name], "processes": [name]})
    assert spec.jobs == [name]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("15m", 900), ("2h", 7200), ("1h30m", 5400), ("2.5h", 9000), ("1500ms", 1.5), ("1µs", 1e-6)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == pytest.approx(seconds)
    spec = ProcessSuspensionSpec.model_validate({"instanceGroup": "db", "duration": text})
    assert spec.duration == text


def test_longest_go_duration_is_accepted() -> None:
    assert parse_duration("2562047h").days == 106751


def test_selector_with_expressions_only() -> None:
    spec = ProcessSuspensionSpec.model_validate(
        {"selector": {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "Exists"}]}}
    )
    assert spec.selector is not None
    assert spec.selector.match_expressions[0].values == []
