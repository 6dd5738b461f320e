"""The reasons the operator writes: in conditions, in `status.counts.failedByReason`, in events and metric labels.

StrEnums, so each member is its CamelCase string on the wire. Standard library only: the CLI imports these too.
"""

from __future__ import annotations

from enum import StrEnum


class FailureReason(StrEnum):
    """Why a pod cannot be brought to the requested state (a pod's failure, a Stalled reason, an event)."""

    EXEC_FORBIDDEN = "ExecForbidden"  # RBAC lacks `create` on `pods/exec`
    EXEC_TIMEOUT = "ExecTimeout"
    EXEC_FAILED = "ExecFailed"
    POD_GONE = "PodGone"
    SCRIPT_FAILED = "ScriptFailed"  # the in-pod script printed no report
    NO_SENDER_TOOL = "NoSenderTool"  # the container has no tool to send a datagram with
    NO_SOCKETS = "NoSockets"  # no containerrun socket (matching the filters), or no containerrun data directory
    NO_CONTAINER = "NoContainer"
    LEDGER_UNREADABLE = "LedgerUnreadable"
    LEDGER_TOO_NEW = "LedgerTooNew"  # written by a newer operator: nothing is done here until one runs
    LEDGER_WRITE_FAILED = "LedgerWriteFailed"
    VERIFY_TIMEOUT = "VerifyTimeout"  # the processes did not get to the requested state in time
    START_UNDELIVERED = "StartUndelivered"  # a START could not be sent: it is sent again until it is
    POD_FAILED = "PodFailed"  # a failure recorded without a reason
    PROBE_CONFLICT = "ProbeConflict"  # probes: Refuse, and a stopped process would fail its container's probe
    INVALID_SOCKET_NAMES = "InvalidSocketNames"  # sockets whose job or process is no BOSH name: left alone
    POD_NOT_RUNNING = "PodNotRunning"  # a preview's pod that matches but is not Running (or is being deleted)


class Reason(StrEnum):
    """The reasons of the object's conditions and events, besides a pod's `FailureReason`."""

    # What the suspension asks for, and why.
    SUSPEND_REQUESTED = "SuspendRequested"
    RESUME_REQUESTED = "ResumeRequested"
    EXPIRED = "Expired"
    PREVIEW_REQUESTED = "PreviewRequested"  # spec.preview: look only, hold nothing
    # Where it stands.
    SUSPENDING = "Suspending"
    RESUMING = "Resuming"
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    PREVIEWING = "Previewing"
    PREVIEWED = "Previewed"
    DONE = "Done"
    PROGRESSING = "Progressing"
    NO_MATCHING_PODS = "NoMatchingPods"
    INVALID_SPEC = "InvalidSpec"
    # The ProbeConflict condition (and RestartLoop for Ready and Stalled too).
    NO_CONFLICT = "NoConflict"
    PROBES_WILL_FAIL = "ProbesWillFail"  # probes: Warn
    PROBED_PROCESSES_SKIPPED = "ProbedProcessesSkipped"  # probes: Skip
    REFUSED = "Refused"  # probes: Refuse
    RESTART_LOOP = "RestartLoop"
    # Events only.
    PROBE_CONFLICT = "ProbeConflict"
    RELEASED = "Released"
    RESUSPENDED = "Resuspended"
    ORPHAN_RELEASED = "OrphanReleased"
    RESUME_FAILED = "ResumeFailed"
    LEADER_ELECTED = "LeaderElected"  # on the Lease: a replica took it and acts from now on
    LEDGER_RESTORED = "LedgerRestored"  # a pod's ledger went missing while this operator held processes there
    # Shown by the CLI while the operator has not answered the generation it wrote.
    NOT_OBSERVED = "NotObserved"
