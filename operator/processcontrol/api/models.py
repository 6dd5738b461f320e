"""Pydantic models of the ProcessSuspension resource; the CRD is generated from these (`processcontrol crd`)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from pydantic.alias_generators import to_camel

from processcontrol.api.duration import DURATION_PATTERN, parse_duration

GROUP = "processcontrol.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ProcessSuspension"
PLURAL = "processsuspensions"
INSTANCE_GROUP_LABEL = "quarks.cloudfoundry.org/instance-group-name"
SUSPENDED_LABEL = f"{GROUP}/suspended"

# BOSH job and process names as they appear in socket paths; the leading character rules out `-x`
# (an option to the in-pod script's tools) and `.`/`..` (path traversal).
BOSH_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
BOSH_NAME_MAX = 128
BoshName = Annotated[str, StringConstraints(pattern=BOSH_NAME_PATTERN, max_length=BOSH_NAME_MAX)]
LabelValue = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", max_length=63)]
LabelKey = Annotated[
    str,
    StringConstraints(
        # An optional DNS prefix and `/`, then a name of at most 63 characters (as the API server checks labels).
        pattern=r"^([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
        max_length=317,
    ),
]
DnsLabel = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"}, max_length=64)]

MAX_NAMES = 64
# A staged suspension has at least two stages (one is a plain jobs/processes filter) and at most this many: each
# stage is a round of execs into every target pod, one after another.
MAX_STAGES = 8
# The status lists at most this many pods, those that need attention first; the counts cover every pod and
# each pod's hold ledger (annotation processcontrol.dev/holds) has its own detail. So the object stays small
# at any group size (etcd refuses requests over 1.5 MiB).
MAX_LISTED_PODS = 50
# A pod's status lists at most this many processes, and probes of this many characters (the operator cuts longer).
MAX_POD_PROCESSES = 256
MAX_PROBE_CONFLICTS = 32
MAX_PROBE_DESCRIPTION = 256
# A preview lists the same number of pods, each process as one `job/process` string (not an object): it sits in
# the status beside `pods`, and both together stay far inside etcd's limit.
MAX_PREVIEW_PODS = MAX_LISTED_PODS
MAX_MISSING = 2 * MAX_NAMES


class ProbePolicy(StrEnum):
    """What to do in a pod where a stopped process would fail its container's liveness or startup probe."""

    WARN = "Warn"
    SKIP = "Skip"
    REFUSE = "Refuse"


class _Model(BaseModel):
    """Camel-case on the wire, snake_case in Python, unknown fields rejected."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class LabelSelectorRequirement(_Model):
    """A label selector requirement: a key, an operator and values (metav1.LabelSelectorRequirement)."""

    key: LabelKey = Field(description="The label key that the selector applies to.")
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"] = Field(
        description="How the key relates to the values: In, NotIn, Exists or DoesNotExist."
    )
    values: list[LabelValue] = Field(
        default_factory=list,
        max_length=64,
        description="The values for In and NotIn; must be empty for Exists and DoesNotExist.",
    )

    @model_validator(mode="after")
    def _values_match_operator(self) -> LabelSelectorRequirement:
        if (self.operator in ("In", "NotIn")) != bool(self.values):
            raise ValueError("values must be non-empty for In and NotIn and empty for Exists and DoesNotExist")
        return self


class LabelSelector(_Model):
    """A label query over pods (metav1.LabelSelector); all requirements are ANDed."""

    match_labels: dict[LabelKey, LabelValue] = Field(
        default_factory=dict,
        max_length=32,
        description="Labels the pods must carry, each with exactly this value.",
    )
    match_expressions: list[LabelSelectorRequirement] = Field(
        default_factory=list,
        max_length=16,
        description="Label selector requirements the pods must satisfy.",
    )

    @model_validator(mode="after")
    def _not_empty(self) -> LabelSelector:
        if not self.match_labels and not self.match_expressions:
            raise ValueError("selector must have matchLabels or matchExpressions: an empty selector matches every pod")
        return self


class Stage(_Model):
    """One stage of a staged suspension: the processes it stops, by job and process name (both filters apply)."""

    jobs: list[BoshName] = Field(
        default_factory=list,
        max_length=MAX_NAMES,
        description="The processes of these BOSH jobs. Empty means every job (processes must then be set).",
    )
    processes: list[BoshName] = Field(
        default_factory=list,
        max_length=MAX_NAMES,
        description="These BOSH processes. Empty means every process (jobs must then be set).",
    )

    @model_validator(mode="after")
    def _selects_something(self) -> Stage:
        if not self.jobs and not self.processes:
            raise ValueError("a stage needs jobs or processes: an empty one would select every process")
        return self

    def selects(self, job: str, process: str) -> bool:
        """Whether the stage's filters cover this socket."""
        return (not self.jobs or job in self.jobs) and (not self.processes or process in self.processes)


