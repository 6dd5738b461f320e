"""The promise, checked from outside: every process is in the state the live suspensions ask for.

The invariant (issue 23), checked against what the cluster and the processes show, never against what the operator
believes:

- a process that a live suspension holds is stopped (within the repair time after a restart or a new pod), and
  is never started while that suspension holds it (counted from the container's log where the source can);
- a process that no live suspension holds is in the state it had before its first hold (stopped by hand stays
  stopped);
- every pod's ledger names only live suspensions' holds that cover its processes, and no pod keeps the suspended
  label without a hold (nor lacks it while a live hold keeps a process stopped);
- no status says Ready for a generation whose intent is not in force at that moment;
- a deleted suspension is gone within a bound once its pods can be reached;
- a duration runs out when it has passed since the first effect (not before, and not only once a STOP verifies).

"Live" is read from the objects: the suspension exists, is not being deleted, says `suspend: true` and is no
`preview` (which holds nothing: it is Ready as Previewed once nothing is held), has not run out
of its `duration`, and targets the pod (instance group or selector) and the process (its `jobs`/`processes`
filters, and its `probes` policy for processes in probed containers). Expiry cannot be known to the second from
outside (it counts from the first effect), so a suspension with a duration is live for sure until its duration has
passed since it was asked for, surely over once it has passed since its first effect was seen (plus a slack), and
in between neither: its processes are then not judged.

The matching (selectors, filters, probe policy) is written here again on purpose, small and from the API's
documentation, instead of imported from the operator: an oracle that shares the operator's code shares its bugs.

Where the processes' state comes from is pluggable (`ProcessSource`): `HostProcesses` reads the fake pods' host
directories on the local control plane (sentinels, pid files, the containerrun processes themselves);
`ExecStatus` asks each pod with `kubectl exec ... processcontrol status -o json`, which the real-node tier can use
against real pods. What only the caller knows (which processes were stopped by hand, when a suspension was asked
for, when the outside last changed something) comes in as `Hints`; without them the checker assumes every process
ran before its first hold and nothing changed from outside.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from harness import fakepods
from harness.base import ControlPlaneError, kubectl, pid_alive
from processcontrol.api import GROUP, INSTANCE_GROUP_LABEL, SUSPENDED_LABEL
from processcontrol.api.duration import parse_duration

HOLDS_ANNOTATION = f"{GROUP}/holds"
DATA_MOUNT = "/var/vcap/data"
RESTARTING_PROBES = ("livenessProbe", "startupProbe")

Pair = tuple[str, str]  # (job, process)


class ProcState(StrEnum):
    """A process as seen from outside."""

    RUNNING = "running"  # its sentinel exists and its main process lives
    STOPPED = "stopped"  # no sentinel, no main process
    GONE = "gone"  # no containerrun answers for it (its container is not running)
    UNSETTLED = "unsettled"  # sentinel and process disagree: a stop or start is under way


class Base(StrEnum):
    """A process's state before its first hold, which it must return to when no hold is left."""

    RUNNING = "running"
    STOPPED = "stopped"  # stopped by hand while nothing held it
    EITHER = "either"  # stopped by hand, then its container restarted while held: both answers are defensible


class Live(StrEnum):
    """Whether a suspension holds what it targets right now."""

    LIVE = "live"
    DEAD = "dead"  # deleted, being deleted, suspend: false, or surely expired
    UNSURE = "unsure"  # its duration may or may not have run out


# --- the truth -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PodTruth:
    """One pod as the API shows it, with its processes as the process source shows them."""

    name: str
    uid: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    terminating: bool
    phase: str
    containers: tuple[Mapping[str, Any], ...]
    processes: Mapping[Pair, ProcState]
    # When a START started each process (epoch s), where the source can tell (see Seen).
    starts: Mapping[Pair, tuple[float, ...]] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """A pod suspensions target: running and not going away (a terminating pod's holds go with it)."""
        return self.phase == "Running" and not self.terminating


@dataclass(frozen=True)
class SuspensionTruth:
    """One ProcessSuspension as the API shows it."""

    name: str
    uid: str
    generation: int
    spec: Mapping[str, Any]
    status: Mapping[str, Any]
    deleting: bool
    created: float  # creationTimestamp, seconds since the epoch

    def condition(self, kind: str) -> Mapping[str, Any]:
        """One condition of the status (empty when absent)."""
        return next((c for c in self.status.get("conditions") or [] if c.get("type") == kind), {})


