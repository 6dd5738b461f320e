"""Exceptions raised by processcontrol: one flat module, as kr8s has it."""

from __future__ import annotations

from processcontrol.api.reasons import FailureReason


class ProcessControlError(Exception):
    """Base class of every processcontrol error."""


class InvalidArguments(ProcessControlError):
    """The command-line arguments do not make a valid request; nothing was sent."""


class ExecError(ProcessControlError):
    """An exec into a pod did not produce a result."""


class ExecForbidden(ExecError):
    """The API server refused the exec: RBAC lacks `create` on `pods/exec`."""


class ExecTimeout(ExecError):
    """The exec did not finish within its timeout."""


class PodGone(ExecError):
    """The pod (or its container) no longer exists."""


class ExecFailed(ExecError):
    """The exec failed for another reason; the message carries the detail."""


class ScriptOutputError(ProcessControlError):
    """The in-pod script printed nothing that could be parsed."""


class ApiError(ProcessControlError):
    """The Kubernetes API refused or failed a request."""


class Forbidden(ApiError):
    """RBAC does not allow the request."""


class NotFound(ApiError):
    """The object does not exist."""


class CrdNotInstalled(NotFound):
    """The API server does not serve processsuspensions.processcontrol.dev."""


class Conflict(ApiError):
    """The object changed since it was read (optimistic concurrency): read it again and retry."""


class LedgerError(ProcessControlError):
    """A pod's hold ledger annotation cannot be read; nothing is done to that pod until it is fixed."""


class LedgerTooNew(LedgerError):
    """A pod's hold ledger has a newer format than this operator knows; nothing is done to that pod."""


class PodFailure(ProcessControlError):
    """A pod cannot be brought to the requested state: a reason (CamelCase, for status and events) and a message."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
