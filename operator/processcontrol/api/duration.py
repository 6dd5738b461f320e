"""Go-style durations (`90m`, `1h30m`, `2.5h`), as `metav1.Duration` and CEL's `duration()` accept them."""

from __future__ import annotations

import re
from datetime import timedelta

# The same grammar as Go's time.ParseDuration, without a sign: a sequence of decimal numbers with units.
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
# Go's time.Duration is an int64 of nanoseconds (about 292 years); CEL's duration() refuses anything longer.
MAX_SECONDS = (2**63 - 1) / 1e9
_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration string; raise ValueError with the offending text when it is not one."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"{text!r} is not a duration such as 90s, 15m, 2h or 1h30m")
    seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(text))
    if seconds > MAX_SECONDS:
        raise ValueError(f"{text!r} is longer than the longest duration, 2562047h")
    return timedelta(seconds=seconds)
