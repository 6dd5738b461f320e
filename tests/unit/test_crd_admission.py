"""The generated CRD admits what the models admit and rejects what they reject, with the same words.

The API server is not here, so `admit()` plays its part: the OpenAPI keywords the CRD uses (with kubectl's
strict field validation), then the CEL rules, evaluated by cel-python (a pure-Python CEL; this module is
skipped when it is not installed). The real kube-apiserver, with its CEL type checker and cost estimator,
runs the same manifests in the e2e tests.
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import celpy  # cel-python evaluates the CEL rules (a test dependency)
import pytest
import yaml
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError
from test_api import BAD_SPECS, EXAMPLES, manifest

from processcontrol.api import ProcessSuspension
from processcontrol.api.crd import build_crd

Schema = dict[str, Any]


def openapi_schema() -> Schema:
    schema: Schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


# Any: after the isinstance check below, `value` is used as the JSON type the schema names.
_TYPES: dict[str, Any] = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "integer": int,
}


@functools.cache
def _program(rule: str) -> Any:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def _cel(rule: str, self: Any, old: Any) -> bool:
    program = _program(rule)
    activation = {"self": json_to_cel(self)}
    if old is not None:
        activation["oldSelf"] = json_to_cel(old)
    try:
        result = program.evaluate(activation)
    except CELEvalError:
        return False  # an evaluation error rejects the object, as in the API server
    return result is True or result == celpy.celtypes.BoolType(True)


def admit(schema: Schema, value: Any, old: Any = None, path: str = "") -> list[str]:
    """The errors the API server would report (OpenAPI validation with strict fields, then CEL)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    kind = schema["type"]
    if not isinstance(value, _TYPES[kind]) or (kind == "integer" and isinstance(value, bool)):
        return [f"{path}: must be of type {kind}"]
    errors: list[str] = []
    if kind == "string":
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: may not be more than {schema['maxLength']} characters")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: should match {schema['pattern']!r}")
        if "enum" in schema and value not in schema["enum"]:
            errors.append(f"{path}: Unsupported value: {value!r}")
    elif kind == "array":
        if len(value) > schema.get("maxItems", len(value)):
            errors.append(f"{path}: must have at most {schema['maxItems']} items")
        for index, item in enumerate(value):
            errors += admit(schema["items"], item, None, f"{path}[{index}]")
    elif kind == "object":
        properties = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{path}.{name}: Required value")
        if len(value) > schema.get("maxProperties", len(value)):
            errors.append(f"{path}: must have at most {schema['maxProperties']} items")
        for name, item in value.items():
            if name in properties:
                old_item = old.get(name) if isinstance(old, dict) else None
                errors += admit(properties[name], item, old_item, f"{path}.{name}")
            elif isinstance(schema.get("additionalProperties"), dict):
                errors += admit(schema["additionalProperties"], item, None, f"{path}.{name}")
            elif path != ".metadata":
                errors.append(f'{path}: unknown field "{name}"')  # kubectl --validate=strict, the default
    if errors:
        return errors
    for rule in schema.get("x-kubernetes-validations", []):
        if "oldSelf" in rule["rule"] and old is None:
            continue  # a transition rule runs on updates only
        if not _cel(rule["rule"], value, old):
            errors.append(f"{path}: Invalid value: {rule['message']}")
    return errors


