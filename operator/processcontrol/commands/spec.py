"""From command-line arguments to a ProcessSuspension: selector syntax, default names, validation. No I/O."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError

from processcontrol.api import API_VERSION, KIND, ProcessSuspensionSpec
from processcontrol.exceptions import InvalidArguments

_SET_TERM = re.compile(r"^\s*(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*$")
_NAME_CHARS = re.compile(r"[^a-z0-9-]+")


def _split_terms(text: str) -> list[str]:
    """Split a selector on the commas outside parentheses."""
    terms, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [t.strip() for t in terms]


def parse_selector(text: str) -> dict[str, Any]:
    """kubectl's label selector syntax (`a=b,c!=d,e in (f,g),h,!i`) as a metav1 LabelSelector."""
    match_labels: dict[str, str] = {}
    expressions: list[dict[str, Any]] = []
    for term in _split_terms(text):
        if not term:
            raise InvalidArguments(f"selector {text!r}: empty requirement")
        if found := _SET_TERM.match(term):
            values = [v.strip() for v in found["values"].split(",") if v.strip()]
            operator = "In" if found["op"] == "in" else "NotIn"
            expressions.append({"key": found["key"], "operator": operator, "values": values})
        elif "!=" in term:
            key, value = (part.strip() for part in term.split("!=", 1))
            expressions.append({"key": key, "operator": "NotIn", "values": [value]})
        elif "=" in term:
            key, value = (part.strip() for part in term.replace("==", "=", 1).split("=", 1))
            if key in match_labels and match_labels[key] != value:
                raise InvalidArguments(f"selector {text!r}: {key} cannot equal both {match_labels[key]} and {value}")
            match_labels[key] = value
        elif term.startswith("!"):
            expressions.append({"key": term[1:].strip(), "operator": "DoesNotExist"})
        elif re.fullmatch(r"[^\s()]+", term):
            expressions.append({"key": term, "operator": "Exists"})
        else:
            raise InvalidArguments(f"selector {text!r}: cannot parse {term!r}")
    selector: dict[str, Any] = {}
    if match_labels:
        selector["matchLabels"] = match_labels
    if expressions:
        selector["matchExpressions"] = expressions
    return selector


def split_names(values: Iterable[str] | None) -> list[str]:
    """`--jobs a,b --jobs c` as [a, b, c], without blanks or repeats."""
    names: list[str] = []
    for value in values or []:
        for name in value.split(","):
            if name.strip() and name.strip() not in names:
                names.append(name.strip())
    return names


def default_name(
    instance_group: str | None, selector: str | None, jobs: Sequence[str], processes: Sequence[str]
) -> str:
    """The instance group's name, made a valid object name; a short hash tells filtered or selector suspensions apart.

    Suspending the same instance group twice with different filters must not overwrite the first suspension.
    """
    base = _NAME_CHARS.sub("-", (instance_group or "selector").lower()).strip("-")[:50] or "suspension"
    if selector is None and not jobs and not processes:
        return base
    key = "\0".join([selector or "", ",".join(sorted(jobs)), ",".join(sorted(processes))])
    return f"{base}-{hashlib.sha256(key.encode()).hexdigest()[:6]}"


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, naming the spec field as it is written in YAML."""
    lines = []
    for problem in error.errors():
        where = ".".join(str(part) for part in problem["loc"])
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"  spec.{where}: {message}" if where else f"  spec: {message}")
    return "\n".join(lines)


def build_spec(
    instance_group: str | None,
    selector: str | None,
    *,
    jobs: Sequence[str] = (),
    processes: Sequence[str] = (),
    reason: str | None = None,
    duration: str | None = None,
    container: str | None = None,
    probes: str | None = None,
) -> dict[str, Any]:
    """The spec to apply: only what was asked for, plus `suspend: true`, validated by the API model."""
    if (instance_group is None) == (selector is None):
        raise InvalidArguments("give exactly one of INSTANCE_GROUP and -l/--selector")
    spec: dict[str, Any] = {}
    if instance_group is not None:
        spec["instanceGroup"] = instance_group
    if selector is not None:
        spec["selector"] = parse_selector(selector)
    if jobs:
        spec["jobs"] = list(jobs)
    if processes:
        spec["processes"] = list(processes)
    # Explicit, so that suspending again after `processcontrol resume` flips it back.
    spec["suspend"] = True
    if reason:
        spec["reason"] = reason
    if duration:
        spec["duration"] = duration
    if container:
        spec["container"] = container
    if probes:
        spec["probes"] = probes
    try:
        ProcessSuspensionSpec.model_validate(spec)
    except ValidationError as error:
        raise InvalidArguments(f"invalid suspension, nothing was sent:\n{describe_validation_error(error)}") from error
    return spec


def build_suspension(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The whole object for server-side apply."""
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name, "namespace": namespace}, "spec": spec}


_OBJECT_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def check_name(name: str) -> str:
    """A valid object name (DNS subdomain), or InvalidArguments."""
    if len(name) > 253 or not _OBJECT_NAME.match(name):
        raise InvalidArguments(f"invalid name {name!r}: lower-case letters, digits, '-' and '.', at most 253")
    return name
