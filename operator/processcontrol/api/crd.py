"""The ProcessSuspension CustomResourceDefinition, generated from the pydantic models (`processcontrol crd`)."""

from __future__ import annotations

import argparse
import copy
import sys
from typing import Any

import yaml
from pydantic import BaseModel

from processcontrol.api.models import (
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    ProcessSuspensionSpec,
    ProcessSuspensionStatus,
)

Schema = dict[str, Any]

SHORT_NAMES = ["psus"]
CATEGORIES = ["processcontrol"]

# JSON-schema keywords that a structural CRD schema holds as they are; anything else the converter
# does not know is an error, so a new pydantic construct can never be dropped silently.
_KEPT = frozenset(
    {
        "type",
        "description",
        "format",
        "pattern",
        "minLength",
        "maxLength",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "enum",
        "default",
        "required",
    }
)
# Keywords that carry nothing the API server needs: `title` is pydantic's echo of the field name;
# `additionalProperties: false` (extra="forbid") is what pruning and kubectl's strict field
# validation already do, and a structural schema may not combine it with `properties`.
_DROPPED = frozenset({"title"})

IMMUTABLE_MESSAGE = "{field} is immutable: delete and recreate to change the target"
REQUESTER_MESSAGE = (
    "requestedBy cannot be changed or removed, except by an update that suspends again (suspend from false to true, "
    "or preview from true to false)"
)

STAGES_MESSAGE = "stages needs at least two stages: one is jobs/processes"
STAGES_EXCLUSIVE_MESSAGE = "stages and jobs/processes are exclusive: put the filters into the stages"
# The twin of Stage's pydantic validator.
STAGE_RULES: list[dict[str, str]] = [
    {
        "rule": "(has(self.jobs) && size(self.jobs) > 0) || (has(self.processes) && size(self.processes) > 0)",
        "message": "a stage needs jobs or processes: an empty one would select every process",
    },
]

# The CEL rules on `spec`. Each says in its message what a person must do. Rules on optional fields sit
# on `spec` and compare has() on both sides, because a rule on the field itself is not evaluated when the
# field is added or removed. Every operand is bounded (maxLength, maxItems), which keeps the estimated cost
# far inside the API server's per-CRD budget.
SPEC_RULES: list[dict[str, str]] = [
    {
        "rule": "has(self.instanceGroup) != has(self.selector)",
        "message": "exactly one of instanceGroup and selector must be set",
    },
    {
        "rule": "!has(self.duration) || duration(self.duration) > duration('0s')",
        "message": "duration must be a positive duration such as 90m, 2h or 1h30m",
    },
    {
        "rule": (
            "has(self.instanceGroup) == has(oldSelf.instanceGroup)"
            " && (!has(self.instanceGroup) || self.instanceGroup == oldSelf.instanceGroup)"
        ),
        "message": IMMUTABLE_MESSAGE.format(field="instanceGroup"),
    },
    {
        "rule": (
            "has(self.selector) == has(oldSelf.selector) && (!has(self.selector) || self.selector == oldSelf.selector)"
        ),
        "message": IMMUTABLE_MESSAGE.format(field="selector"),
    },
    {
        # An absent list and an empty one mean the same (every job), so both sides default to [].
        "rule": "(has(self.jobs) ? self.jobs : []) == (has(oldSelf.jobs) ? oldSelf.jobs : [])",
        "message": IMMUTABLE_MESSAGE.format(field="jobs"),
    },
    {
        "rule": "(has(self.processes) ? self.processes : []) == (has(oldSelf.processes) ? oldSelf.processes : [])",
        "message": IMMUTABLE_MESSAGE.format(field="processes"),
    },
    {
        "rule": "(has(self.stages) ? self.stages : []) == (has(oldSelf.stages) ? oldSelf.stages : [])",
        "message": IMMUTABLE_MESSAGE.format(field="stages"),
    },
    {
        "rule": "!has(self.stages) || size(self.stages) != 1",
        "message": STAGES_MESSAGE,
    },
    {
        "rule": (
            "!has(self.stages) || size(self.stages) == 0"
            " || ((!has(self.jobs) || size(self.jobs) == 0) && (!has(self.processes) || size(self.processes) == 0))"
        ),
        "message": STAGES_EXCLUSIVE_MESSAGE,
    },
    {
        "rule": (
            "has(self.container) == has(oldSelf.container)"
            " && (!has(self.container) || self.container == oldSelf.container)"
        ),
        "message": IMMUTABLE_MESSAGE.format(field="container"),
    },
    {
        # Refuse holds nothing back in a conflicting pod, so leaving it only adds holds; Warn and Skip hold
        # different processes, and the operator does not move a hold from one set to the other.
        "rule": (
            "(has(self.probes) ? self.probes : 'Warn') == (has(oldSelf.probes) ? oldSelf.probes : 'Warn')"
            " || (has(oldSelf.probes) && oldSelf.probes == 'Refuse')"
        ),
        "message": "probes can only be changed from Refuse: delete and recreate to change it",
    },
    {
        # Who asked stays who asked; a new suspension of the same object (suspend from false to true, or a preview
        # made real: preview from true to false; an update that makes it hold where it held nothing) has a new
        # requester. Whose name it may be is the admission policy processcontrol-requester's to check: CEL in a
        # CRD cannot see who sends the request.
        "rule": (
            "(has(self.requestedBy) == has(oldSelf.requestedBy)"
            " && (!has(self.requestedBy) || self.requestedBy == oldSelf.requestedBy))"
            " || ((has(self.suspend) ? self.suspend : true) && !(has(self.preview) && self.preview)"
            " && !((has(oldSelf.suspend) ? oldSelf.suspend : true) && !(has(oldSelf.preview) && oldSelf.preview)))"
        ),
        "message": REQUESTER_MESSAGE,
    },
]