# A Kubernetes username as the API server authenticated it (`system:serviceaccount:NS:NAME`, an OIDC subject, a
# certificate's CN): Kubernetes bounds none of these, so the bound is ours, generous for any real identity.
Username = Annotated[str, StringConstraints(min_length=1, max_length=512)]


class RequestedBy(_Model):
    """Who asked for the suspension, as the API server saw the request (the admission policy
    processcontrol-requester binds it to `request.userInfo`)."""

    username: Username = Field(
        description=(
            "The user who created the suspension (or suspended it again), as the API server authenticated the "
            "request: the admission policy refuses any other name, unless via names a GitOps account allowed "
            "to record someone else."
        )
    )
    via: Username | None = Field(
        default=None,
        description=(
            "Set only when the object was written by an account that records someone else (a GitOps "
            "controller listed in the admission policy's delegates): that account's username."
        ),
    )


class ProcessSuspensionSpec(_Model):
    """What to suspend: the target pods, optionally narrowed to jobs and processes, and for how long."""

    instance_group: LabelValue | None = Field(
        default=None,
        description=(
            "The kubecf instance group to suspend: pods labelled "
            f"{INSTANCE_GROUP_LABEL}=<instanceGroup>. Exactly one of instanceGroup and selector is required."
        ),
    )
    selector: LabelSelector | None = Field(
        default=None,
        description="A label selector for the pods to suspend. Exactly one of instanceGroup and selector is required.",
    )
    jobs: list[BoshName] = Field(
        default_factory=list,
        max_length=MAX_NAMES,
        description="Only the processes of these BOSH jobs. Empty means every job.",
    )
    processes: list[BoshName] = Field(
        default_factory=list,
        max_length=MAX_NAMES,
        description="Only these BOSH processes. Empty means every process.",
    )
    stages: list[Stage] = Field(
        default_factory=list,
        max_length=MAX_STAGES,
        description=(
            "Stop in this order, at least two stages: stage k is stopped in any pod only once stage k-1 is "
            "verified stopped in every target pod; resuming starts them in reverse, each verified running before "
            "the next (a pod that failed does not hold the others up). A process belongs to the first stage that "
            "selects it; processes no stage selects are left alone. Not with jobs or processes."
        ),
    )
    suspend: bool = Field(
        default=True,
        description="true keeps the processes stopped; false resumes them and keeps this object.",
    )
    duration: Annotated[str, StringConstraints(pattern=DURATION_PATTERN, max_length=32)] | None = Field(
        default=None,
        description=(
            "Resume automatically this long after the suspension first took effect, e.g. 90m or 2h. "
            "Empty means until suspend is false or the object is deleted."
        ),
    )
    reason: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None,
        description="Why the processes are suspended; shown by kubectl get and in events.",
    )
    container: DnsLabel | None = Field(
        default=None,
        description=(
            "The container to exec into. Default: the first container mounting /var/vcap/data, "
            "else the first container."
        ),
    )

    probes: ProbePolicy = Field(
        default=ProbePolicy.WARN,
        description=(
            "What to do where a targeted process runs in a container with a liveness or startup probe, which fails "
            "once the process stops and makes the kubelet restart the container. Warn: stop it anyway, report the "
            "conflict and count the restarts (re-stopped each time). Skip: leave those processes running and say "
            "so. Refuse: stop nothing in such a pod until probes is changed (only Refuse may be changed)."
        ),
    )

    preview: bool = Field(
        default=False,
        description=(
            "true: only look. The operator execs a STATUS look into each target pod (never a STOP, never a ledger "
            "write), writes in status.preview what the suspension would stop, skip and why, and holds nothing: a "
            "suspension patched to preview gives back what it holds. Set it to false to suspend for real."
        ),
    )

    requested_by: RequestedBy | None = Field(
        default=None,
        description=(
            "Who asked, as the API server saw it; the processcontrol CLI records it. It cannot be changed, except "
            "by an update that suspends again (suspend from false to true, or preview from true to false), and then "
            "only to the one who does."
        ),
    )

    @model_validator(mode="after")
    def _exactly_one_target(self) -> ProcessSuspensionSpec:
        if (self.instance_group is None) == (self.selector is None):
            raise ValueError("exactly one of instanceGroup and selector must be set")
        return self

    @model_validator(mode="after")
    def _stages_alone(self) -> ProcessSuspensionSpec:
        if self.stages and (self.jobs or self.processes):
            raise ValueError("stages and jobs/processes are exclusive: put the filters into the stages")
        if len(self.stages) == 1:
            raise ValueError("stages needs at least two stages: one is jobs/processes")
        return self

    @property
    def stage_count(self) -> int:
        """How many stages it stops in order: 1 when it has none (its jobs/processes are the one stage)."""
        return max(1, len(self.stages))

    def stage_of(self, job: str, process: str) -> int | None:
        """The index of the stage a socket belongs to (the first that selects it); None: not targeted. Without
        stages every socket is in stage 0: the in-pod script has applied jobs/processes already."""
        if not self.stages:
            return 0
        return next((index for index, stage in enumerate(self.stages) if stage.selects(job, process)), None)

    @field_validator("duration")
    @classmethod
    def _positive_duration(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value).total_seconds() <= 0:
            raise ValueError("duration must be positive, e.g. 90m or 2h")
        return value


