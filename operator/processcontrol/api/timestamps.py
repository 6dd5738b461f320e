"""Kubernetes timestamps (metav1.Time): RFC 3339 in UTC with a Z, as the API server writes them."""

from __future__ import annotations

from datetime import UTC, datetime


def format_time(moment: datetime) -> str:
    """`2026-11-30T03:15:08Z`: the moment in UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    """A Kubernetes timestamp as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
