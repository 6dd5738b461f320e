"""When a pod's worker tries a failed step again, and how often it polls what it waits for."""

from __future__ import annotations

from processcontrol.settings import ProcessControlSettings

# Retries of a failed step start here and double up to the failure backoff: a new pod whose sockets are not
# bound yet is stopped a moment later, not ten seconds later.
FIRST_RETRY_S = 0.25


def retry_delay(settings: ProcessControlSettings, failures: int) -> float:
    """The wait before the next try after this many failures in a row."""
    return min(settings.failure_backoff_s, FIRST_RETRY_S * 2.0 ** (failures - 1))


def poll_delay(settings: ProcessControlSettings, started: float, checked: float) -> float:
    """Verification polls: quick at first, then every 2 s at most."""
    return min(max(settings.verify_interval_s, (checked - started) / 2), 2.0)
