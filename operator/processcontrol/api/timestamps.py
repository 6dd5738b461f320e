"""Kubernetes timestamps (metav1.Time): RFC 3339 in UTC with a Z, as the API server writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def format_time(moment: datetime) -> str:
    """`2026-11-30T03:15:08Z`: the moment in UTC, to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_time_up(moment: datetime) -> str:
    """The moment to the second, rounded up: for when a hold began, that a duration counts from. Rounded down, a
    duration could end up to a second before its time; rounded up, it ends at most a second after."""
    whole = moment.replace(microsecond=0)
    return format_time(whole if whole == moment else whole + timedelta(seconds=1))


def parse_time(text: str) -> datetime:
    """A Kubernetes timestamp as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
