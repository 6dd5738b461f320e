"""Every kopf handler of the operator, registered here; each hands off to a named function.

The work happens in one worker per pod (worker.py); the handlers keep the runtime's views of kopf's indexes
current and wake the workers (through dispatch.py) and status daemons that an event concerns.

kopf hands each index to handlers as a keyword argument named after the index's id; its handler protocols do
not list them, hence the `type: ignore[arg-type]` on the decorators of handlers that take indexes.
Event handlers are coroutines: kopf runs plain functions in threads, and the workers are event-loop tasks.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import kopf

from processcontrol.api import GROUP, PLURAL, VERSION
from processcontrol.reconcile import readiness
from processcontrol.reconcile.dispatch import Dispatch
from processcontrol.reconcile.runtime import Logger, SuspensionInfo, start_runtime, stop_runtime
from processcontrol.reconcile.suspension import info_of, release_on_delete, run_status_daemon
from processcontrol.targets import PodInfo, pod_info_from_body

RESOURCE = (GROUP, VERSION, PLURAL)
PodsIndex = kopf.Index[str, PodInfo]
PodIndex = kopf.Index[tuple[str, str], PodInfo]
SuspensionsIndex = kopf.Index[str, SuspensionInfo]

# Before kopf builds its index readiness (at the operator's start): linear, not quadratic, in the objects it lists.
readiness.install()


def _watched(namespace: str | None, memo: kopf.Memo, **_: Any) -> bool:
    """Outside the excluded namespaces (kube-system by default): there, suspensions and pods are not seen at all."""
    dispatch: Dispatch = memo.dispatch
    return (namespace or "") not in dispatch.runtime.settings.excluded_namespaces


def _dispatch(memo: kopf.Memo, pods: PodsIndex, pod: PodIndex, suspensions: SuspensionsIndex) -> Dispatch:
    """The pod workers over the shared runtime, with live views of the indexes (kopf hands them to handlers
    only)."""
    dispatch: Dispatch = memo.dispatch
    runtime = dispatch.runtime
    runtime.pods_of = lambda namespace: pods.get(namespace, [])
    runtime.pod = lambda namespace, name: next(iter(pod.get((namespace, name), [])), None)
    runtime.suspensions_of = lambda namespace: suspensions.get(namespace, [])
    runtime.namespaces = lambda: list(pods.keys())
    runtime.handler_context = contextvars.copy_context()
    return dispatch


@kopf.on.startup(id="start")
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: Logger, **_: Any) -> None:
    """Apply our settings to kopf's, build the shared runtime and its pod workers' dispatch, and stand for leader:
    until this replica leads, kopf's watches and indexes stay warm and nothing acts."""
    dispatch = memo.dispatch = Dispatch(await start_runtime(settings, logger))
    dispatch.runtime.leader.on_lead(dispatch.take_over)
    memo.election = asyncio.create_task(dispatch.runtime.leader.run(), name="leader election")


@kopf.on.cleanup(id="stop")
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    """Step down (nothing new is sent or written), let the execs in flight report, stop the pod workers, give the
    Lease back at once, close connections and threads. Waiting for the execs rather than for their windows to run
    out is what lets the standby take over within seconds of a SIGTERM (a pod deleted, a rollout)."""
    dispatch: Dispatch = memo.dispatch
    election: asyncio.Task[None] = memo.election
    leader = dispatch.runtime.leader
    if leader.step_down():
        await leader.drain()
    await dispatch.stop_workers()
    election.cancel()
    await leader.release()
    await stop_runtime(dispatch.runtime)


@kopf.index("pods", id="pods", when=_watched)
def pods_by_namespace(namespace: str | None, body: kopf.Body, **_: Any) -> dict[str, PodInfo]:
    """Every pod by namespace, summarised: targets, restarts and hold ledgers without listing the API."""
    return {namespace or "": pod_info_from_body(body)}


@kopf.index("pods", id="pod", when=_watched)
def pod_by_name(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[tuple[str, str], PodInfo]:
    """Every pod by (namespace, name): what a pod worker looks up at each step."""
    return {(namespace or "", name): pod_info_from_body(body)}


@kopf.index(*RESOURCE, id="suspensions", when=_watched)
def suspensions_by_namespace(namespace: str | None, body: kopf.Body, **_: Any) -> dict[str, SuspensionInfo]:
    """Every suspension by namespace: what the pod workers act on."""
    return {namespace or "": info_of(body)}


@kopf.on.event("pods", id="pod-changed", when=_watched)  # type: ignore[arg-type]
async def pod_changed(
    namespace: str | None,
    name: str,
    body: kopf.Body,
    memo: kopf.Memo,
    pods: PodsIndex,
    pod: PodIndex,
    suspensions: SuspensionsIndex,
    type: str | None = None,
    **_: Any,
) -> None:
    """A pod appeared, changed, restarted a container or went: its worker looks again, if it concerns us."""
    dispatch = _dispatch(memo, pods, pod, suspensions)
    namespace = namespace or ""
    changed = pod_info_from_body(body)
    dispatch.runtime.watch_lag.seen(namespace, name, changed.resource_version, gone=type == "DELETED")
    concerned = (namespace, name) in dispatch.workers or changed.ledger.present
    concerned = concerned or any(s.targets(changed) for s in dispatch.runtime.suspensions_of(namespace))
    if concerned:
        dispatch.ensure_worker(namespace, name)


@kopf.on.event(*RESOURCE, id="suspension-changed", when=_watched)  # type: ignore[arg-type]
async def suspension_changed(
    namespace: str | None,
    name: str,
    body: kopf.Body,
    memo: kopf.Memo,
    pods: PodsIndex,
    pod: PodIndex,
    suspensions: SuspensionsIndex,
    **_: Any,
) -> None:
    """The object changed (spec, deletion, or our own status write): its pods and its daemon look again."""
    dispatch = _dispatch(memo, pods, pod, suspensions)
    dispatch.suspension_changed(info_of(body), namespace or "")
    if body.spec.get("suspend", True) is False or body.spec.get("preview", False) is True:
        dispatch.runtime.board.run_ended(namespace or "", name)
    dispatch.runtime.board.wake(namespace or "", name)


@kopf.daemon(*RESOURCE, id="status", when=_watched, cancellation_backoff=1.0, cancellation_timeout=10.0)  # type: ignore[arg-type]
async def keep_status(
    body: kopf.Body,
    memo: kopf.Memo,
    stopped: kopf.DaemonStopped,
    logger: Logger,
    pods: PodsIndex,
    pod: PodIndex,
    suspensions: SuspensionsIndex,
    **_: Any,
) -> None:
    """Write the object's status from its pods' outcomes for as long as it exists."""
    await run_status_daemon(_dispatch(memo, pods, pod, suspensions), body, stopped, logger)


# No retry limit: the finalizer must stay while any pod holds processes for this suspension (an exec grant
# revoked, a pod that cannot be reached); each attempt says in an event which pods and why.
@kopf.on.delete(*RESOURCE, id="release", when=_watched, retries=None, backoff=1.0)  # type: ignore[arg-type]
async def release(
    body: kopf.Body,
    memo: kopf.Memo,
    logger: Logger,
    pods: PodsIndex,
    pod: PodIndex,
    suspensions: SuspensionsIndex,
    **_: Any,
) -> None:
    """Deleting a suspension gives back what it holds (a process another suspension holds stays stopped)."""
    await release_on_delete(_dispatch(memo, pods, pod, suspensions), body, logger)
