"""Probes that a suspension makes fail, and the container restarts that follow: pure functions over pod summaries.

A stopped process fails its container's liveness probe; the kubelet restarts the container, and containerrun, whose
suspension state is in memory, starts the process again. The operator stops it again within a second, so the
container loops: stop, probe fails, restart, stop again, with the kubelet's back-off growing to CrashLoopBackOff.
This module says before the first STOP which containers that may happen to (`conflicts`), which processes a
`probes: Skip` suspension leaves alone (`skipped_pairs`), and when restarts have become a loop (`RestartTracker`).

Which container runs which process: kubecf starts each BOSH process in its own container as
`containerrun --job-name J --process-name P -- ...`, named `J-P`. The arguments are read first, the name second.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Probes whose failure makes the kubelet restart the container. A readiness probe only takes the pod out of its
# Services' endpoints, which a suspended process is out of anyway.
RESTARTING_PROBES = ("livenessProbe", "startupProbe")


@dataclass(frozen=True)
class ContainerProbe:
    """A probe of one container that restarts it when it fails."""

    container: str
    kind: str  # livenessProbe or startupProbe
    handler: str  # what it checks, for people: `exec [test -f ...]`, `httpGet :8080/healthz`, `tcpSocket :80`

    def describe(self) -> str:
        """`web-http: livenessProbe httpGet :8080/`."""
        return f"{self.container}: {self.kind} {self.handler}"


@dataclass(frozen=True)
class ContainerProcess:
    """The BOSH process a container runs under containerrun, from its command line."""

    container: str
    job: str
    process: str


def _handler(probe: Mapping[str, Any]) -> str:
    if "exec" in probe:
        command = (probe.get("exec") or {}).get("command") or []
        return f"exec {' '.join(str(part) for part in command)}"[:200]
    if "httpGet" in probe:
        get = probe.get("httpGet") or {}
        return f"httpGet :{get.get('port', '')}{get.get('path', '/')}"[:200]
    if "tcpSocket" in probe:
        return f"tcpSocket :{(probe.get('tcpSocket') or {}).get('port', '')}"
    if "grpc" in probe:
        return f"grpc :{(probe.get('grpc') or {}).get('port', '')}"
    return "unknown handler"


def container_probes(containers: Iterable[Mapping[str, Any]]) -> tuple[ContainerProbe, ...]:
    """The restarting probes of a pod's containers, in the pod's order."""
    return tuple(
        ContainerProbe(str(c.get("name", "")), kind, _handler(c[kind]))
        for c in containers
        for kind in RESTARTING_PROBES
        if isinstance(c.get(kind), Mapping)
    )


def _option(argv: Sequence[str], name: str) -> str | None:
    """The value of `--name V` or `--name=V` before the `--` that starts the child's command."""
    for index, arg in enumerate(argv):
        if arg == "--":
            return None
        if arg == name and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(name + "="):
            return arg[len(name) + 1 :]
    return None


def container_processes(containers: Iterable[Mapping[str, Any]]) -> tuple[ContainerProcess, ...]:
    """The containers whose command line runs containerrun with a job and process name."""
    found: list[ContainerProcess] = []
    for container in containers:
        argv = [str(part) for part in (container.get("command") or []) + (container.get("args") or [])]
        job, process = _option(argv, "--job-name"), _option(argv, "--process-name")
        if job and process:
            found.append(ContainerProcess(str(container.get("name", "")), job, process))
    return tuple(found)


def kubecf_container_name(job: str, process: str) -> str:
    """The container name kubecf gives a BOSH process: `job-process`, lower case, dashes for the rest."""
    return re.sub(r"[^a-z0-9-]", "-", f"{job}-{process}".lower())[:63].strip("-")


@dataclass(frozen=True)
class PodProbes:
    """What this module needs of a pod, kept in its index entry."""

    containers: tuple[str, ...] = ()
    probes: tuple[ContainerProbe, ...] = ()
    processes: tuple[ContainerProcess, ...] = ()
    restarts: tuple[tuple[str, int], ...] = ()  # (container, restartCount); a tuple keeps PodInfo hashable

    def restarts_of(self, container: str) -> int:
        """The container's restart count (0 for one not started yet)."""
        return next((count for name, count in self.restarts if name == container), 0)

    def container_of(self, job: str, process: str) -> str | None:
        """The container that runs this process, if the pod says so."""
        for entry in self.processes:
            if (entry.job, entry.process) == (job, process):
                return entry.container
        named = kubecf_container_name(job, process)
        return named if named in self.containers else None

    def foreseen_conflicts(self, jobs: Sequence[str], processes: Sequence[str]) -> tuple[ContainerProbe, ...]:
        """Without looking into the pod: the conflicts of the processes its containers' command lines show that
        these filters select (empty = all). The worker's own check, from the sockets it finds, may find more."""
        pairs = [
            (entry.job, entry.process)
            for entry in self.processes
            if (not jobs or entry.job in jobs) and (not processes or entry.process in processes)
        ]
        return self.conflicts(pairs)

    def conflicts(self, pairs: Iterable[tuple[str, str]]) -> tuple[ContainerProbe, ...]:
        """The restarting probes of the containers that run these processes: they may fail once they stop."""
        containers = {self.container_of(job, process) for job, process in pairs}
        return tuple(probe for probe in self.probes if probe.container in containers)

    def probed(self, pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """Those of these processes whose container has a restarting probe."""
        probed = {probe.container for probe in self.probes}
        return [(job, process) for job, process in pairs if self.container_of(job, process) in probed]

    def containers_of(self, pairs: Iterable[tuple[str, str]]) -> list[str]:
        """The containers that run these processes, where the pod says which (sorted, once each)."""
        return sorted({c for c in (self.container_of(j, p) for j, p in pairs) if c is not None})


def pod_probes(spec: Mapping[str, Any], status: Mapping[str, Any]) -> PodProbes:
    """Summarise a pod's containers, restarting probes, containerrun command lines and restart counts."""
    containers = [c for c in spec.get("containers") or [] if isinstance(c, Mapping)]
    return PodProbes(
        containers=tuple(str(c.get("name", "")) for c in containers),
        probes=container_probes(containers),
        processes=container_processes(containers),
        restarts=tuple(
            (str(cs.get("name", "")), int(cs.get("restartCount") or 0)) for cs in status.get("containerStatuses") or []
        ),
    )


def kubelet_reason(events: Sequence[Mapping[str, Any]], container: str) -> str:
    """The kubelet's latest word on why it restarts this container: its probe failure (`Liveness probe failed:
    ...`), else its kill notice; "" when it said nothing (its events expire after an hour by default)."""
    mine = [
        e
        for e in events
        if (e.get("involvedObject") or {}).get("fieldPath") == f"spec.containers{{{container}}}"
        and e.get("reason") in ("Unhealthy", "Killing")
    ]
    mine.sort(key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    for reason in ("Unhealthy", "Killing"):
        latest = [e for e in mine if e.get("reason") == reason]
        if latest:
            return str(latest[-1].get("message") or "").strip()[:300]
    return ""
