"""Arguments to a ProcessSuspension: selector syntax, names, validation before anything is sent."""

from __future__ import annotations

import pytest

from processcontrol.commands.spec import (
    build_spec,
    build_suspension,
    check_name,
    default_name,
    parse_selector,
    split_names,
)
from processcontrol.exceptions import InvalidArguments


@pytest.mark.parametrize(
    ("text", "selector"),
    [
        ("app=api", {"matchLabels": {"app": "api"}}),
        ("app==api, tier = web", {"matchLabels": {"app": "api", "tier": "web"}}),
        ("tier!=canary", {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["canary"]}]}),
        (
            "zone in (a, b),env notin (dev)",
            {
                "matchExpressions": [
                    {"key": "zone", "operator": "In", "values": ["a", "b"]},
                    {"key": "env", "operator": "NotIn", "values": ["dev"]},
                ]
            },
        ),
        (
            "quarks.cloudfoundry.org/az-index,!legacy",
            {
                "matchExpressions": [
                    {"key": "quarks.cloudfoundry.org/az-index", "operator": "Exists"},
                    {"key": "legacy", "operator": "DoesNotExist"},
                ]
            },
        ),
    ],
)
def test_selector_syntax_is_kubectls(text: str, selector: dict[str, object]) -> None:
    assert parse_selector(text) == selector


@pytest.mark.parametrize("text", ["", "app=api,", "a=b,a=c", "zone in (a", "a b"])
def test_bad_selectors_are_refused(text: str) -> None:
    with pytest.raises(InvalidArguments):
        parse_selector(text)


def test_names_split_on_commas_and_repeats() -> None:
    assert split_names(["pxc-mysql,galera-agent", "pxc-mysql", " ,loggr "]) == ["pxc-mysql", "galera-agent", "loggr"]
    assert split_names(None) == []


def test_default_name_is_the_instance_group_and_filters_get_a_stable_hash() -> None:
    assert default_name("database", None, [], []) == "database"
    assert default_name("Data_Base", None, [], []) == "data-base"
    filtered = default_name("database", None, ["pxc-mysql"], [])
    assert filtered.startswith("database-") and len(filtered) == len("database-") + 6
    assert filtered == default_name("database", None, ["pxc-mysql"], [])
    assert filtered != default_name("database", None, [], ["pxc-mysql"])
    assert default_name(None, "app=api", [], []).startswith("selector-")


def test_spec_holds_only_what_was_asked_and_suspend_true() -> None:
    spec = build_spec("database", None, jobs=["pxc-mysql"], reason="restore", duration="2h")
    assert spec == {
        "instanceGroup": "database",
        "jobs": ["pxc-mysql"],
        "suspend": True,
        "reason": "restore",
        "duration": "2h",
    }
    assert build_suspension("db", "kubecf", spec) == {
        "apiVersion": "processcontrol.dev/v1alpha1",
        "kind": "ProcessSuspension",
        "metadata": {"name": "db", "namespace": "kubecf"},
        "spec": spec,
    }


def test_probes_policy_is_passed_only_when_given() -> None:
    assert build_spec("database", None, probes="Skip")["probes"] == "Skip"
    assert "probes" not in build_spec("database", None)


def test_exactly_one_target() -> None:
    with pytest.raises(InvalidArguments, match="exactly one of INSTANCE_GROUP and -l"):
        build_spec(None, None)
    with pytest.raises(InvalidArguments, match="exactly one"):
        build_spec("database", "app=api")


def test_the_model_validates_with_field_paths() -> None:
    with pytest.raises(InvalidArguments) as raised:
        build_spec("database", None, jobs=["-x"], processes=["../etc"], duration="0s")
    message = str(raised.value)
    assert message.startswith("invalid suspension, nothing was sent:")
    assert "spec.jobs.0: String should match pattern" in message
    assert "spec.processes.0:" in message
    assert "spec.duration: duration must be positive" in message


def test_an_empty_selector_is_refused_by_the_model() -> None:
    with pytest.raises(InvalidArguments, match="invalid suspension"):
        build_spec(None, "app=")


@pytest.mark.parametrize("name", ["restore-db", "a", "db.v1"])
def test_good_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["Restore", "-db", "db_1", "x" * 254, ""])
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidArguments):
        check_name(name)