class ConditionStatus(StrEnum):
    """The status of a condition."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ProcessState(StrEnum):
    """The observed state of one containerrun process."""

    RUNNING = "Running"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    STALE = "Stale"
    UNKNOWN = "Unknown"


class PodState(StrEnum):
    """The state of one target pod."""

    SUSPENDING = "Suspending"
    SUSPENDED = "Suspended"
    RESUMING = "Resuming"
    RESUMED = "Resumed"
    FAILED = "Failed"
    GONE = "Gone"


class _StatusModel(BaseModel):
    """Status is written by the operator and read back leniently, so unknown fields are kept out quietly."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Condition(_StatusModel):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: Annotated[str, StringConstraints(max_length=316)] = Field(
        description="Ready, Suspended, Reconciling, Stalled, ProbeConflict or Previewed."
    )
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: Annotated[str, StringConstraints(max_length=1024)] = Field(
        default="", description="A CamelCase word for the last transition."
    )
    message: Annotated[str, StringConstraints(max_length=32768)] = Field(
        default="", description="A human-readable explanation."
    )
    last_transition_time: Timestamp | None = Field(default=None, description="When the status last changed.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this condition was computed for."
    )


class ProcessStatus(_StatusModel):
    """The state of one containerrun socket in a pod."""

    job: Annotated[str, StringConstraints(max_length=128)] = Field(description="The BOSH job name.")
    process: Annotated[str, StringConstraints(max_length=128)] = Field(description="The BOSH process name.")
    state: ProcessState = Field(description="Running, Stopping, Stopped, Stale or Unknown.")
    pid: int | None = Field(default=None, ge=0, description="The pid of the running process, if any.")


