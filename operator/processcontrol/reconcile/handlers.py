"""Every kopf handler of the operator, registered here; each hands off to a named function.

kopf passes the indexes by the names of their functions, through **kwargs.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from processcontrol.api import GROUP, PLURAL, VERSION
from processcontrol.reconcile.runtime import start_runtime, stop_runtime
from processcontrol.reconcile.suspension import (
    Runtime,
    SuspensionInfo,
    release_suspension,
    run_suspension,
    suspension_info,
)
from processcontrol.reconcile.targets import PodInfo, pod_info_from_body, spec_matches_pod

RESOURCE = (GROUP, VERSION, PLURAL)
Logger = logging.Logger | logging.LoggerAdapter[Any]


def _pods(kwargs: dict[str, Any]) -> kopf.Index[str, PodInfo]:
    index: kopf.Index[str, PodInfo] = kwargs["pods_by_namespace"]
    return index


def _suspensions(kwargs: dict[str, Any]) -> kopf.Index[str, SuspensionInfo]:
    index: kopf.Index[str, SuspensionInfo] = kwargs["suspensions_by_namespace"]
    return index


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: Any, logger: Logger, **_: Any) -> None:
    """Apply our settings to kopf's and build the shared runtime."""
    memo.runtime = await start_runtime(settings, logger)


@kopf.on.cleanup()
async def cleanup(memo: Any, **_: Any) -> None:
    """Close connections and threads."""
    await stop_runtime(memo.runtime)


@kopf.index("pods")
def pods_by_namespace(namespace: str | None, body: kopf.Body, **_: Any) -> dict[str, PodInfo]:
    """Every pod by namespace, summarised: the targets and their restarts without listing the API."""
    return {namespace or "": pod_info_from_body(body)}


@kopf.index(*RESOURCE)
def suspensions_by_namespace(
    namespace: str | None, name: str, spec: kopf.Spec, status: kopf.Status, meta: kopf.Meta, **_: Any
) -> dict[str, SuspensionInfo]:
    """Every suspension by namespace: what the overlap rules and pod wake-ups consult."""
    deleting = meta.get("deletionTimestamp") is not None
    return {namespace or "": suspension_info(name, spec, status, deleting=deleting)}


@kopf.on.event("pods")
def pod_changed(namespace: str | None, labels: kopf.Labels, memo: Any, **kwargs: Any) -> None:
    """A pod appeared, changed or restarted a container: wake the suspensions that target it."""
    runtime: Runtime = memo.runtime
    for suspension in _suspensions(kwargs).get(namespace or "", []):
        if suspension.spec is not None and spec_matches_pod(suspension.spec, labels):
            runtime.wake(namespace or "", suspension.name)


@kopf.on.event(*RESOURCE)
def suspension_changed(namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """The object changed (spec, or our own status write): let its loop look again."""
    runtime: Runtime = memo.runtime
    runtime.wake(namespace or "", name)


@kopf.daemon(*RESOURCE, cancellation_backoff=5.0, cancellation_timeout=10.0)
async def keep_suspension(
    body: kopf.Body, memo: Any, stopped: kopf.DaemonStopped, logger: Logger, **kwargs: Any
) -> None:
    """Keep the object's request true for as long as it exists."""
    await run_suspension(memo.runtime, body, _pods(kwargs), _suspensions(kwargs), stopped, logger)


@kopf.on.delete(*RESOURCE, retries=10, backoff=5.0)
async def release(body: kopf.Body, memo: Any, logger: Logger, **kwargs: Any) -> None:
    """Deleting a suspension resumes its processes (unless another suspension holds them)."""
    await release_suspension(memo.runtime, body, _pods(kwargs), _suspensions(kwargs), logger)
