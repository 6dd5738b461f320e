"""The ProcessSuspension API: pydantic models of spec and status, the single source of truth for the CRD."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from processcontrol.api.models import (
        API_VERSION,
        GROUP,
        INSTANCE_GROUP_LABEL,
        KIND,
        MAX_LISTED_PODS,
        PLURAL,
        SUSPENDED_LABEL,
        VERSION,
        Condition,
        ConditionStatus,
        LabelSelector,
        LabelSelectorRequirement,
        PodCounts,
        PodState,
        PodStatus,
        ProcessState,
        ProcessStatus,
        ProcessSuspension,
        ProcessSuspensionSpec,
        ProcessSuspensionStatus,
    )

__all__ = [
    "API_VERSION",
    "GROUP",
    "INSTANCE_GROUP_LABEL",
    "KIND",
    "MAX_LISTED_PODS",
    "PLURAL",
    "SUSPENDED_LABEL",
    "VERSION",
    "Condition",
    "ConditionStatus",
    "LabelSelector",
    "LabelSelectorRequirement",
    "PodCounts",
    "PodState",
    "PodStatus",
    "ProcessState",
    "ProcessStatus",
    "ProcessSuspension",
    "ProcessSuspensionSpec",
    "ProcessSuspensionStatus",
]


def __getattr__(name: str) -> Any:
    """Import the models (and pydantic) on first use, not with the package: `processcontrol crd` lives in
    processcontrol.api and is registered with every command, and `processcontrol send` runs in pods."""
    if name in __all__:
        return getattr(importlib.import_module("processcontrol.api.models"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
