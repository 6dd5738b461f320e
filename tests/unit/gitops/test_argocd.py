"""The Argo CD health check, run by real Lua 5.1 interpreters (Argo CD's gopher-lua is Lua 5.1) on status objects."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

import pytest
import yaml

from gitops.argocd_cm import CM_KEY, CM_PATCH, HEALTH_LUA, render_cm_patch
from gitops.objects import FIXTURE_FILES, SCENARIOS, state_of, status_objects
from harness.testing import missing

# The verdict for each fixture state (a file's name up to its first dot).
EXPECTED = {
    "new": "Progressing",
    "suspending": "Progressing",
    "suspended": "Suspended",
    "spec-changed": "Progressing",
    "resuming": "Progressing",
    "resumed": "Healthy",
    "expired": "Healthy",
    "stalled": "Degraded",
}

Health = Callable[[Mapping[str, Any]], dict[str, str]]


def _lupa_health(obj: Mapping[str, Any]) -> dict[str, str]:
    from lupa import lua51

    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(json.loads(json.dumps(obj)), recursive=True)
    result = lua.execute(HEALTH_LUA.read_text())
    return {"status": result["status"], "message": result["message"]}


def _lua_literal(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string of printable text is a valid Lua 5.1 string
    if isinstance(value, list):
        return "{" + ", ".join(_lua_literal(v) for v in value) + "}"
    return "{" + ", ".join(f"[{json.dumps(k)}] = {_lua_literal(v)}" for k, v in value.items()) + "}"


def _debian_lua_health(obj: Mapping[str, Any]) -> dict[str, str]:
    program = (
        f"obj = {_lua_literal(obj)}\n"
        f"local check = assert(loadstring({json.dumps(HEALTH_LUA.read_text())}))\n"
        "local hs = check()\n"
        "io.write(hs.status, '\\n', hs.message)\n"
    )
    done = subprocess.run(["lua5.1", "-"], input=program, capture_output=True, text=True, check=True, timeout=30)
    status, message = done.stdout.split("\n", 1)
    return {"status": status, "message": message}


# Always both: without Debian's lua5.1 its tests are collected and skip with the reason (fail in CI).
INTERPRETERS = [pytest.param(_lupa_health, id="lupa-lua51"), pytest.param(_debian_lua_health, id="debian-lua5.1")]


@pytest.fixture(params=INTERPRETERS)
def health(request: pytest.FixtureRequest) -> Health:
    interpreter: Health = request.param
    if interpreter is _debian_lua_health and shutil.which("lua5.1") is None:
        missing("Debian's lua5.1 is not installed (make deps installs it)")
    return interpreter


@pytest.mark.parametrize(("obj", "state"), status_objects())
def test_verdict_per_state(health: Health, obj: dict[str, Any], state: str) -> None:
    verdict = health(obj)
    assert verdict["status"] == EXPECTED[state], verdict
    assert verdict["message"]


def test_every_state_has_a_fixture_and_a_verdict() -> None:
    states = {state_of(p.stem) for p in FIXTURE_FILES}
    assert states == set(EXPECTED)
    assert {state_of(s) for s in SCENARIOS} == set(EXPECTED)


def test_messages_say_what_is_going_on(health: Health) -> None:
    assert health(SCENARIOS["suspended"]()) == {
        "status": "Suspended",
        "message": "Suspended (3/3 pods) until 2026-11-28T14:00:06Z: restoring from backup, ticket OPS-1234",
    }
    assert health(SCENARIOS["suspending"]())["message"] == "Suspending: 1/3 pods suspended"
    assert health(SCENARIOS["stalled.exec-forbidden"]())["message"].startswith("ExecForbidden: pod database-0: ")
    assert health(SCENARIOS["spec-changed"]())["message"] == "Waiting for the operator to observe generation 2"


def test_a_failed_pod_is_degraded_even_while_reconciling(health: Health) -> None:
    obj = SCENARIOS["suspending"]()
    pod = next(p for p in obj["status"]["pods"] if p["name"] == "database-2")
    pod.update(state="Failed", message="exec timed out after 30s")
    assert health(obj) == {"status": "Degraded", "message": "Pod database-2 failed: exec timed out after 30s"}


def test_conditions_of_an_older_generation_are_not_trusted(health: Health) -> None:
    obj = SCENARIOS["suspended"]()
    obj["metadata"]["generation"] = 2
    obj["status"]["observedGeneration"] = 2  # status written, conditions still from generation 1
    assert health(obj)["status"] == "Progressing"


def test_resume_requested_but_suspended_still_true_is_not_suspended(health: Health) -> None:
    obj = copy.deepcopy(SCENARIOS["suspended"]())
    obj["spec"]["suspend"] = False
    assert health(obj)["status"] == "Healthy"


def test_ready_false_without_reconciling_is_progressing(health: Health) -> None:
    obj = SCENARIOS["suspended"]()
    for condition in obj["status"]["conditions"]:
        if condition["type"] == "Ready":
            condition.update(status="False", reason="Suspending", message="0/3 pods suspended")
        if condition["type"] == "Reconciling":
            condition.update(status="False")
    assert health(obj) == {"status": "Progressing", "message": "Suspending: 0/3 pods suspended"}


def test_the_argocd_cm_snippet_embeds_exactly_health_lua() -> None:
    script = HEALTH_LUA.read_text()
    patch = CM_PATCH.read_text()
    assert patch == render_cm_patch(script), "regenerate with: python tests/unit/gitops/argocd_cm.py"
    assert yaml.safe_load(patch)["data"][CM_KEY] == script