def with_defaults(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["spec"].setdefault("suspend", True)
    return obj


@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_examples_are_admitted(path: Path) -> None:
    for document in yaml.safe_load_all(path.read_text()):
        assert admit(openapi_schema(), with_defaults(document)) == []


# cel-python's duration() has Python's range, while Go's (so CEL-go's, in the API server) overflows
# past 2562047h, an evaluation error that rejects the object; the e2e tests see that one.
MODEL_ONLY = {"duration beyond Go's range"}


@pytest.mark.parametrize(
    ("spec", "words"),
    [(s, w) for name, s, w in BAD_SPECS if name not in MODEL_ONLY],
    ids=[name for name, _, _ in BAD_SPECS if name not in MODEL_ONLY],
)
def test_bad_spec_is_rejected_by_the_crd(spec: dict[str, Any], words: list[str]) -> None:
    errors = admit(openapi_schema(), manifest(**spec))
    assert errors, "admitted"
    text = "\n".join(errors)
    assert any(word in text for word in words), text


def test_rejection_message_as_kubectl_shows_it() -> None:
    errors = admit(openapi_schema(), manifest(instanceGroup="database", selector={"matchLabels": {"a": "b"}}))
    assert errors == [".spec: Invalid value: exactly one of instanceGroup and selector must be set"]
    errors = admit(openapi_schema(), manifest(instanceGroup="database", duration="0s"))
    assert errors == [".spec: Invalid value: duration must be a positive duration such as 90m, 2h or 1h30m"]


UPDATES_REJECTED = [
    ("instanceGroup", {"instanceGroup": "database"}, {"instanceGroup": "api"}),
    ("selector", {"instanceGroup": "database"}, {"selector": {"matchLabels": {"a": "b"}}}),
    ("selector", {"selector": {"matchLabels": {"a": "b"}}}, {"selector": {"matchLabels": {"a": "c"}}}),
    ("jobs", {"instanceGroup": "db"}, {"instanceGroup": "db", "jobs": ["pxc-mysql"]}),
    ("jobs", {"instanceGroup": "db", "jobs": ["a", "b"]}, {"instanceGroup": "db", "jobs": ["a"]}),
    ("processes", {"instanceGroup": "db", "processes": ["a"]}, {"instanceGroup": "db"}),
    ("container", {"instanceGroup": "db"}, {"instanceGroup": "db", "container": "main"}),
    ("container", {"instanceGroup": "db", "container": "a"}, {"instanceGroup": "db", "container": "b"}),
]


@pytest.mark.parametrize(("field", "old", "new"), UPDATES_REJECTED)
def test_target_is_immutable(field: str, old: dict[str, Any], new: dict[str, Any]) -> None:
    errors = admit(openapi_schema(), manifest(**new), old=manifest(**old))
    assert f"{field} is immutable: delete and recreate to change the target" in "\n".join(errors)


@pytest.mark.parametrize(
    "change",
    [
        {"suspend": False},
        {"reason": "another reason"},
        {"duration": "4h"},
        {"jobs": []},  # absent and empty both mean every job
    ],
)
def test_the_rest_may_change(change: dict[str, Any]) -> None:
    old = manifest(instanceGroup="db", suspend=True, duration="2h", reason="r")
    new = copy.deepcopy(old)
    new["spec"].update(change)
    assert admit(openapi_schema(), new, old=old) == []


@pytest.mark.parametrize(
    ("old", "new", "admitted"),
    [
        ("Refuse", "Warn", True),  # the user decided: stop them anyway
        ("Refuse", "Skip", True),
        (None, "Warn", True),  # absent means Warn
        ("Warn", None, True),
        ("Warn", "Skip", False),  # a hold would have to move from one set of processes to another
        (None, "Skip", False),
        ("Skip", "Refuse", False),
    ],
)
def test_probes_may_change_only_from_refuse(old: str | None, new: str | None, admitted: bool) -> None:
    before = manifest(instanceGroup="db", **({"probes": old} if old else {}))
    after = manifest(instanceGroup="db", **({"probes": new} if new else {}))
    errors = admit(openapi_schema(), after, old=before)
    assert (errors == []) is admitted, errors
    if not admitted:
        assert errors == [
            ".spec: Invalid value: probes can only be changed from Refuse: delete and recreate to change it"
        ]


ALICE = {"username": "alice"}
BOB = {"username": "bob"}


@pytest.mark.parametrize(
    ("old", "new", "admitted"),
    [
        ({"requestedBy": ALICE}, {"requestedBy": ALICE, "reason": "changed"}, True),
        ({"requestedBy": ALICE}, {"requestedBy": ALICE, "suspend": False}, True),  # a resume keeps who asked
        ({"requestedBy": ALICE}, {"requestedBy": BOB}, False),
        ({"requestedBy": ALICE}, {}, False),  # removed
        ({}, {"requestedBy": BOB}, False),  # added to a suspension in force
        ({"requestedBy": ALICE}, {"requestedBy": {"username": "alice", "via": "flux"}}, False),
        # A new suspension of the same object: the one who suspends again is the new requester.
        ({"requestedBy": ALICE, "suspend": False}, {"requestedBy": BOB, "suspend": True}, True),
        ({"requestedBy": ALICE, "suspend": False}, {"requestedBy": BOB}, True),  # suspend defaults to true
        ({"suspend": False}, {"requestedBy": BOB, "suspend": True}, True),
        ({"requestedBy": ALICE, "suspend": False}, {"requestedBy": BOB, "suspend": False}, False),
        # A preview made real is a new suspension too; a preview holds nothing, so suspending one is none.
        ({"requestedBy": ALICE, "preview": True}, {"requestedBy": BOB, "preview": False}, True),
        ({"requestedBy": ALICE, "preview": True}, {"requestedBy": BOB}, True),
        ({"requestedBy": ALICE, "preview": True}, {"requestedBy": BOB, "preview": True, "reason": "x"}, False),
        ({"requestedBy": ALICE}, {"requestedBy": BOB, "preview": True}, False),
        ({"requestedBy": ALICE, "suspend": False}, {"requestedBy": BOB, "preview": True}, False),
    ],
)
def test_the_requester_stays_except_when_suspending_again(
    old: dict[str, Any], new: dict[str, Any], admitted: bool
) -> None:
    errors = admit(openapi_schema(), manifest(instanceGroup="db", **new), old=manifest(instanceGroup="db", **old))
    assert (errors == []) is admitted, errors
    if not admitted:
        assert errors == [
            ".spec: Invalid value: requestedBy cannot be changed or removed, except by an update that suspends "
            "again (suspend from false to true, or preview from true to false)"
        ]


def test_models_and_crd_agree_on_the_examples() -> None:
    for path in EXAMPLES:
        for document in yaml.safe_load_all(path.read_text()):
            dumped = ProcessSuspension.model_validate(document).model_dump(by_alias=True, exclude_none=True)
            dumped["metadata"] = document["metadata"]
            assert admit(openapi_schema(), dumped) == [], path
