"""Text from outside (a pod's output, a pod's annotation, an API answer) made safe to show: short and printable.

What a pod prints or carries is chosen by whoever controls its image or may write to it; it reaches the status,
events and log lines only through `bounded`, so it can add at most a short line of visible characters there.
"""

from __future__ import annotations

import re
import traceback

# Anything but printable ASCII: control characters (a forged log line, terminal escapes), and the rest of Unicode
# (right-to-left overrides and look-alikes that make a message say something else than it does).
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")


def bounded(text: str, limit: int) -> str:
    """`text` with every unprintable character as `?`, cut to `limit` characters (ending in `...` when cut)."""
    if limit < 4:
        raise ValueError(f"limit must be at least 4, not {limit}")
    shown = _UNPRINTABLE.sub("?", text[: limit + 1])
    return shown if len(shown) <= limit else shown[: limit - 3] + "..."


def describe(error: BaseException, limit: int = 1000) -> str:
    """`Type: message` of an exception, bounded: its message may quote what a pod holds (a forged ledger, a report)."""
    return bounded(f"{type(error).__name__}: {error}", limit)


def frames(error: BaseException, last: int = 8) -> str:
    """Where an exception was raised, its last frames: code the operator ships, never anything a pod wrote."""
    return "".join(traceback.format_tb(error.__traceback__)[-last:]).rstrip()
