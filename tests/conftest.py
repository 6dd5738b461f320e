"""Across the tiers: the tests that need a control plane (tests/e2e, tests/node) carry the `e2e` marker; a unit test
leaves no process behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.testing import no_process_left

CLUSTER_TIERS = (Path(__file__).parent / "e2e", Path(__file__).parent / "node")
UNIT_TIER = Path(__file__).parent / "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.path.is_relative_to(tier) for tier in CLUSTER_TIERS):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(autouse=True)
def no_process_left_behind(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every process a unit test starts (containerrun, its children, the in-pod script's senders, helm) is gone when
    it ends: one left behind fails that test and is killed (harness.testing.no_process_left). Autouse and
    function-scoped, so it is set up before and torn down after the fixtures that start processes. Not for the
    cluster tiers, whose control plane and operator outlive each test by design."""
    if not request.path.is_relative_to(UNIT_TIER):
        yield
        return
    with no_process_left():
        yield