# The twins of LabelSelector's and LabelSelectorRequirement's pydantic validators.
SELECTOR_RULES: list[dict[str, str]] = [
    {
        "rule": (
            "(has(self.matchLabels) && size(self.matchLabels) > 0)"
            " || (has(self.matchExpressions) && size(self.matchExpressions) > 0)"
        ),
        "message": "selector must have matchLabels or matchExpressions: an empty selector matches every pod",
    },
]
REQUIREMENT_RULES: list[dict[str, str]] = [
    {
        "rule": (
            "self.operator in ['In', 'NotIn']"
            " ? (has(self.values) && size(self.values) > 0)"
            " : (!has(self.values) || size(self.values) == 0)"
        ),
        "message": "values must be non-empty for In and NotIn and empty for Exists and DoesNotExist",
    },
]

LABEL_KEY_MESSAGE = (
    "matchLabels keys must be label keys: an optional DNS subdomain prefix and '/', then at most 63 "
    "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
)

# kopf keeps its own bookkeeping (handler progress) under status.kopf besides its annotations;
# without this the API server prunes it.
KOPF_STATUS: Schema = {
    "type": "object",
    "description": "Bookkeeping of the kopf framework (handler progress); not part of the API.",
    "x-kubernetes-preserve-unknown-fields": True,
}

PRINTER_COLUMNS: list[dict[str, Any]] = [
    {
        "name": "Suspend",
        "type": "boolean",
        "jsonPath": ".spec.suspend",
        "description": "Whether the processes are to be kept stopped.",
    },
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "Whether the requested state is reached and verified.",
    },
    {
        "name": "Pods",
        "type": "string",
        "jsonPath": ".status.summary",
        "description": "Pods in the requested state out of the target pods.",
    },
    {
        "name": "Status",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
        "description": "Why Ready is what it is: Suspended, Suspending, NoMatchingPods, NoSockets, ...",
    },
    {
        "name": "Requester",
        "type": "string",
        "jsonPath": ".spec.requestedBy.username",
        "description": "Who asked, as the API server saw it (see Via).",
    },
    {
        "name": "Reason",
        "type": "string",
        "jsonPath": ".spec.reason",
        "description": "Why the processes are suspended.",
    },
    {
        "name": "Age",
        "type": "date",
        "jsonPath": ".metadata.creationTimestamp",
    },
    {
        # A string, not a date: kubectl renders a date column as the age since then, and a time in
        # the future as <invalid>.
        "name": "Expires",
        "type": "string",
        "priority": 1,
        "jsonPath": ".status.expiresAt",
        "description": "When the suspension ends by itself.",
    },
    {
        "name": "Stage",
        "type": "string",
        "priority": 1,
        "jsonPath": ".status.stage.summary",
        "description": "Of a suspension with stages: the current stage, e.g. 2/3 Stopping.",
    },
    {
        "name": "Via",
        "type": "string",
        "priority": 1,
        "jsonPath": ".spec.requestedBy.via",
        "description": "The GitOps account that recorded the requester on their behalf, if one did.",
    },
    {
        "name": "Message",
        "type": "string",
        "priority": 1,
        "jsonPath": '.status.conditions[?(@.type=="Ready")].message',
        "description": "The Ready condition's message.",
    },
]