@dataclass(frozen=True)
class Truth:
    """Everything read at one moment (`at`, seconds since the epoch, taken before the first read)."""

    at: float
    pods: Mapping[str, PodTruth]
    suspensions: Mapping[str, SuspensionTruth]


class Seen(NamedTuple):
    """One process as a source sees it: its state and, where the source can tell, when a START started it (a
    process held throughout must never be started, however short the time it ran)."""

    state: ProcState
    starts: tuple[float, ...] | None = None


class ProcessSource(Protocol):
    """Where the processes' real state comes from."""

    def read(self, namespace: str, pod: Mapping[str, Any]) -> dict[Pair, Seen]:
        """Every containerrun process of the pod (the pod as the API returns it) and its state."""
        ...


# What our containerrun logs each time a START starts its process (a restarted containerrun's own start says
# `(containerrun started)` instead: a container restart is no START).
STARTED_BY_START = "-> running (START)"


def _log_time(line: str) -> float:
    """The moment of a containerrun log line (`2026-12-01 21:47:42,898 ...`, this host's local time)."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


class HostProcesses:
    """The fake pods of the local control plane: their containerrun processes run on this host, so their sentinels,
    pid files and processes are read directly (fakepods' layout)."""

    def __init__(self, state: Path | None = None) -> None:
        self.state = state

    def read(self, namespace: str, pod: Mapping[str, Any]) -> dict[Pair, Seen]:
        name = pod["metadata"]["name"]
        uid_file = fakepods.pod_dir(namespace, name, self.state) / "uid"
        try:
            same_pod = uid_file.read_text().strip() == pod["metadata"]["uid"]
        except OSError:
            same_pod = False
        if not same_pod:
            # The host directory belongs to another incarnation of the name (or none): no process of this pod runs.
            return {}
        states = {}
        for jp in fakepods.pod_jobs(namespace, name, self.state):
            try:
                log = fakepods.container_log(namespace, name, jp, self.state).read_text(errors="replace")
                starts: tuple[float, ...] | None = tuple(
                    _log_time(line) for line in log.splitlines() if STARTED_BY_START in line
                )
            except (OSError, ValueError):
                starts = None
            states[(jp.job, jp.process)] = Seen(self._state(namespace, name, jp), starts)
        return states

    def _state(self, namespace: str, pod: str, jp: fakepods.JobProcess) -> ProcState:
        if fakepods.container_process(namespace, pod, jp, self.state) is None:
            return ProcState.GONE
        sentinel = fakepods.running_path(namespace, pod, jp, self.state).exists()
        try:
            main = pid_alive(int(fakepods.pid_path(namespace, pod, jp, self.state).read_text().strip()))
        except (OSError, ValueError):
            main = False
        if sentinel and main:
            return ProcState.RUNNING
        if not sentinel and not main:
            return ProcState.STOPPED
        return ProcState.UNSETTLED


# `processcontrol status` states (stale: the socket refuses, containerrun is gone; unknown: it could not tell).
_STATUS_STATES = {"running": ProcState.RUNNING, "stopped": ProcState.STOPPED, "stale": ProcState.GONE}
STATUS_COMMAND = ("processcontrol", "status", "-o", "json")
# Runs a command in a pod's container and returns what it printed: (namespace, pod, container, argv) -> stdout.
# Raises ControlPlaneError when the exec fails.
Exec = Callable[[str, str, str, Sequence[str]], str]


class StatusRow(BaseModel):
    """One row of `processcontrol status -o json` (docs/containerrun.md), as far as the checker needs it. What a
    pod prints is untrusted: a row that is not this makes the read fail, it is never half believed."""

    model_config = ConfigDict(extra="ignore", strict=True)

    job: str = Field(min_length=1, max_length=253)
    process: str = Field(min_length=1, max_length=253)
    state: str = Field(max_length=32)


_STATUS_ROWS: TypeAdapter[list[StatusRow]] = TypeAdapter(list[StatusRow])


def parse_status(text: str, where: str) -> dict[Pair, Seen]:
    """The processes `processcontrol status -o json` printed; ValueError naming `where` if it is anything else.
    Two sockets of one process that disagree make it unsettled."""
    try:
        rows = _STATUS_ROWS.validate_json(text)
    except ValidationError as error:
        first = error.errors()[0]
        place = ".".join(str(part) for part in first["loc"]) or "the output"
        what = f"{place}: {first['msg']}"
        raise ValueError(f"{where}: processcontrol status -o json printed no list of rows ({what})") from None
    seen: dict[Pair, Seen] = {}
    for row in rows:
        state = _STATUS_STATES.get(row.state, ProcState.UNSETTLED)
        pair = (row.job, row.process)
        if pair in seen and seen[pair].state is not state:
            state = ProcState.UNSETTLED
        seen[pair] = Seen(state)
    return seen


def kubectl_exec(state: Path | None, timeout: float) -> Exec:
    """The exec of a control plane's admin (this one, or the one rooted at `state`)."""

    def run(namespace: str, pod: str, container: str, argv: Sequence[str]) -> str:
        return kubectl("exec", "-n", namespace, pod, "-c", container, "--", *argv, state=state, timeout=timeout).stdout

    return run


class ExecStatus:
    """Any pod whose containers have `processcontrol` (the real node's workload, kubecf's images with it): `kubectl
    exec POD -c CONTAINER -- processcontrol status -o json` as the cluster's admin, in a running container that
    mounts /var/vcap/data (where every container's sockets are), the next one when that exec fails (a container
    that is restarting). No START times: a held process that was started and stopped again between two reads is
    not seen (HostProcesses sees it in the container's log). `run` replaces kubectl's exec (tests)."""

    def __init__(
        self,
        state: Path | None = None,
        timeout: float = 30.0,
        command: Sequence[str] = STATUS_COMMAND,
        run: Exec | None = None,
    ) -> None:
        self.command = tuple(command)
        self.run = run or kubectl_exec(state, timeout)

    def read(self, namespace: str, pod: Mapping[str, Any]) -> dict[Pair, Seen]:
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        if status.get("phase") != "Running":
            return {}
        running = {c.get("name") for c in status.get("containerStatuses") or [] if "running" in (c.get("state") or {})}
        candidates = [c for c in data_containers(pod.get("spec", {}).get("containers") or []) if c in running]
        failures = []
        for container in candidates:
            try:
                out = self.run(namespace, name, container, self.command)
            except ControlPlaneError as error:
                failures.append(f"{container}: {error}")
                continue
            return parse_status(out, f"pod {namespace}/{name} container {container}")
        if not candidates:
            # Running, but no container that mounts the data volume runs: none of its processes can run either.
            return {}
        raise ControlPlaneError(f"pod {namespace}/{name}: no container answered {' '.join(self.command)}: {failures}")


def data_containers(containers: Iterable[Mapping[str, Any]]) -> list[str]:
    """The containers that mount /var/vcap/data (where the sockets are), in the pod's order."""
    return [
        str(container["name"])
        for container in containers
        if any(m.get("mountPath", "").rstrip("/") == DATA_MOUNT for m in container.get("volumeMounts") or [])
    ]


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read_truth(namespace: str, source: ProcessSource, state: Path | None = None) -> Truth:
    """Suspensions first, then pods, then processes: a Ready read before the processes cannot be excused by a
    change the processes show later (nothing from outside happens while the checker reads)."""
    at = time.time()
    psus = json.loads(kubectl("get", "psus", "-n", namespace, "-o", "json", state=state).stdout)["items"]
    pods = json.loads(kubectl("get", "pods", "-n", namespace, "-o", "json", state=state).stdout)["items"]
    suspensions = {
        s["metadata"]["name"]: SuspensionTruth(
            name=s["metadata"]["name"],
            uid=s["metadata"]["uid"],
            generation=int(s["metadata"].get("generation") or 0),
            spec=s.get("spec") or {},
            status=s.get("status") or {},
            deleting=s["metadata"].get("deletionTimestamp") is not None,
            created=_epoch(s["metadata"].get("creationTimestamp")) or at,
        )
        for s in psus
    }
    truths = {}
    for pod in pods:
        meta = pod["metadata"]
        seen = source.read(namespace, pod)
        truths[meta["name"]] = PodTruth(
            name=meta["name"],
            uid=meta["uid"],
            labels=meta.get("labels") or {},
            annotations=meta.get("annotations") or {},
            terminating=meta.get("deletionTimestamp") is not None,
            phase=(pod.get("status") or {}).get("phase", ""),
            containers=tuple((pod.get("spec") or {}).get("containers") or ()),
            processes={pair: view.state for pair, view in seen.items()},
            starts={pair: view.starts for pair, view in seen.items() if view.starts is not None},
        )
    return Truth(at, truths, suspensions)


# --- what a suspension targets -----------------------------------------------------------------------------------


def selects(spec: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether the spec targets a pod with these labels: `instanceGroup` (kubecf's label) or a metav1 selector."""
    group = spec.get("instanceGroup")
    if group is not None:
        return bool(labels.get(INSTANCE_GROUP_LABEL) == group)
    selector = spec.get("selector") or {}
    if not selector:
        return False
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for requirement in selector.get("matchExpressions") or []:
        key, operator, values = requirement["key"], requirement["operator"], requirement.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


def covers(spec: Mapping[str, Any], pair: Pair) -> bool:
    """Whether the `jobs`/`processes` filters select the process (an empty filter selects everything)."""
    jobs, processes = spec.get("jobs") or [], spec.get("processes") or []
    return (not jobs or pair[0] in jobs) and (not processes or pair[1] in processes)


def _runs(container: Mapping[str, Any], pair: Pair) -> bool:
    argv = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    for flag, value in (("--job-name", pair[0]), ("--process-name", pair[1])):
        if not any(argv[i] == flag and argv[i + 1] == value for i in range(len(argv) - 1)):
            return False
    return True


def probed(containers: Iterable[Mapping[str, Any]], pair: Pair) -> bool:
    """Whether the process runs (by its containerrun arguments) in a container with a liveness or startup probe,
    which fails while the process is stopped."""
    return any(_runs(c, pair) and any(c.get(kind) for kind in RESTARTING_PROBES) for c in containers)


def holds_nothing(spec: Mapping[str, Any]) -> bool:
    """The spec asks for no hold at all: `suspend: false`, or a preview (it only looks)."""
    return spec.get("suspend", True) is False or spec.get("preview") is True


def held_pairs(spec: Mapping[str, Any], pod: PodTruth) -> set[Pair]:
    """What the spec, were it live, holds in the pod: the targeted processes, less those `probes: Skip` leaves
    running; `probes: Refuse` holds nothing in a pod where one of them is probed."""
    if not pod.active or not selects(spec, pod.labels):
        return set()
    pairs = {pair for pair in pod.processes if covers(spec, pair)}
    conflicting = {pair for pair in pairs if probed(pod.containers, pair)}
    policy = spec.get("probes") or "Warn"
    if policy == "Refuse" and conflicting:
        return set()
    if policy == "Skip":
        return pairs - conflicting
    return pairs


def ledger_of(pod: PodTruth) -> tuple[dict[str, Any], dict[str, set[Pair]]] | None:
    """The pod's hold ledger read leniently (any version): its holds by suspension uid, and the processes each
    uid holds. None when it cannot be read at all; empty when the pod has none."""
    raw = pod.annotations.get(HOLDS_ANNOTATION)
    if not raw:
        return {}, {}
    try:
        data = json.loads(raw)
        holds = dict(data.get("holds") or {})
        held: dict[str, set[Pair]] = {uid: set() for uid in holds}
        for key, entry in (data.get("processes") or {}).items():
            job, _, process = str(key).partition("/")
            for uid in entry.get("holders") or []:
                held.setdefault(str(uid), set()).add((job, process))
    except (ValueError, AttributeError, TypeError):
        return None
    return holds, held


# --- the checker ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    """How long the system has to get there: generous, so that a loaded machine does not make violations."""

    repair_s: float = 90.0  # from the end of a step until everything is as it must be
    expiry_slack_s: float = 30.0  # after first effect + duration, until the suspension is surely over
    ready_grace_s: float = 5.0  # a Ready declared this soon after an outside change may still be about before it
    # A START sent for an earlier request may land this long after a later one: a fenced exec acts only on a
    # go-ahead within its window (5 s) and sends nothing later than the grace (10 s) after it.
    inflight_s: float = 15.0
    stable_s: float = 1.0  # converged means: still converged this much later
    interval_s: float = 0.5  # between two reads while waiting


@dataclass
class Hints:
    """What the caller knows that the truth cannot show."""

    # (pod, job, process) -> its state before its first hold; absent: running.
    base: dict[tuple[str, str, str], Base] = field(default_factory=dict)
    # Suspension name -> when (epoch s, taken before the request) its current run was asked for: created, or
    # `suspend` set true again. Absent: its creationTimestamp.
    started: dict[str, float] = field(default_factory=dict)
    # (suspension name, generation) -> when the request that made the generation was sent (before it was sent).
    generations: dict[tuple[str, int], float] = field(default_factory=dict)
    # When the last change from outside to processes, pods or their labels ended (epoch s).
    disturbed: float = 0.0
    # When each request (a step) was sent, and when the checker last saw everything settled after one.
    requests: list[float] = field(default_factory=list)
    settled: float = 0.0


@dataclass(frozen=True)
class Violation:
    """One clause broken: which, about what, and what was seen."""

    kind: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.subject}: {self.detail}"


# Clauses that, once broken, no later repair makes right (a Ready that was not true, a held process that ran, a
# duration counted from the wrong moment); the others, the system has the repair time to put right.
INSTANT = frozenset({"ready-not-in-force", "held-started", "expiry-early", "expiry-late"})


class Checker:
    """Reads the truth of one namespace and judges it; remembers what it saw of each suspension's first effect."""

    def __init__(
        self,
        namespace: str,
        source: ProcessSource,
        limits: Limits | None = None,
        hints: Hints | None = None,
        state: Path | None = None,
        reader: Callable[[], Truth] | None = None,
    ) -> None:
        self.namespace = namespace
        self.source = source
        self.limits = limits or Limits()
        self.hints = hints or Hints()
        self.state = state
        self.reader = reader or (lambda: read_truth(self.namespace, self.source, self.state))
        # Suspension uid -> (the run it was seen in, when its first effect was first seen: a hold in a ledger).
        self.first_effect: dict[str, tuple[float, float]] = {}
        self.reads = 0
        # The previous read, with what each process was held by then (uid, run), for held-started.
        self.previous: tuple[Truth, dict[tuple[str, Pair], set[tuple[str, float]]]] | None = None
        # Violations that no repair undoes, seen by a read outside converge() (while a fault lasts, say).
        self.pending: list[Violation] = []
        self.expiry_reported: set[tuple[str, float, str]] = set()
        # Why the last read failed (what a converge() that never read says).
        self.unreadable = "the API could not be read"
        # Called before every read: what runs beside the cluster between reads (a runner's kubelet, say).
        self.before_read: Callable[[], None] = lambda: None

    # Reading ------------------------------------------------------------------------------------------------------

    def observe(self) -> Truth | None:
        """Read the truth and note first effects; None when the API cannot be read right now."""
        self.before_read()
        try:
            truth = self.reader()
        except (ControlPlaneError, ValueError, KeyError, OSError, subprocess.SubprocessError) as error:
            self.unreadable = f"{type(error).__name__}: {error}"[:2000]
            return None
        self.pending += self.observe_truth(truth)
        return truth

    def observe_truth(self, truth: Truth) -> list[Violation]:
        """Note what a read shows of first effects; return what it shows no repair undoes since the last one."""
        self.reads += 1
        for pod in truth.pods.values():
            ledger = ledger_of(pod)
            if ledger is None:
                continue
            for suspension in truth.suspensions.values():
                run = self._run_start(suspension)
                seen = self.first_effect.get(suspension.uid)
                if suspension.uid in ledger[1] and (seen is None or seen[0] != run):
                    self.first_effect[suspension.uid] = (run, truth.at)
        return self._started_while_held(truth) + self._expiry(truth)

    def _expiry(self, truth: Truth) -> list[Violation]:
        """A duration counts from the suspension's first effect: the `expiresAt` the operator shows may not come
        before the request plus the duration, and must be there, at the latest the first hold seen plus the
        duration (or the request that set it, if later) plus the slack, once that moment has passed (it may never
        wait for a STOP to be verified)."""
        wrong = []
        for suspension in truth.suspensions.values():
            duration = suspension.spec.get("duration")
            if not duration or suspension.deleting or holds_nothing(suspension.spec):
                continue
            seconds = parse_duration(str(duration)).total_seconds()
            run = self._run_start(suspension)
            expires = _epoch(suspension.status.get("expiresAt"))
            seen = self.first_effect.get(suspension.uid)
            # A duration set (or changed) later runs out at once if it has passed already: from that request on.
            changed = self.hints.generations.get((suspension.name, suspension.generation), 0.0)
            latest = max(seen[1] + seconds, changed) + self.limits.expiry_slack_s if seen and seen[0] == run else None
            problem = None
            if expires is not None and expires < run + seconds - 1:
                problem = "early", f"expiresAt {suspension.status['expiresAt']}, before the request + {duration}"
            elif latest is not None and truth.at > latest and (expires is None or expires > latest):
                when = datetime.fromtimestamp(seen[1]).strftime("%H:%M:%S") if seen else "?"
                shown = suspension.status.get("expiresAt") or "no expiresAt"
                problem = "late", f"first hold seen at {when}, {duration} later is long past, status shows {shown}"
            if problem is not None and (suspension.uid, run, problem[0]) not in self.expiry_reported:
                self.expiry_reported.add((suspension.uid, run, problem[0]))
                wrong.append(Violation(f"expiry-{problem[0]}", suspension.name, problem[1]))
        return wrong

    def _held_by(self, truth: Truth) -> dict[tuple[str, Pair], set[tuple[str, float]]]:
        """(pod uid, process) -> the live suspensions (uid, run) that hold it at this read."""
        held: dict[tuple[str, Pair], set[tuple[str, float]]] = {}
        for suspension in truth.suspensions.values():
            if self.liveness(suspension, truth.at) is not Live.LIVE:
                continue
            for pod in truth.pods.values():
                for pair in held_pairs(suspension.spec, pod):
                    held.setdefault((pod.uid, pair), set()).add((suspension.uid, self._run_start(suspension)))
        return held

    def _started_while_held(self, truth: Truth) -> list[Violation]:
        """A process that one suspension held at the previous read and holds at this one (the same object, in the
        same run of `suspend: true`, so live all along) and that a START started in between: it ran while held
        (a hand-over that bounces, a START that overtook a STOP, a late one), however briefly. A START that lands
        soon after the run began, when a request shortly before it had not settled, may have been sent for that
        request: such a race is the user's, not the operator's."""
        held = self._held_by(truth)
        previous, self.previous = self.previous, (truth, held)
        if previous is None:
            return []
        before, held_before = previous
        names = {s.uid: s.name for s in truth.suspensions.values()}
        wrong = []
        for pod in truth.pods.values():
            if not any(p.uid == pod.uid for p in before.pods.values()):
                continue
            for pair, starts in sorted(pod.starts.items()):
                runs = held.get((pod.uid, pair), set()) & held_before.get((pod.uid, pair), set())
                for moment in starts:
                    if not before.at < moment <= truth.at:
                        continue
                    guilty = sorted(names[uid] for uid, run in runs if run < moment and not self._raced(run, moment))
                    if guilty:
                        when = datetime.fromtimestamp(moment).strftime("%H:%M:%S.%f")[:-3]
                        wrong.append(
                            Violation(
                                "held-started",
                                f"{pod.name} {pair[0]}/{pair[1]}",
                                f"started by a START at {when} while {', '.join(guilty)} held it",
                            )
                        )
        return wrong

    def _raced(self, run: float, moment: float) -> bool:
        """Whether a START at `moment` may have been sent for a request just before the run began at `run`."""
        inflight = self.limits.inflight_s
        earlier = [t for t in self.hints.requests if max(self.hints.settled, run - inflight) <= t < run]
        return bool(earlier) and moment <= run + inflight

    def glance(self) -> list[Violation]:
        """One read, judged only for what no repair undoes (after a step that does not wait to settle)."""
        truth = self.observe()
        found, self.pending = self.pending, []
        if truth is not None:
            found += [v for v in self.judge(truth) if v.kind in INSTANT]
        return found

    def converge(self, timeout: float | None = None) -> list[Violation]:
        """Wait up to the repair time until nothing is wrong (and still nothing `stable_s` later); return what is
        still wrong then, or at once a violation no repair can undo (a false Ready)."""
        deadline = time.monotonic() + (self.limits.repair_s if timeout is None else timeout)
        wrong: list[Violation] | None = None  # what the last read that worked shows
        clean_since: float | None = None
        while True:
            truth = self.observe()
            if truth is not None:
                wrong = self.judge(truth)
                instant, self.pending = self.pending + [v for v in wrong if v.kind in INSTANT], []
                if instant:
                    return instant
                if not wrong:
                    clean_since = clean_since or time.monotonic()
                    if time.monotonic() - clean_since >= self.limits.stable_s:
                        self.hints.settled = time.time()
                        return []
                else:
                    clean_since = None
            if time.monotonic() > deadline:
                return wrong if wrong is not None else [Violation("unreadable", self.namespace, self.unreadable)]
            time.sleep(self.limits.interval_s)

    # Judging ------------------------------------------------------------------------------------------------------

    def _run_start(self, suspension: SuspensionTruth) -> float:
        return self.hints.started.get(suspension.name, suspension.created)

    def liveness(self, suspension: SuspensionTruth, now: float) -> Live:
        """Live, dead or unsure at `now` (see the module's docstring for expiry)."""
        if suspension.deleting or holds_nothing(suspension.spec):
            return Live.DEAD
        duration = suspension.spec.get("duration")
        if not duration:
            return Live.LIVE
        seconds = parse_duration(str(duration)).total_seconds()
        start = self._run_start(suspension)
        if now < start + seconds:
            return Live.LIVE
        expires = _epoch(suspension.status.get("expiresAt"))
        if expires is not None and expires >= start + seconds - 1 and now >= expires:
            return Live.DEAD  # the operator says it is over, and not too early
        seen = self.first_effect.get(suspension.uid)
        effects = [t for t in (_epoch(suspension.status.get("suspendedAt")),) if t is not None]
        if seen is not None and seen[0] == start:
            effects.append(seen[1])
        if effects and now > min(effects) + seconds + self.limits.expiry_slack_s:
            return Live.DEAD
        return Live.UNSURE

    def judge(self, truth: Truth) -> list[Violation]:
        """Every clause the truth breaks, at the moment it was read."""
        now = truth.at
        alive = {s.name: self.liveness(s, now) for s in truth.suspensions.values()}
        by_uid = {s.uid: s for s in truth.suspensions.values()}
        wrong: list[Violation] = []
        for pod in truth.pods.values():
            if pod.active:
                wrong += self._processes(pod, truth, alive)
                wrong += self._ledger(pod, truth, alive, by_uid)
        for suspension in truth.suspensions.values():
            if suspension.deleting:
                wrong.append(Violation("deletion-stuck", suspension.name, "being deleted, still there"))
                continue
            wrong += self._status(suspension, alive[suspension.name], truth)
        return wrong

    def _holders(self, pod: PodTruth, pair: Pair, truth: Truth, alive: Mapping[str, Live], kind: Live) -> list[str]:
        return sorted(
            s.name for s in truth.suspensions.values() if alive[s.name] is kind and pair in held_pairs(s.spec, pod)
        )

    def _processes(self, pod: PodTruth, truth: Truth, alive: Mapping[str, Live]) -> list[Violation]:
        wrong = []
        for pair, state in sorted(pod.processes.items()):
            subject = f"{pod.name} {pair[0]}/{pair[1]}"
            live = self._holders(pod, pair, truth, alive, Live.LIVE)
            if live:
                if state in (ProcState.RUNNING, ProcState.UNSETTLED):
                    wrong.append(Violation("held-running", subject, f"{state}, held by {', '.join(live)}"))
                continue
            if self._holders(pod, pair, truth, alive, Live.UNSURE):
                continue
            base = self.hints.base.get((pod.name, *pair), Base.RUNNING)
            if base is Base.EITHER:
                continue
            if state.value != base.value:
                kind = "unheld-stopped" if base is Base.RUNNING else "unheld-running"
                wrong.append(Violation(kind, subject, f"{state}, no live hold, {base} before its first hold"))
        return wrong

    def _ledger(
        self, pod: PodTruth, truth: Truth, alive: Mapping[str, Live], by_uid: Mapping[str, SuspensionTruth]
    ) -> list[Violation]:
        ledger = ledger_of(pod)
        if ledger is None:
            return [Violation("ledger-unreadable", pod.name, pod.annotations.get(HOLDS_ANNOTATION, "")[:200])]
        holds, held = ledger
        wrong = []
        for uid, pairs in sorted(held.items()):
            suspension = by_uid.get(uid)
            named = (holds.get(uid) or {}).get("name", "?") if isinstance(holds.get(uid), dict) else "?"
            if suspension is None:
                wrong.append(Violation("ledger-dead-hold", pod.name, f"names {named} ({uid}), which does not exist"))
                continue
            if alive[suspension.name] is Live.DEAD:
                wrong.append(Violation("ledger-dead-hold", pod.name, f"names {suspension.name}, which is not live"))
                continue
            foreign = sorted(p for p in pairs if p in pod.processes and p not in held_pairs(suspension.spec, pod))
            if foreign:
                listed = ", ".join(f"{j}/{p}" for j, p in foreign)
                wrong.append(Violation("ledger-foreign", pod.name, f"{suspension.name} holds {listed}, not its own"))
        labelled = pod.labels.get(SUSPENDED_LABEL) == "true"
        if labelled and not any(held.values()):
            wrong.append(Violation("label-without-hold", pod.name, f"{SUSPENDED_LABEL}=true, the ledger holds nothing"))
        stopped_held = [
            pair
            for pair, state in pod.processes.items()
            if state is ProcState.STOPPED and self._holders(pod, pair, truth, alive, Live.LIVE)
        ]
        if stopped_held and not labelled:
            wrong.append(Violation("label-missing", pod.name, f"a live hold keeps {stopped_held[0]} stopped, no label"))
        return wrong

    def _in_force(self, suspension: SuspensionTruth, live: Live, truth: Truth) -> str | None:
        """None when the suspension's current intent is carried out; else what is not."""
        alive = {s.name: self.liveness(s, truth.at) for s in truth.suspensions.values()}
        for pod in truth.pods.values():
            if not pod.active:
                continue
            if live is Live.LIVE:
                running = sorted(
                    p
                    for p in held_pairs(suspension.spec, pod)
                    if pod.processes[p] in (ProcState.RUNNING, ProcState.UNSETTLED)
                )
                if running:
                    return f"{pod.name} {running[0][0]}/{running[0][1]} is {pod.processes[running[0]]}"
                continue
            ledger = ledger_of(pod)
            if ledger is not None and ledger[1].get(suspension.uid):
                return f"{pod.name}'s ledger still holds for it"
            # Another suspension's hold, live or still being given back (it expired, say), is that one's business.
            others = {pair for pairs in (ledger[1].values() if ledger else ()) for pair in pairs}
            for pair in sorted(held_pairs({**suspension.spec, "probes": "Warn"}, pod) - others):
                if self._holders(pod, pair, truth, alive, Live.LIVE) or self._holders(
                    pod, pair, truth, alive, Live.UNSURE
                ):
                    continue
                base = self.hints.base.get((pod.name, *pair), Base.RUNNING)
                if base is not Base.EITHER and pod.processes[pair].value != base.value:
                    return f"{pod.name} {pair[0]}/{pair[1]} is {pod.processes[pair]}, {base} before its first hold"
        return None

    def _status(self, suspension: SuspensionTruth, live: Live, truth: Truth) -> list[Violation]:
        if live is Live.UNSURE:
            return []
        ready = suspension.condition("Ready")
        claimed = ready.get("observedGeneration", suspension.status.get("observedGeneration"))
        current = claimed == suspension.generation
        wanted = {"Suspended"} if live is Live.LIVE else {"Resumed", "Expired"}
        if suspension.spec.get("preview") is True and not suspension.deleting:
            wanted = {"Previewed"}
        if ready.get("status") == "True" and current:
            reason = ready.get("reason", "")
            problem = None if reason in wanted else f"says {reason} while the suspension is {live}"
            problem = problem or self._in_force(suspension, live, truth)
            if problem is None:
                return []
            declared = max(
                _epoch(ready.get("lastTransitionTime")) or 0.0,
                self.hints.generations.get((suspension.name, suspension.generation), 0.0),
            )
            expired = live is Live.DEAD and not holds_nothing(suspension.spec)
            if not expired and declared > self.hints.disturbed + self.limits.ready_grace_s:
                # Declared after the outside last changed anything, and untrue now: untrue when declared.
                when = datetime.fromtimestamp(declared).strftime("%H:%M:%S")
                return [Violation("ready-not-in-force", suspension.name, f"Ready at {when}: {problem}")]
            return [Violation("ready-stale", suspension.name, f"Ready ({reason}): {problem}")]
        if self._should_be_ready(suspension, live, truth):
            shown = f"{ready.get('status')} ({ready.get('reason')}: {ready.get('message', '')[:160]})"
            gen = f"generation {claimed} of {suspension.generation}"
            return [Violation("not-ready", suspension.name, f"Ready is {shown}, {gen}")]
        return []

    def _should_be_ready(self, suspension: SuspensionTruth, live: Live, truth: Truth) -> bool:
        """Whether the intent is one the operator can verify here, so Ready must come: every target pod has a
        process the filters select (and, to suspend, one it holds), no probe policy refuses, no restart loop."""
        stalled = suspension.condition("Stalled")
        if stalled.get("status") == "True" and stalled.get("reason") == "RestartLoop":
            return False
        targets = [p for p in truth.pods.values() if p.active and selects(suspension.spec, p.labels)]
        if not targets:
            return False
        for pod in targets:
            if not any(covers(suspension.spec, pair) for pair in pod.processes):
                return False
            if live is Live.LIVE and not held_pairs(suspension.spec, pod):
                return False
            if any(state in (ProcState.GONE, ProcState.UNSETTLED) for state in pod.processes.values()):
                return False
        return True


def describe(violations: Iterable[Violation]) -> str:
    """One violation a line."""
    return "\n".join(f"  {v}" for v in violations)
