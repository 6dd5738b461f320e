"""What every handler shares (the Runtime), and operator start-up and shut-down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import kopf
from prometheus_client import start_http_server
from pydantic import ValidationError

from processcontrol.api import ProcessSuspensionSpec
from processcontrol.api.timestamps import parse_time
from processcontrol.k8s import KubeClient, load_configuration
from processcontrol.podexec.transport import KubernetesPodExecutor, PodExecutor
from processcontrol.reconcile.plan import PodRecord
from processcontrol.reconcile.settings import ProcessControlSettings
from processcontrol.reconcile.targets import PodInfo, spec_matches_pod

if TYPE_CHECKING:
    from processcontrol.reconcile.worker import PodWorker

Logger = logging.Logger | logging.LoggerAdapter[Any]
PodKey = tuple[str, str]  # (namespace, pod name)


@dataclass(frozen=True)
class SuspensionInfo:
    """A suspension as the namespace index keeps it: what the pod workers act on."""

    name: str
    uid: str
    generation: int | None
    spec: ProcessSuspensionSpec | None
    expires_at: str | None
    deleting: bool

    def holding(self, now: datetime) -> bool:
        """Whether it currently wants its processes stopped."""
        if self.spec is None or self.deleting or not self.spec.suspend:
            return False
        return self.expires_at is None or now < parse_time(self.expires_at)

    def targets(self, pod: PodInfo) -> bool:
        """Whether the pod is one of its targets (running and matching)."""
        return self.spec is not None and pod.running and spec_matches_pod(self.spec, pod.labels)


def suspension_info(
    name: str, uid: str, generation: int | None, spec: Mapping[str, Any], status: Mapping[str, Any], deleting: bool
) -> SuspensionInfo:
    """Index entry of one suspension; an invalid spec holds nothing."""
    try:
        parsed: ProcessSuspensionSpec | None = ProcessSuspensionSpec.model_validate(dict(spec))
    except ValidationError:
        parsed = None
    return SuspensionInfo(
        name=name,
        uid=uid,
        generation=generation,
        spec=parsed,
        expires_at=status.get("expiresAt"),
        deleting=deleting,
    )


# Live views of kopf's indexes: the pods of a namespace, one pod by (namespace, name), a namespace's suspensions.
PodsOf = Callable[[str], Iterable[PodInfo]]
PodOf = Callable[[str, str], PodInfo | None]
SuspensionsOf = Callable[[str], Iterable[SuspensionInfo]]


def _nothing(_: str) -> list[Any]:
    return []


def _no_pod(_: str, __: str) -> None:
    return None


@dataclass
class Runtime:
    """What every handler shares: settings, the exec transport, the API client, the pod workers and their
    outcomes per suspension, and the wake-up events of the suspensions' status daemons."""

    settings: ProcessControlSettings
    executor: PodExecutor
    kube: KubeClient
    pods_of: PodsOf = _nothing
    pod: PodOf = _no_pod  # the pod as the index has it now, or None when it is gone
    suspensions_of: SuspensionsOf = _nothing
    workers: dict[PodKey, PodWorker] = field(default_factory=dict)
    # (namespace, suspension name) -> pod name -> the latest outcome there.
    outcomes: dict[tuple[str, str], dict[str, PodRecord]] = field(default_factory=dict)
    wakeups: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)
    # What of each suspension the pods act on, as last seen: a change wakes its pods, a status write does not.
    seen: dict[str, tuple[object, ...]] = field(default_factory=dict)
    # (namespace, suspension name) -> the outcomes its last status write showed, and an event set at each write.
    shown: dict[tuple[str, str], Mapping[str, PodRecord]] = field(default_factory=dict)
    status_written: dict[tuple[str, str], asyncio.Event] = field(default_factory=dict)

    def wake(self, namespace: str, name: str) -> None:
        """Make a suspension's status daemon look again."""
        event = self.wakeups.get((namespace, name))
        if event is not None:
            event.set()

    def report(self, namespace: str, suspension: str, pod: str, record: PodRecord | None) -> None:
        """A pod worker's outcome for one suspension (None: the pod is no longer its business)."""
        records = self.outcomes.setdefault((namespace, suspension), {})
        if record is None:
            if records.pop(pod, None) is None:
                return
        else:
            records[pod] = record
        self.wake(namespace, suspension)

    def status_shown(self, namespace: str, suspension: str, records: Mapping[str, PodRecord]) -> None:
        """The status daemon wrote (or found written) a status built from these outcomes."""
        self.shown[(namespace, suspension)] = records  # the daemon's own copy: no second one per write
        self.status_written.setdefault((namespace, suspension), asyncio.Event()).set()

    async def wait_shown(self, namespace: str, suspension: str, pod: str, record: PodRecord, timeout_s: float) -> bool:
        """Wait until a status showing this outcome of the pod is written; False when it was not within timeout_s
        (no daemon runs, or the API server refuses the write: the caller goes on, it has said it in an event)."""
        key = (namespace, suspension)
        self.wake(namespace, suspension)
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.shown.get(key, {}).get(pod) is not record:
            written = self.status_written.setdefault(key, asyncio.Event())
            written.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(written.wait(), timeout=remaining)
        return True

    def ensure_worker(self, namespace: str, pod: str, wake: bool = True) -> None:
        """Start the pod's worker if it has none; make it look again (a new worker always does)."""
        from processcontrol.reconcile.worker import PodWorker  # the worker module builds on this one

        worker = self.workers.get((namespace, pod))
        if worker is None:
            worker = self.workers[(namespace, pod)] = PodWorker(self, namespace, pod)
            worker.start()
        elif wake:
            worker.wake()

    def suspension_changed(self, suspension: SuspensionInfo, namespace: str) -> None:
        """Wake its pods if what they act on changed (spec, deletion, expiry); our own status writes come back as
        events too, and must not wake every pod of a large group each time."""
        essence = (suspension.generation, suspension.deleting, suspension.expires_at, suspension.spec)
        if self.seen.get(suspension.uid) != essence:
            self.seen[suspension.uid] = essence
            self.wake_pods_of(suspension, namespace)

    def wake_pods_of(self, suspension: SuspensionInfo, namespace: str) -> None:
        """Wake the workers of every pod the suspension targets or holds something in."""
        for pod in self.pods_of(namespace):
            # A pod whose ledger cannot be read is woken too: its worker says so to every suspension it concerns.
            if suspension.targets(pod) or not pod.ledger.readable or suspension.uid in pod.holders:
                self.ensure_worker(namespace, pod.name)

    async def stop_workers(self) -> None:
        """Cancel every pod worker (operator shutdown)."""
        workers = list(self.workers.values())
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*(w.wait_closed() for w in workers), return_exceptions=True)