def to_structural(schema: Schema, defs: dict[str, Schema] | None = None) -> Schema:
    """Convert a pydantic JSON schema into a structural OpenAPI v3 schema as CRDs require."""
    defs = schema.get("$defs", {}) if defs is None else defs
    node = {key: value for key, value in schema.items() if key != "$defs"}

    if "$ref" in node:
        name = node.pop("$ref").removeprefix("#/$defs/")
        # The referencing property's own keywords (its description above all) win over the definition's.
        node = {**to_structural(defs[name], defs), **node}
    if "anyOf" in node:
        branches = [branch for branch in node.pop("anyOf") if branch != {"type": "null"}]
        if len(branches) != 1:
            raise ValueError(f"cannot express anyOf {branches!r} in a structural schema")
        node = {**to_structural(branches[0], defs), **node}
    if node.get("default", ...) is None:
        del node["default"]  # optional fields are omitted, never null

    out: Schema = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "additionalProperties":
            if isinstance(value, dict):
                out[key] = to_structural(value, defs)
            elif value is not False:
                raise ValueError(f"cannot express additionalProperties: {value!r}")
        elif key == "patternProperties":
            # dict[Key, V] with a constrained key: a structural schema has no place for key patterns,
            # so the values' schema becomes additionalProperties and the keys get a CEL rule.
            ((key_pattern, value_schema),) = value.items()
            out["additionalProperties"] = to_structural(value_schema, defs)
            max_key_length = node.get("propertyNames", {}).get("maxLength")
            out["x-kubernetes-validations"] = [_key_rule(key_pattern, max_key_length)]
        elif key == "propertyNames":
            if set(value) - {"maxLength"}:
                raise ValueError(f"cannot express propertyNames {value!r}")  # maxLength: see patternProperties
        elif key == "properties":
            out[key] = {name: to_structural(prop, defs) for name, prop in value.items()}
        elif key == "items":
            out[key] = to_structural(value, defs)
        elif key in _KEPT or key.startswith("x-kubernetes-"):
            out[key] = value  # x-kubernetes-*: set by this converter on a node merged into its parent
        else:
            raise ValueError(f"cannot express {key!r} in a structural schema: {node!r}")

    if "properties" in out or "additionalProperties" in out:
        out.setdefault("type", "object")
    if out.get("type") == "integer":
        out.setdefault("format", "int64")
    if "type" not in out:
        raise ValueError(f"a structural schema needs a type: {node!r}")
    return _ordered(out)


# The order in which keywords are written, so that the YAML reads like kubebuilder's: what a node is first.
_ORDER = (
    "type",
    "format",
    "description",
    "enum",
    "default",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "properties",
    "additionalProperties",
    "items",
)


def _ordered(node: Schema) -> Schema:
    rank = {key: index for index, key in enumerate(_ORDER)}
    return dict(sorted(node.items(), key=lambda item: rank.get(item[0], len(rank))))


def _key_rule(pattern: str, max_length: int | None) -> dict[str, str]:
    """A CEL rule checking every key of a map against a pattern (a raw CEL string: no escapes to redo)."""
    if "'" in pattern:
        raise ValueError(f"cannot quote {pattern!r} in CEL")
    check = f"k.matches(r'{pattern}')"
    bound = f"size(k) <= {max_length} && " if max_length is not None else ""
    limit = f"at most {max_length} characters and " if max_length is not None else ""
    return {"rule": f"self.all(k, {bound}{check})", "message": f"every key must be {limit}match {pattern}"}


def _model_schema(model: type[BaseModel]) -> Schema:
    return to_structural(model.model_json_schema(by_alias=True))


def build_schema() -> Schema:
    """The openAPIV3Schema of v1alpha1: the models' schema plus CEL rules, list types and kopf's status field."""
    spec = _model_schema(ProcessSuspensionSpec)
    spec["x-kubernetes-validations"] = copy.deepcopy(SPEC_RULES)
    selector = spec["properties"]["selector"]
    selector["x-kubernetes-validations"] = copy.deepcopy(SELECTOR_RULES)
    (key_rule,) = selector["properties"]["matchLabels"]["x-kubernetes-validations"]
    key_rule["message"] = LABEL_KEY_MESSAGE
    selector["properties"]["matchExpressions"]["items"]["x-kubernetes-validations"] = copy.deepcopy(REQUIREMENT_RULES)

    spec["properties"]["stages"]["items"]["x-kubernetes-validations"] = copy.deepcopy(STAGE_RULES)

    status = _model_schema(ProcessSuspensionStatus)
    conditions = status["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    status["properties"]["kopf"] = copy.deepcopy(KOPF_STATUS)

    return {
        "type": "object",
        "description": (
            "ProcessSuspension stops the containerrun processes of the selected pods and keeps them stopped "
            "while it exists; deleting it, setting suspend to false or the end of its duration resumes them."
        ),
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "The versioned schema of this representation of an object: processcontrol.dev/v1alpha1.",
            },
            "kind": {
                "type": "string",
                "description": "The REST resource this object represents: ProcessSuspension.",
            },
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
        "required": ["spec"],
    }


def build_crd() -> Schema:
    """The whole CustomResourceDefinition manifest of processsuspensions.processcontrol.dev."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "processcontrol", "app.kubernetes.io/part-of": "processcontrol"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": list(SHORT_NAMES),
                "categories": list(CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": copy.deepcopy(PRINTER_COLUMNS),
                    "schema": {"openAPIV3Schema": build_schema()},
                }
            ],
        },
    }


HEADER = "# Generated from processcontrol.api.models by `processcontrol crd` (`make crds`): do not edit.\n"


def render_crd() -> str:
    """The CRD as YAML text, stable from run to run; what crds/processsuspensions.yaml holds."""
    body = yaml.safe_dump(build_crd(), sort_keys=False, allow_unicode=True, default_flow_style=False, width=1 << 16)
    return HEADER + "---\n" + body


def print_crd(args: argparse.Namespace) -> int:
    """`processcontrol crd`: print the CRD."""
    sys.stdout.write(render_crd())
    return 0
