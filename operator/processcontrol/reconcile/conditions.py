"""Conditions the kstatus way: Ready, Suspended, Reconciling, Stalled; a transition time moves only on change."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from processcontrol.api import Condition, ConditionStatus
from processcontrol.api.timestamps import format_time

READY = "Ready"
SUSPENDED = "Suspended"
RECONCILING = "Reconciling"
STALLED = "Stalled"
# Not a kstatus condition: True while a targeted container has a liveness or startup probe its stopped process
# fails (reason: the probes policy's outcome, or RestartLoop once the kubelet keeps restarting it).
PROBE_CONFLICT = "ProbeConflict"
# Only while spec.preview is true: True once every target pod was looked at for this generation (status.preview).
PREVIEWED = "Previewed"
CONDITION_TYPES = (READY, SUSPENDED, RECONCILING, STALLED, PROBE_CONFLICT, PREVIEWED)


def condition(type_: str, status: bool, reason: str, message: str = "") -> Condition:
    """A condition without timestamps; merge_conditions fills them in."""
    return Condition(
        type=type_,
        status=ConditionStatus.TRUE if status else ConditionStatus.FALSE,
        reason=reason,
        message=message,
    )


def merge_conditions(
    previous: Sequence[Condition], desired: Sequence[Condition], generation: int | None, now: datetime
) -> list[Condition]:
    """The desired conditions, keeping each previous lastTransitionTime whose status did not change."""
    old = {c.type: c for c in previous}
    merged = []
    for new in desired:
        before = old.get(new.type)
        changed = before is None or before.status != new.status or before.last_transition_time is None
        merged.append(
            new.model_copy(
                update={
                    "last_transition_time": format_time(now) if changed else before.last_transition_time,  # type: ignore[union-attr]
                    "observed_generation": generation,
                }
            )
        )
    return merged


def find(conditions: Sequence[Condition], type_: str) -> Condition | None:
    """The condition of this type, if any."""
    return next((c for c in conditions if c.type == type_), None)