class PodStatus(_StatusModel):
    """The state of one target pod and its processes."""

    name: Annotated[str, StringConstraints(max_length=253)] = Field(description="The pod name.")
    uid: Annotated[str, StringConstraints(max_length=64)] = Field(
        default="", description="The pod UID; a new UID is a new pod."
    )
    state: PodState = Field(description="Suspending, Suspended, Resuming, Resumed, Failed or Gone.")
    message: Annotated[str, StringConstraints(max_length=4096)] = Field(
        default="", description="Why the pod is in this state."
    )
    last_transition_time: Timestamp | None = Field(default=None, description="When the state last changed.")
    processes: list[ProcessStatus] = Field(
        default_factory=list, max_length=MAX_POD_PROCESSES, description="The containerrun processes found in the pod."
    )
    probe_conflicts: list[Annotated[str, StringConstraints(max_length=MAX_PROBE_DESCRIPTION)]] = Field(
        default_factory=list,
        max_length=MAX_PROBE_CONFLICTS,
        description="Liveness and startup probes of targeted containers, which fail while their process is stopped.",
    )
    restarts: int = Field(
        default=0, ge=0, description="Restarts of the targeted processes' containers since the suspension took hold."
    )


class PreviewPod(_StatusModel):
    """What a suspension would do in one pod, from a look that sent nothing."""

    name: Annotated[str, StringConstraints(max_length=253)] = Field(description="The pod name.")
    uid: Annotated[str, StringConstraints(max_length=64)] = Field(default="", description="The pod UID.")
    container: Annotated[str, StringConstraints(max_length=63)] | None = Field(
        default=None, description="The container the operator would exec into."
    )
    reason: Annotated[str, StringConstraints(max_length=64)] = Field(
        default="",
        description=(
            "Empty when the suspension can act here; else why it cannot, or not all of it: ExecForbidden (RBAC), "
            "PodNotRunning, NoSockets, NoSenderTool, NoContainer, ProbeConflict (probes: Refuse), ExecTimeout, ..."
        ),
    )
    message: Annotated[str, StringConstraints(max_length=4096)] = Field(
        default="", description="What was found, in words."
    )
    stop: list[Annotated[str, StringConstraints(max_length=2 * BOSH_NAME_MAX + 1)]] = Field(
        default_factory=list,
        max_length=MAX_POD_PROCESSES,
        description="job/process of each running process it would stop.",
    )
    keep_stopped: list[Annotated[str, StringConstraints(max_length=2 * BOSH_NAME_MAX + 1)]] = Field(
        default_factory=list,
        max_length=MAX_POD_PROCESSES,
        description="Processes stopped already (not by a suspension): it would hold them, and not start them after.",
    )
    skip: list[Annotated[str, StringConstraints(max_length=2 * BOSH_NAME_MAX + 1)]] = Field(
        default_factory=list,
        max_length=MAX_POD_PROCESSES,
        description=(
            "Processes it would leave running: probes: Skip and a probed container, or probes: Refuse (then nothing "
            "in the pod is stopped); probeConflicts names the probes."
        ),
    )
    stale: list[Annotated[str, StringConstraints(max_length=2 * BOSH_NAME_MAX + 1)]] = Field(
        default_factory=list,
        max_length=MAX_POD_PROCESSES,
        description="Sockets nobody answers on (containerrun is gone): nothing there to stop.",
    )
    missing: list[Annotated[str, StringConstraints(max_length=BOSH_NAME_MAX + 8)]] = Field(
        default_factory=list,
        max_length=MAX_MISSING,
        description="Jobs and processes the spec names that no socket of this pod has: `job J`, `process P`.",
    )
    probe_conflicts: list[Annotated[str, StringConstraints(max_length=MAX_PROBE_DESCRIPTION)]] = Field(
        default_factory=list,
        max_length=MAX_PROBE_CONFLICTS,
        description="Liveness and startup probes that a stopped process would fail.",
    )


