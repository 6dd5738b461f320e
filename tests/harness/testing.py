"""What the test tiers share about pytest itself: a missing prerequisite is never a silent pass.

On a developer's machine it skips with its reason (`-rs` in pytest's options prints every reason in the summary);
in CI (`CI` set, as `.ci/run` does) it fails, so that nothing CI is meant to check can go unchecked there.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """Whether this runs in CI (`CI=true`, `1` or `yes`)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(reason: str) -> NoReturn:
    """A prerequisite of this test is missing: skip with the reason, or fail in CI."""
    if in_ci():
        pytest.fail(f"CI must run this test, but: {reason}", pytrace=False)
    pytest.skip(reason)
