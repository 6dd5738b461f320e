"""Operator settings, from PROCESSCONTROL_* environment variables; documented in docs/configuration.md."""

from __future__ import annotations

from ipaddress import ip_address
from typing import Annotated, Any

from pydantic import Field, StringConstraints, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# A namespace name: a DNS-1123 label.
Namespace = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]


class ProcessControlSettings(BaseSettings):
    """Every knob of the operator, each with its environment variable and default."""

    model_config = SettingsConfigDict(env_prefix="PROCESSCONTROL_", extra="ignore")

    exec_concurrency: int = Field(default=32, ge=1, le=1024, description="Execs into pods running at once.")
    exec_concurrency_per_namespace: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="Execs into the pods of one namespace running at once, under exec_concurrency (0: no limit of "
        "its own): one namespace's large suspension or hanging pods then leave exec slots to the others.",
    )
    exec_timeout_s: float = Field(default=30.0, gt=0, description="Deadline of one exec; a hanging pod is cut off.")
    exec_retries: int = Field(default=3, ge=0, le=20, description="Retries of a failed exec (transient errors only).")
    exec_backoff_s: float = Field(default=0.5, gt=0, description="First retry delay; doubles on each retry.")
    verify_timeout_s: float = Field(
        default=60.0,
        gt=0,
        description="How long a process may take to stop or start before the pod is Failed "
        "(longer than containerrun's 20 s stop timeout).",
    )
    in_pod_wait_s: float = Field(
        default=5.0,
        ge=0,
        description="How long one STOP or START exec waits inside the pod for the processes to get there before it "
        "reports: most pods are verified by that one exec; the rest by status probes until verify_timeout_s.",
    )
    go_ahead_window_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="An exec acts only on a go-ahead it receives this long after it started; later, or without one, "
        "it sends nothing (a timed-out or orphaned exec never acts late).",
    )
    verify_interval_s: float = Field(default=0.25, gt=0, description="First delay between verification polls.")
    reverify_interval_s: float = Field(
        default=300.0,
        gt=0,
        description="Re-check suspended pods this often (a STATUS probe, it sends nothing) to catch a START sent "
        "by hand; container restarts and new pods are seen from the pod watch at once.",
    )
    status_interval_s: float = Field(default=1.0, gt=0, description="Progress is written to status at most this often.")
    failure_backoff_s: float = Field(
        default=10.0, gt=0, description="Longest wait before retrying a failed pod (retries start at 0.25 s, doubling)."
    )
    restart_loop_restarts: int = Field(
        default=3,
        ge=1,
        description="A targeted container that restarts this many times within restart_loop_window_s while "
        "suspended is in a restart loop (RestartLoop): a probe it fails, most likely.",
    )
    restart_loop_window_s: float = Field(default=600.0, gt=0, description="The window restart_loop_restarts counts in.")
    probe_notice_timeout_s: float = Field(
        default=10.0,
        ge=0,
        description="With probes: Warn, how long the first STOP into a pod with a probe conflict waits for the "
        "conflict to be in the status, so that it is shown before anything fails.",
    )
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="Prometheus metrics port; 0 disables.")
    metrics_address: str = Field(
        default="0.0.0.0",  # noqa: S104 (in the pod, the scraper connects to the pod's IP)
        description="The address the metrics endpoint listens on: all of the pod's (the scraper connects to its "
        "IP); 127.0.0.1 where the operator runs on a host (make demo, the e2e tests).",
    )
    finalizer: str = Field(default="processcontrol.dev/resume", description="Finalizer that resumes on deletion.")
    # NoDecode: the environment variable is a comma-separated list (kube-system,kube-public), not JSON.
    excluded_namespaces: Annotated[tuple[Namespace, ...], NoDecode] = Field(
        default=("kube-system",),
        description="Namespaces whose suspensions and pods the operator ignores (comma-separated; empty: none).",
    )

    # Leader election (two replicas, one actor): a coordination.k8s.io/v1 Lease, with controller-runtime's
    # defaults. docs/architecture.md says why these numbers keep a paused former leader from acting.
    lease_name: str = Field(
        default="processcontrol",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
        description="The Lease the replicas elect their leader with; two installs in one namespace need two names.",
    )
    lease_namespace: str = Field(
        default="",
        pattern=r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?)?$",
        max_length=63,
        description="Namespace of the Lease; empty: the operator's own (its ServiceAccount's, in a pod), else "
        "processcontrol-system.",
    )
    leader_identity: str = Field(
        default="",
        max_length=128,
        description="This replica's name in the Lease; empty: the host name, which in a pod is the pod's name (a "
        "restarted container of the same pod takes its own Lease back at once).",
    )
    lease_duration_s: float = Field(
        default=15.0,
        ge=1,
        le=300,
        description="A standby takes the Lease over when it has not changed for this long.",
    )
    renew_deadline_s: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="A leader that could not renew its Lease for this long stops acting at once (it exits).",
    )
    retry_period_s: float = Field(
        default=2.0,
        gt=0,
        le=60,
        description="How often the leader renews its Lease and a standby looks at it.",
    )

    @model_validator(mode="after")
    def _election_timing(self) -> ProcessControlSettings:
        """A leader must give up before a standby may take over, and renew more than once before that."""
        if not self.retry_period_s < self.renew_deadline_s < self.lease_duration_s:
            raise ValueError(
                "leader election needs retry_period_s < renew_deadline_s < lease_duration_s, got "
                f"{self.retry_period_s:g} < {self.renew_deadline_s:g} < {self.lease_duration_s:g}"
            )
        return self

    @field_validator("metrics_address")
    @classmethod
    def _an_address(cls, value: str) -> str:
        """An IP address (a name would be resolved at start-up, and could resolve elsewhere later)."""
        return str(ip_address(value))

    @field_validator("excluded_namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: Any) -> Any:
        """`a,b` (the environment's form) as a tuple; a list or tuple (the model's own form) as it is."""
        if isinstance(value, str):
            return tuple(name.strip() for name in value.split(",") if name.strip())
        return value
