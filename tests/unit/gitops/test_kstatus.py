"""kstatus, the library Flux and cli-utils use, reads our objects as intended: proven with the real Go code.

hack/build-kstatus.sh builds hack/kstatus (sigs.k8s.io/cli-utils/pkg/kstatus) from the Go module proxy into the
cache on first use. Without Go the tests skip, unless CI=true: there they must run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from gitops.objects import FIXTURE_FILES, REPO, SCENARIOS, state_of, status_objects
from harness.testing import missing

BUILD = REPO / "hack" / "build-kstatus.sh"

# What kstatus.Compute() says for each fixture state.
EXPECTED = {
    # No status and no conditions: kstatus assumes Current (its fallback for unknown kinds). Flux users who wait on a
    # fresh suspension should use healthCheckExprs (docs/gitops.md), Argo CD's check reads this as Progressing.
    "new": "Current",
    "suspending": "InProgress",
    "suspended": "Current",
    "spec-changed": "InProgress",
    "resuming": "InProgress",
    "resumed": "Current",
    "expired": "Current",
    "stalled": "Failed",
}

Compute = Callable[[Mapping[str, Any]], dict[str, str]]


def _go_available() -> bool:
    # Where hack/build-kstatus.sh looks too.
    return shutil.which("go") is not None or os.access("/usr/local/go/bin/go", os.X_OK)


@pytest.fixture(scope="session")
def kstatus_binary() -> str:
    if not _go_available():
        missing("Go is not installed: hack/build-kstatus.sh cannot build hack/kstatus")
    print(f"\nkstatus: {BUILD.relative_to(REPO)} (builds once into the cache, then reuses it)", file=sys.stderr)
    done = subprocess.run([str(BUILD)], capture_output=True, text=True, timeout=900)
    sys.stderr.write(done.stderr)
    if done.returncode != 0:
        pytest.fail(f"hack/build-kstatus.sh failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def compute(kstatus_binary: str) -> Compute:
    def run(obj: Mapping[str, Any]) -> dict[str, str]:
        done = subprocess.run(
            [kstatus_binary], input=json.dumps(obj), capture_output=True, text=True, check=True, timeout=30
        )
        result: dict[str, str] = json.loads(done.stdout)
        return result

    return run


@pytest.mark.parametrize(("obj", "state"), status_objects())
def test_kstatus_per_state(compute: Compute, obj: dict[str, Any], state: str) -> None:
    result = compute(obj)
    assert result["status"] == EXPECTED[state], result


def test_every_state_has_an_expectation() -> None:
    assert {state_of(p.stem) for p in FIXTURE_FILES} == set(EXPECTED)


def test_in_progress_while_reconciling_with_our_message(compute: Compute) -> None:
    assert compute(SCENARIOS["suspending"]()) == {"status": "InProgress", "message": "1/3 pods suspended"}


def test_failed_when_stalled_with_the_stall_message(compute: Compute) -> None:
    assert compute(SCENARIOS["stalled.no-matching-pods"]()) == {
        "status": "Failed",
        "message": "no running pod matches the target",
    }


def test_a_changed_spec_is_in_progress_until_observed(compute: Compute) -> None:
    obj = SCENARIOS["suspended"]()
    assert compute(obj)["status"] == "Current"
    obj["metadata"]["generation"] = obj["status"]["observedGeneration"] + 1
    assert compute(obj) == {
        "status": "InProgress",
        "message": "ProcessSuspension generation is 2, but latest observed generation is 1",
    }
    obj["status"]["observedGeneration"] += 1
    assert compute(obj)["status"] == "Current"


def test_a_deleted_object_is_terminating(compute: Compute) -> None:
    obj = SCENARIOS["suspended"]()
    obj["metadata"]["deletionTimestamp"] = "2026-11-28T13:00:00Z"
    assert compute(obj)["status"] == "Terminating"