async def start_runtime(kopf_settings: kopf.OperatorSettings, logger: Logger) -> Runtime:
    """Read our settings, apply them to kopf's, and build what the handlers share."""
    settings = ProcessControlSettings()
    kopf_settings.persistence.finalizer = settings.finalizer
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="processcontrol.dev")
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="processcontrol.dev")
    # Our events are posted on purpose (kopf.event); log lines of WARNING and above become events too.
    kopf_settings.posting.level = logging.WARNING
    # Watches time out and restart well before any load balancer would cut them silently.
    kopf_settings.watching.server_timeout = 300
    kopf_settings.watching.client_timeout = 330
    configuration = load_configuration()
    executor = KubernetesPodExecutor(
        configuration,
        max_concurrency=settings.exec_concurrency,
        max_per_namespace=settings.exec_concurrency_per_namespace,
        timeout_s=settings.exec_timeout_s,
        retries=settings.exec_retries,
        backoff_s=settings.exec_backoff_s,
    )
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.metrics_address)
    logger.info(f"processcontrol settings: {settings.model_dump()}")
    kube = KubeClient(configuration, concurrency=settings.exec_concurrency)
    return Runtime(settings=settings, executor=executor, kube=kube)


async def stop_runtime(runtime: Runtime) -> None:
    """Stop the pod workers, release the API client and the exec transport's threads."""
    await runtime.stop_workers()
    runtime.kube.close()
    # Only the real transport holds threads; the PodExecutor protocol (and test doubles) need no close().
    close = getattr(runtime.executor, "close", None)
    if callable(close):
        close()