class PreviewStatus(_StatusModel):
    """What a preview found: counts over every matching pod, and a bounded list of them."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation these looks were made for."
    )
    looked_at: Timestamp | None = Field(default=None, description="When the last look of this preview ended.")
    targets: int = Field(default=0, ge=0, description="Pods the suspension targets (running or not).")
    looked: int = Field(default=0, ge=0, description="Of these, the pods looked at for this generation.")
    would_stop: int = Field(default=0, ge=0, description="Processes it would stop, in every pod.")
    would_skip: int = Field(default=0, ge=0, description="Processes it would leave running for their probes.")
    probe_conflicts: int = Field(default=0, ge=0, description="Pods with a probe that a stopped process fails.")
    cannot: int = Field(default=0, ge=0, description="Pods where it cannot act (see cannotByReason).")
    cannot_by_reason: dict[Annotated[str, StringConstraints(max_length=64)], int] = Field(
        default_factory=dict, max_length=32, description="Those pods by reason, e.g. NoSockets: 1."
    )
    pods: list[PreviewPod] = Field(
        default_factory=list,
        max_length=MAX_PREVIEW_PODS,
        description=f"Up to {MAX_PREVIEW_PODS} pods, those it cannot act in and those with probe conflicts first.",
    )


class PodCounts(_StatusModel):
    """How many target pods are in which state; these cover every pod, the list only some."""

    targets: int = Field(default=0, ge=0, description="Pods the suspension currently targets.")
    done: int = Field(default=0, ge=0, description="Target pods verified in the requested state.")
    in_progress: int = Field(default=0, ge=0, description="Target pods still being suspended or resumed.")
    failed: int = Field(default=0, ge=0, description="Target pods that failed; see failedByReason.")
    failed_by_reason: dict[Annotated[str, StringConstraints(max_length=64)], int] = Field(
        default_factory=dict, max_length=32, description="Failed pods by reason, e.g. ExecForbidden: 2."
    )
    releasing: int = Field(default=0, ge=0, description="Pods no longer targeted whose processes are being given back.")
    probe_conflicts: int = Field(
        default=0, ge=0, description="Target pods with a liveness or startup probe that a stopped process fails."
    )
    restart_loops: int = Field(
        default=0, ge=0, description="Target pods whose targeted containers keep restarting during the suspension."
    )


class StagePhase(StrEnum):
    """Where a staged suspension's current stage stands."""

    STOPPING = "Stopping"
    STOPPED = "Stopped"
    STARTING = "Starting"
    STARTED = "Started"


class StageStatus(_StatusModel):
    """The stage a staged suspension is at, over every target pod."""

    index: int = Field(ge=1, le=MAX_STAGES, description="The current stage, from 1.")
    of: int = Field(ge=2, le=MAX_STAGES, description="How many stages there are.")
    phase: StagePhase = Field(
        description=(
            "Stopping: the current stage is being stopped (the earlier ones are verified stopped in every target "
            "pod); Stopped: every stage is. Starting: the current stage is being started (the later ones are "
            "verified running in every pod that did not fail); Started: every stage is."
        )
    )
    summary: Annotated[str, StringConstraints(max_length=32)] = Field(
        default="", description="The same in a few words, for kubectl get: 2/3 Stopping."
    )


class ProcessSuspensionStatus(_StatusModel):
    """The observed state of a ProcessSuspension, written by the operator."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation the operator last acted on."
    )
    conditions: list[Condition] = Field(
        default_factory=list, max_length=16, description="Ready, Suspended, Reconciling and Stalled."
    )
    pods: list[PodStatus] = Field(
        default_factory=list,
        max_length=MAX_LISTED_PODS,
        description=f"Up to {MAX_LISTED_PODS} pods, those that need attention first (failed, in progress, released).",
    )
    counts: PodCounts | None = Field(default=None, description="Pods by state; covers every target pod.")
    summary: Annotated[str, StringConstraints(max_length=32)] | None = Field(
        default=None, description="Pods in the requested state out of the target pods, e.g. 3/3."
    )
    suspended_at: Timestamp | None = Field(
        default=None, description="When the suspension first took effect on a pod; duration counts from here."
    )
    expires_at: Timestamp | None = Field(
        default=None, description="When the suspension ends by itself (suspendedAt + duration)."
    )
    stage: StageStatus | None = Field(default=None, description="Of a suspension with stages: the current stage.")
    preview: PreviewStatus | None = Field(
        default=None, description="Only while spec.preview is true: what the suspension would do, pod by pod."
    )


class ProcessSuspension(_Model):
    """A whole ProcessSuspension object, as written in Git or read from the API."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    api_version: Literal["processcontrol.dev/v1alpha1"] = "processcontrol.dev/v1alpha1"
    kind: Literal["ProcessSuspension"] = "ProcessSuspension"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ProcessSuspensionSpec
    status: ProcessSuspensionStatus | None = None
