"""Which pods and sockets a suspension targets: pure functions over pod summaries and the spec."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from processcontrol.api import INSTANCE_GROUP_LABEL, LabelSelector, ProcessSuspensionSpec
from processcontrol.ledger import LedgerSummary, holders_in
from processcontrol.probes import PodProbes, pod_probes

DATA_MOUNT = "/var/vcap/data"


@dataclass(frozen=True)
class PodInfo:
    """What the operator needs to know of a pod, kept in the pod index."""

    namespace: str
    name: str
    uid: str
    labels: Mapping[str, str]
    phase: str
    terminating: bool
    containers: tuple[str, ...]
    data_containers: tuple[str, ...]
    # Changes whenever a container restarts: a restarted containerrun has forgotten its suspension.
    restarts: int = 0
    resource_version: str = ""
    # Containers, their restarting probes, which process each runs and restarts per container (probes.py).
    probes: PodProbes = field(default_factory=PodProbes)
    # The hold ledger (annotation processcontrol.dev/holds), parsed once when the entry is built: the uids of the
    # suspensions holding something here, and whether it can be read. Never the annotation itself: it is up to
    # 256 KiB per pod, and every change of a suspension looks at every pod of its namespace. The pod's worker
    # reads the ledger from the API (LedgerWriter.read).
    ledger: LedgerSummary = field(default_factory=LedgerSummary)

    @property
    def holders(self) -> tuple[str, ...]:
        """The suspensions this pod's ledger names as holding something here (an unreadable one: in its `holds`)."""
        return self.ledger.holders

    @property
    def running(self) -> bool:
        """A pod that can be exec'ed into and is not going away."""
        return self.phase == "Running" and not self.terminating


def pod_info_from_body(body: Mapping[str, Any]) -> PodInfo:
    """Summarise a pod object (as kopf or the API returns it) into a PodInfo."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    containers = spec.get("containers") or []
    data_containers = tuple(
        c["name"]
        for c in containers
        if any(m.get("mountPath", "").rstrip("/") == DATA_MOUNT for m in c.get("volumeMounts") or [])
    )
    restarts = sum(int(cs.get("restartCount") or 0) for cs in status.get("containerStatuses") or [])
    return PodInfo(
        namespace=meta.get("namespace", ""),
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        labels=dict(meta.get("labels") or {}),
        phase=status.get("phase", ""),
        terminating=meta.get("deletionTimestamp") is not None,
        containers=tuple(c["name"] for c in containers),
        data_containers=data_containers,
        restarts=restarts,
        resource_version=str(meta.get("resourceVersion") or ""),
        probes=pod_probes(spec, status),
        ledger=holders_in(meta.get("annotations")),
    )


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Evaluate a metav1.LabelSelector against a pod's labels."""
    if any(labels.get(key) != value for key, value in selector.match_labels.items()):
        return False
    for requirement in selector.match_expressions:
        present = requirement.key in labels
        value = labels.get(requirement.key)
        if requirement.operator == "In" and value not in requirement.values:
            return False
        if requirement.operator == "NotIn" and present and value in requirement.values:
            return False
        if requirement.operator == "Exists" and not present:
            return False
        if requirement.operator == "DoesNotExist" and present:
            return False
    return True


def spec_matches_pod(spec: ProcessSuspensionSpec, labels: Mapping[str, str]) -> bool:
    """Whether a pod with these labels is a target of the spec."""
    if spec.instance_group is not None:
        return labels.get(INSTANCE_GROUP_LABEL) == spec.instance_group
    return spec.selector is not None and selector_matches(spec.selector, labels)


def select_targets(spec: ProcessSuspensionSpec, pods: Iterable[PodInfo]) -> list[PodInfo]:
    """The running, non-terminating pods the spec targets, sorted by name."""
    return sorted((p for p in pods if p.running and spec_matches_pod(spec, p.labels)), key=lambda p: p.name)


def exec_container(pod: PodInfo, requested: str | None) -> str | None:
    """The container to exec into: the requested one, else the first mounting /var/vcap/data, else the first."""
    if requested is not None:
        return requested if requested in pod.containers else None
    if pod.data_containers:
        return pod.data_containers[0]
    return pod.containers[0] if pod.containers else None


def socket_selected(spec: ProcessSuspensionSpec, job: str, process: str) -> bool:
    """Whether the spec's jobs/processes filters cover this socket (empty filter = everything)."""
    return (not spec.jobs or job in spec.jobs) and (not spec.processes or process in spec.processes)
