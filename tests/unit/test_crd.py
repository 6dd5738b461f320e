"""The generated CRD: structural, described, bounded, and equal to crds/ and to `processcontrol crd`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from processcontrol import cli
from processcontrol.api import API_VERSION, ProcessSuspension
from processcontrol.api.crd import PRINTER_COLUMNS, SPEC_RULES, build_crd, render_crd, to_structural

ROOT = Path(__file__).resolve().parents[2]
CHECKED_IN = ROOT / "crds" / "processsuspensions.yaml"

Schema = dict[str, Any]


def openapi_schema() -> Schema:
    schema: Schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def walk(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    yield path, schema
    for name, prop in schema.get("properties", {}).items():
        yield from walk(prop, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


# --- the file, the command -------------------------------------------------------------------------------


def test_checked_in_crd_equals_the_generated_one() -> None:
    assert CHECKED_IN.read_text() == render_crd(), "crds/ is stale: run `make crds` and commit the result"


def test_rendering_is_stable() -> None:
    assert render_crd() == render_crd()
    assert yaml.safe_load(render_crd()) == build_crd()


def test_processcontrol_crd_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["crd"]) == 0
    assert capsys.readouterr().out == render_crd()


# --- the shape ---------------------------------------------------------------------------------------------


def test_names_scope_and_version() -> None:
    crd = build_crd()
    assert crd["metadata"]["name"] == "processsuspensions.processcontrol.dev"
    spec = crd["spec"]
    assert spec["group"] == "processcontrol.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == "ProcessSuspension"
    assert spec["names"]["shortNames"] == ["psus"]
    assert spec["names"]["categories"] == ["processcontrol"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    assert API_VERSION == "processcontrol.dev/v1alpha1"


def test_structural() -> None:
    """What the API server demands of a structural schema, and what `kubectl explain` needs."""
    schema = openapi_schema()
    assert schema["type"] == "object"
    for path, node in walk(schema):
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path
        for forbidden in ("$ref", "$defs", "anyOf", "oneOf", "allOf", "not", "title", "const", "propertyNames"):
            assert forbidden not in node, (path, forbidden)
        assert "patternProperties" not in node, path
        assert not ("properties" in node and "additionalProperties" in node), path
        assert node.get("default", ...) is not None, path
        if node["type"] == "object" and not node.get("x-kubernetes-preserve-unknown-fields"):
            assert "properties" in node or "additionalProperties" in node or path == ".metadata", path
        if node["type"] == "array":
            assert "items" in node, path
        if path.startswith(".metadata."):
            pytest.fail("metadata may only be {type: object}")


def test_every_field_is_described() -> None:
    for path, node in walk(openapi_schema()):
        if path in ("", ".metadata") or path.endswith(("[]", "{}")):
            continue
        assert node.get("description"), f"{path} has no description (kubectl explain shows nothing)"


def test_every_spec_string_and_list_is_bounded() -> None:
    """Bounds keep the CEL cost estimate low and objects small; the status is bounded too."""
    for path, node in walk(openapi_schema()):
        if node["type"] == "string" and path not in (".apiVersion", ".kind"):
            assert "maxLength" in node or "enum" in node, path
        if node["type"] == "array":
            assert "maxItems" in node, path
        if "additionalProperties" in node:
            assert "maxProperties" in node, path


def test_spec_defaults_and_patterns() -> None:
    spec = openapi_schema()["properties"]["spec"]["properties"]
    assert spec["suspend"] == {
        "type": "boolean",
        "description": spec["suspend"]["description"],
        "default": True,
    }
    assert spec["jobs"]["items"]["pattern"] == "^[A-Za-z0-9][A-Za-z0-9._-]*$"
    assert spec["processes"]["items"]["pattern"] == spec["jobs"]["items"]["pattern"]
    assert spec["duration"]["pattern"].startswith("^(")


def test_conditions_are_a_map_keyed_by_type() -> None:
    conditions = openapi_schema()["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert "type" in item["required"]
    assert set(item["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "lastTransitionTime",
        "observedGeneration",
    }
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def test_status_keeps_kopf_bookkeeping() -> None:
    kopf = openapi_schema()["properties"]["status"]["properties"]["kopf"]
    assert kopf["x-kubernetes-preserve-unknown-fields"] is True


def test_printer_columns() -> None:
    (version,) = build_crd()["spec"]["versions"]
    columns = {column["name"]: column for column in version["additionalPrinterColumns"]}
    assert list(columns) == [
        "Suspend",
        "Ready",
        "Pods",
        "Status",
        "Requester",
        "Reason",
        "Age",
        "Expires",
        "Stage",
        "Via",
        "Message",
    ]
    assert columns["Suspend"]["jsonPath"] == ".spec.suspend"
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Pods"]["jsonPath"] == ".status.summary"
    assert columns["Reason"]["jsonPath"] == ".spec.reason"
    # Why it is not Ready, in the default view: the Ready condition's reason (its message with -o wide).
    assert columns["Status"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert columns["Message"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].message'
    assert columns["Requester"]["jsonPath"] == ".spec.requestedBy.username"
    assert columns["Via"]["jsonPath"] == ".spec.requestedBy.via"
    assert columns["Stage"]["jsonPath"] == ".status.stage.summary"
    assert {c["name"] for c in PRINTER_COLUMNS if c.get("priority") == 1} == {"Stage", "Expires", "Via", "Message"}
    assert columns["Age"] == {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}
    assert columns["Expires"]["jsonPath"] == ".status.expiresAt"
    assert columns["Expires"]["priority"] == 1  # -o wide only
    assert columns["Expires"]["type"] == "string"  # a date column shows a future time as <invalid>
    assert all("priority" not in column for column in PRINTER_COLUMNS[:7])


def test_rules_name_only_fields_that_exist() -> None:
    spec = openapi_schema()["properties"]["spec"]
    for rule in spec["x-kubernetes-validations"]:
        for field in re.findall(r"(?:self|oldSelf)\.(\w+)", rule["rule"]):
            assert field in spec["properties"], (field, rule)
        assert rule["message"]


def test_every_target_field_is_immutable() -> None:
    transition = [
        rule
        for rule in SPEC_RULES
        if "oldSelf" in rule["rule"] and "probes" not in rule["rule"] and "requestedBy" not in rule["rule"]
    ]
    fields = {re.search(r"oldSelf\.(\w+)", rule["rule"]).group(1) for rule in transition}  # type: ignore[union-attr]
    assert fields == {"instanceGroup", "selector", "jobs", "processes", "stages", "container"}
    for rule in transition:
        assert rule["message"].endswith("is immutable: delete and recreate to change the target")


# --- the converter refuses what a structural schema cannot hold --------------------------------------------


@pytest.mark.parametrize(
    "schema",
    [
        {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        {"type": "string", "oneOf": [{"pattern": "a"}]},
        {"description": "no type"},
        {"type": "object", "additionalProperties": True},
    ],
)
def test_converter_refuses(schema: Schema) -> None:
    with pytest.raises(ValueError, match=r"structural|additionalProperties|anyOf"):
        to_structural(schema)


def test_converter_inlines_refs_and_optionals() -> None:
    converted = to_structural(
        {
            "$defs": {"Inner": {"type": "object", "title": "Inner", "properties": {"n": {"type": "integer"}}}},
            "type": "object",
            "properties": {
                "inner": {"anyOf": [{"$ref": "#/$defs/Inner"}, {"type": "null"}], "default": None, "description": "d"}
            },
        }
    )
    assert converted == {
        "type": "object",
        "properties": {
            "inner": {
                "type": "object",
                "description": "d",
                "properties": {"n": {"type": "integer", "format": "int64"}},
            }
        },
    }


def test_map_keys_get_a_cel_rule() -> None:
    converted = to_structural(
        {
            "type": "object",
            "patternProperties": {"^[a-z]+$": {"type": "string", "maxLength": 5}},
            "propertyNames": {"maxLength": 10},
            "maxProperties": 3,
        }
    )
    assert converted == {
        "type": "object",
        "maxProperties": 3,
        "additionalProperties": {"type": "string", "maxLength": 5},
        "x-kubernetes-validations": [
            {
                "rule": "self.all(k, size(k) <= 10 && k.matches(r'^[a-z]+$'))",
                "message": "every key must be at most 10 characters and match ^[a-z]+$",
            }
        ],
    }


def test_match_labels_keys_are_checked_by_the_api_server() -> None:
    selector = openapi_schema()["properties"]["spec"]["properties"]["selector"]
    (rule,) = selector["properties"]["matchLabels"]["x-kubernetes-validations"]
    assert rule["rule"].startswith("self.all(k, size(k) <= 317 && k.matches(r'^")
    assert rule["message"].startswith("matchLabels keys must be label keys")


def test_the_package_still_exports_the_models() -> None:
    import processcontrol.api as api

    assert api.ProcessSuspension is ProcessSuspension
    assert api.GROUP == "processcontrol.dev"
