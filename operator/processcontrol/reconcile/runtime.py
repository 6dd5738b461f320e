"""What the pod workers and status daemons share (the Runtime), what they know of a suspension (SuspensionInfo),
and operator start-up and shut-down."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf
from prometheus_client import start_http_server
from pydantic import ValidationError

from processcontrol.api import ProcessSuspensionSpec
from processcontrol.api.models import ProbePolicy
from processcontrol.api.reasons import Reason
from processcontrol.api.timestamps import format_time, parse_time
from processcontrol.exceptions import ApiError
from processcontrol.k8s import KubeClient, load_configuration
from processcontrol.ledger import Hold, HoldStage, process_key
from processcontrol.podexec.script import SEND_GRACE_S
from processcontrol.podexec.transport import KubernetesPodExecutor, PodExecutor
from processcontrol.reconcile.leader import Leadership, leader_identity, lease_namespace
from processcontrol.reconcile.metrics import WatchLag
from processcontrol.reconcile.outcomes import OutcomeBoard
from processcontrol.reconcile.plan import expiry_of
from processcontrol.settings import ProcessControlSettings
from processcontrol.targets import PodInfo, exec_container, spec_matches_pod

Logger = logging.Logger | logging.LoggerAdapter[Any]


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
        """Whether it currently wants its processes stopped (a preview never does: it only looks)."""
        if self.spec is None or self.deleting or not self.spec.suspend or self.spec.preview:
            return False
        return self.expires_at is None or now < parse_time(self.expires_at)

    def targets(self, pod: PodInfo) -> bool:
        """Whether the pod is one of its targets (running and matching)."""
        return self.spec is not None and pod.running and spec_matches_pod(self.spec, pod.labels)

    @property
    def staged(self) -> bool:
        """Whether it stops its processes in ordered stages (stages.py)."""
        return self.spec is not None and bool(self.spec.stages)

    def stage_of(self, job: str, process: str) -> int | None:
        """The stage a socket the in-pod script reported belongs to; None: the suspension does not target it."""
        return self.spec.stage_of(job, process) if self.spec is not None else None

    def hold_on(self, pod: PodInfo, stages: int | None = None) -> Hold:
        """The hold it takes on the pod, as the pod's ledger records it; of a staged suspension, with its first
        `stages` stages (all by default: a hand-over takes over everything its stages cover, stopping nothing)."""
        assert self.spec is not None
        return Hold(
            name=self.name,
            jobs=tuple(self.spec.jobs),
            processes=tuple(self.spec.processes),
            container=exec_container(pod, self.spec.container),
            stages=tuple(
                HoldStage(jobs=tuple(stage.jobs), processes=tuple(stage.processes))
                for stage in self.spec.stages[:stages]
            ),
        )

    def left_running(self, pod: PodInfo, pairs: Sequence[tuple[str, str]]) -> tuple[str, ...]:
        """The processes (job/process keys) of these that probes: Skip leaves running in the pod."""
        if self.spec is None or self.spec.probes is not ProbePolicy.SKIP:
            return ()
        return tuple(sorted(process_key(job, process) for job, process in pod.probes.probed(pairs)))

    def may_join(self, pod: PodInfo) -> bool:
        """Whether a hand-over may give it the processes a leaving hold keeps stopped, with no look: not for
        probes: Refuse in a pod with a restarting probe (which processes run in which container only a look tells
        for sure; its own look refuses the pod or takes the hold)."""
        return self.spec is None or self.spec.probes is not ProbePolicy.REFUSE or not pod.probes.probes


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
        expires_at=_expiry(parsed, status.get("suspendedAt")),
        deleting=deleting,
    )


def _expiry(spec: ProcessSuspensionSpec | None, suspended_at: Any) -> str | None:
    """When the spec's duration runs out, from the status's `suspendedAt`: not the status's `expiresAt`, which is
    that of the generation it answered (a duration just removed would still expire the suspension, and its pods
    would start and stop again once the status caught up: seed 5305)."""
    if spec is None or not isinstance(suspended_at, str):
        return None
    try:
        expiry = expiry_of(spec, suspended_at)
    except ValueError:
        return None  # not a time we wrote
    return format_time(expiry) if expiry is not None else None


# Live views of kopf's indexes: the pods of a namespace, one pod by (namespace, name), a namespace's suspensions.
PodsOf = Callable[[str], Iterable[PodInfo]]
PodOf = Callable[[str, str], PodInfo | None]
SuspensionsOf = Callable[[str], Iterable[SuspensionInfo]]


def _nothing(_: str) -> list[Any]:
    return []


def _no_namespaces() -> list[str]:
    return []


def _no_pod(_: str, __: str) -> None:
    return None


@dataclass
class Runtime:
    """What every pod worker and status daemon shares: settings, the exec transport, the API client, live views of
    kopf's indexes, and the board of the workers' outcomes per suspension."""

    settings: ProcessControlSettings
    executor: PodExecutor
    kube: KubeClient
    pods_of: PodsOf = _nothing
    pod: PodOf = _no_pod  # the pod as the index has it now, or None when it is gone
    suspensions_of: SuspensionsOf = _nothing
    namespaces: Callable[[], Iterable[str]] = _no_namespaces  # the namespaces the pod index has pods in
    board: OutcomeBoard = field(default_factory=OutcomeBoard)
    # Only the leader acts: pod workers, status daemons and deletions wait for it (leader.py).
    leader: Leadership = field(default_factory=Leadership.solo)
    # The context of the latest kopf handler: kopf.event() works only where kopf set its event queue, which it
    # does for each object's handlers, not for the election task that starts the workers on a takeover.
    handler_context: contextvars.Context | None = None
    watch_lag: WatchLag = field(default_factory=WatchLag)


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
    leader = Leadership(
        kube,
        lease_namespace(settings.lease_namespace),
        settings.lease_name,
        leader_identity(settings.leader_identity),
        lease_duration_s=settings.lease_duration_s,
        renew_deadline_s=settings.renew_deadline_s,
        retry_period_s=settings.retry_period_s,
        last_send_s=settings.go_ahead_window_s + SEND_GRACE_S,
        announce=lambda lease, message: _announce_leader(kube, lease, message),
    )
    logger.info(f"leader election: lease {leader.namespace}/{leader.name} as {leader.identity}")
    return Runtime(settings=settings, executor=executor, kube=kube, leader=leader)


def _announce_leader(kube: KubeClient, lease: Mapping[str, Any], message: str) -> None:
    """The takeover, as an event on the Lease (where `kubectl describe lease` shows it); posted in the background,
    a failure only logged: leading does not wait for it."""
    metadata = lease.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{metadata.get('name', 'lease')}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "name": metadata.get("name"),
            "namespace": namespace,
            "uid": metadata.get("uid"),
        },
        "reason": str(Reason.LEADER_ELECTED),
        "message": message,
        "type": "Normal",
        "source": {"component": "processcontrol"},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }

    async def post() -> None:
        try:
            await kube.create_event(namespace, body)
        except ApiError as error:
            logging.getLogger(__name__).warning(f"could not post the {Reason.LEADER_ELECTED} event: {error}")

    _background.add(task := asyncio.ensure_future(post()))
    task.add_done_callback(_background.discard)


# Tasks in flight that nothing awaits (asyncio keeps only weak references to them).
_background: set[asyncio.Future[None]] = set()


async def stop_runtime(runtime: Runtime) -> None:
    """Release the API client and the exec transport's threads (once the pod workers are stopped)."""
    runtime.kube.close()
    # Only the real transport holds threads; the PodExecutor protocol (and test doubles) need no close().
    close = getattr(runtime.executor, "close", None)
    if callable(close):
        close()
