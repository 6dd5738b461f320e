"""Across the tiers: the tests that need a control plane (tests/e2e, tests/node) carry the `e2e` marker."""

from __future__ import annotations

from pathlib import Path

import pytest

CLUSTER_TIERS = (Path(__file__).parent / "e2e", Path(__file__).parent / "node")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.path.is_relative_to(tier) for tier in CLUSTER_TIERS):
            item.add_marker(pytest.mark.e2e)
