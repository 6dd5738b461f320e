"""Random operations and faults against the real local control plane, with the promise checked after every step.

A seeded generator, not hypothesis's RuleBasedStateMachine, and a delta-debugging shrinker of its own, because
each step here takes seconds against a live cluster and its outcome depends on timing:

- hypothesis runs many examples per test and replays a failing one dozens of times while it shrinks; at 5-30 s a
  step that is hours for one failure, with no way to bound it in time;
- hypothesis wants a test that fails the same way every time and calls it Flaky otherwise; a late STOP that lands
  in one run may not in the next, and such a failure is exactly what this is for;
- a seed and a plain list of steps (JSON) is the whole reproduction: `generate` is a pure function of the seed and
  the model, so the same seed gives the same steps on any machine, and a step list can be replayed as it is.

Shrinking (`ddmin`) is Zeller's delta debugging over the step list, bounded in time: each candidate is replayed in
a fresh namespace, steps that make no sense any more (patching a suspension that the shorter list never created)
are dropped by the model, and a candidate counts when it breaks the same clause again; then each remaining fault
is left out in turn (`simplify`).

The world of one episode (`WORLD`): kubecf-like pods of two instance groups with real containerrun processes, one
of them in a container with a liveness probe (so that `probes` matters), and up to three of four suspensions at
once. The steps (`ACTIONS`) are a user's and the cluster's: suspensions created (instance group or selector,
job/process filters, probe policy, duration of seconds, `suspend`), patched (`suspend`, `duration`, `reason`, and
`probes` from Refuse: the API server keeps the rest), deleted, renamed (the new one applied, then the old one
pruned, as a GitOps sync does), re-created under a name used before; pods
relabelled, created, deleted and re-created under the same name; containers restarted; processes stopped and
started by hand where nothing holds them; waiting. A step may carry a fault
(`FAULTS`), which lands a moment after the step's request, while the operator acts on it, or, for one that lasts,
begins a moment before it, so that the request goes out during the fault: the operator SIGKILLed
and started again, kube-apiserver restarted, a containerrun frozen (SIGSTOP) and thawed, every exec into a pod
slowed past the exec timeout, the operator's exec grant revoked for a while, a container restarted. Every fault
ends within its step; after the step the checker (harness.promise) reads the truth and waits up to the repair time.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import fakepods
from harness.base import ControlPlaneError, kubectl, state_dir
from harness.cluster import Cluster, slow_shell
from harness.operator import HarnessError, OperatorProcess
from harness.promise import Base, Checker, Hints, HostProcesses, Limits, Violation, covers, describe, selects
from harness.reliability import log_offset, restart_component, revoked_exec
from processcontrol.api import INSTANCE_GROUP_LABEL

# --- the world -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """An instance group: the pods it may have, those it starts with, its processes, the probed ones."""

    name: str
    ordinals: tuple[int, ...]
    initial: tuple[int, ...]
    processes: tuple[str, ...]
    probed: tuple[str, ...] = ()


WORLD = (
    Group("db", (0, 1, 2), (0, 1), ("pxc-mysql/mysql", "pxc-mysql/galera-agent", "log-cache/forwarder")),
    Group("api", (0, 1), (0,), ("cloud_controller_ng/ccng", "log-cache/forwarder"), ("cloud_controller_ng/ccng",)),
)
SUSPENSIONS = ("s0", "s1", "s2", "s3")
MAX_SUSPENSIONS = 3
TIER = "tier"  # a label of our own, for selectors
TARGETS: tuple[dict[str, Any], ...] = (
    {"instanceGroup": "db"},
    {"instanceGroup": "api"},
    {"selector": {"matchLabels": {TIER: "a"}}},
    {"selector": {"matchExpressions": [{"key": TIER, "operator": "In", "values": ["a", "b"]}]}},
    {"selector": {"matchLabels": {fakepods.LABEL_DEPLOYMENT: fakepods.DEPLOYMENT}}},
    {"selector": {"matchExpressions": [{"key": INSTANCE_GROUP_LABEL, "operator": "NotIn", "values": ["db"]}]}},
)
JOB_FILTERS: tuple[list[str], ...] = (["pxc-mysql"], ["log-cache"], ["cloud_controller_ng", "pxc-mysql"])
PROCESS_FILTERS: tuple[list[str], ...] = (["mysql"], ["forwarder"], ["ccng", "galera-agent"])
DURATIONS = (None, None, None, "6s", "15s", "40s")
PROBES = (None, None, "Skip", "Refuse")  # None: the default, Warn


def group_of(pod: str) -> Group:
    """The group a pod name belongs to (`db-1` -> db)."""
    name = pod.rpartition("-")[0]
    return next(g for g in WORLD if g.name == name)


def processes_of(pod: str) -> tuple[str, ...]:
    """The job/process names of a pod."""
    return group_of(pod).processes


def default_labels(pod: str) -> dict[str, str]:
    """The labels fakepods gives a new pod of this name."""
    group, _, ordinal = pod.rpartition("-")
    manifest = fakepods.build_pod(group, "", int(ordinal), [])
    labels: dict[str, str] = manifest["metadata"]["labels"]  # type: ignore[index]
    return dict(labels)


def _pair(job_process: str) -> tuple[str, str]:
    job, _, process = job_process.partition("/")
    return job, process


# --- steps ---------------------------------------------------------------------------------------------------------


@dataclass
class Step:
    """One action, and the fault that lands while the operator acts on it (if any). Plain data: JSON both ways.

    `settle: False` sends the next request at once, as a person typing fast or a GitOps sync applying several
    objects does: only what no repair undoes is checked after such a step (a false Ready, a held process started),
    the rest after the next step that settles."""

    action: str
    args: dict[str, Any]
    fault: dict[str, Any] | None = None
    settle: bool = True

    def as_json(self) -> dict[str, Any]:
        """The step as JSON data."""
        data: dict[str, Any] = {"action": self.action, "args": self.args}
        if self.fault:
            data["fault"] = self.fault
        if not self.settle:
            data["settle"] = False
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Step:
        """A step from as_json()'s data."""
        return cls(str(data["action"]), dict(data.get("args") or {}), data.get("fault"), bool(data.get("settle", True)))

    def __str__(self) -> str:
        text = f"{self.action} {json.dumps(self.args, separators=(',', ':'), sort_keys=True)}"
        if self.fault:
            fault = {k: v for k, v in self.fault.items() if k != "kind"}
            text += f" + {self.fault['kind']} {json.dumps(fault, separators=(',', ':'), sort_keys=True)}"
        return text + ("" if self.settle else " (no wait)")


# --- the model -----------------------------------------------------------------------------------------------------


@dataclass
class Model:
    """What the steps have asked for, without looking at the cluster: the pods and their labels, the suspensions'
    specs, and each process's state before its first hold (`base`, shared with the checker's hints). The steps a
    model allows and what they do to it decide the next steps, so a seed always gives the same list."""

    pods: dict[str, dict[str, str]] = field(default_factory=dict)
    suspensions: dict[str, dict[str, Any]] = field(default_factory=dict)
    base: dict[tuple[str, str, str], Base] = field(default_factory=dict)
    # Suspensions deleted since the last step that settled: their objects may still be there (finalizer).
    deleting: set[str] = field(default_factory=set)
    # The suspension the last step created or changed: people go on with what they just did.
    recent: str | None = None
    # Whether the last step waited to settle.
    settled: bool = True

    @classmethod
    def initial(cls) -> Model:
        """The world an episode starts with: each group's initial pods, nothing suspended."""
        pods = [fakepods.pod_name(g.name, i) for g in WORLD for i in g.initial]
        return cls(pods={pod: default_labels(pod) for pod in pods})

    def absent_pods(self) -> list[str]:
        """Pods the world may have that do not exist now."""
        every = [fakepods.pod_name(g.name, i) for g in WORLD for i in g.ordinals]
        return [pod for pod in every if pod not in self.pods]

    def may_hold(self, pod: str, job_process: str) -> bool:
        """Whether any suspension that asks for `suspend` could hold the process (its filters and target, whatever
        its duration or probe policy): a person's STOP or START there would not be to a free process."""
        pair = _pair(job_process)
        return any(
            spec.get("suspend", True) and selects(spec, self.pods[pod]) and covers(spec, pair)
            for spec in self.suspensions.values()
        )

    def free(self, base: Base) -> list[tuple[str, str]]:
        """(pod, job/process) that no suspension may hold and whose state before any hold is `base` (running:
        running or either)."""
        found = []
        for pod in sorted(self.pods):
            for jp in processes_of(pod):
                now = self.base.get((pod, *_pair(jp)), Base.RUNNING)
                if not self.may_hold(pod, jp) and (now is base or (base is Base.RUNNING and now is Base.EITHER)):
                    found.append((pod, jp))
        return found

    def valid(self, step: Step) -> bool:
        """Whether the step makes sense here (a replayed, shortened list may hold steps that no longer do)."""
        a = step.args
        if step.action == "create-suspension":
            taken = a["name"] in self.suspensions or a["name"] in self.deleting
            return not taken and len(self.suspensions) < MAX_SUSPENSIONS
        if step.action == "patch-suspension":
            spec = self.suspensions.get(a["name"])
            if spec is None:
                return False
            if not set(a["patch"]) <= MUTABLE:
                return False
            return "probes" not in a["patch"] or spec.get("probes") == "Refuse"
        if step.action == "delete-suspension":
            return a["name"] in self.suspensions
        if step.action == "rename-suspension":
            taken = a["to"] in self.suspensions or a["to"] in self.deleting
            return a["name"] in self.suspensions and not taken
        if step.action == "create-pod":
            return a["pod"] in self.absent_pods()
        if step.action in ("delete-pod", "recreate-pod", "relabel-pod"):
            return a["pod"] in self.pods
        if step.action == "restart-container":
            return a["pod"] in self.pods and a["process"] in processes_of(a["pod"])
        if step.action == "stop-by-hand":
            return a["pod"] in self.pods and (a["pod"], a["process"]) in self.free(Base.RUNNING)
        if step.action == "start-by-hand":
            free = self.free(Base.STOPPED)
            return a["pod"] in self.pods and (a["pod"], a["process"]) in free
        return step.action == "wait"

    def fault_valid(self, step: Step) -> bool:
        """Whether the step's fault can land: its pod exists before the request and is still there when the fault
        lands."""
        fault = step.fault
        if fault is None or "pod" not in fault:
            return True
        pod = fault["pod"]
        if pod not in self.pods or ("process" in fault and fault["process"] not in processes_of(pod)):
            return False
        touched = step.args.get("pod") == pod
        if step.action == "delete-pod" and touched:
            return False
        # A frozen containerrun of a pod that the request re-creates would be another process when thawed.
        return not (fault["kind"] == "freeze" and step.action == "recreate-pod" and touched)

    def apply(self, step: Step) -> None:
        """What the step does to the model (the action, then its fault)."""
        a = step.args
        if step.action in ("create-suspension", "patch-suspension"):
            self.recent = a["name"]
        if step.action == "create-suspension":
            self.suspensions[a["name"]] = dict(a["spec"])
        elif step.action == "patch-suspension":
            spec = self.suspensions[a["name"]]
            for key, value in a["patch"].items():
                if value is None:
                    spec.pop(key, None)
                else:
                    spec[key] = value
        elif step.action == "delete-suspension":
            del self.suspensions[a["name"]]
            self.deleting.add(a["name"])
        elif step.action == "rename-suspension":
            self.suspensions[a["to"]] = self.suspensions.pop(a["name"])
            self.deleting.add(a["name"])
            self.recent = a["to"]
        elif step.action == "relabel-pod":
            if a["value"] is None:
                self.pods[a["pod"]].pop(a["key"], None)
            else:
                self.pods[a["pod"]][a["key"]] = a["value"]
        elif step.action in ("create-pod", "recreate-pod"):
            self.pods[a["pod"]] = default_labels(a["pod"])
            self._forget(a["pod"])
        elif step.action == "delete-pod":
            del self.pods[a["pod"]]
            self._forget(a["pod"])
        elif step.action == "restart-container":
            self._restarted(a["pod"], a["process"])
        elif step.action == "stop-by-hand":
            self.base[(a["pod"], *_pair(a["process"]))] = Base.STOPPED
        elif step.action == "start-by-hand":
            self.base[(a["pod"], *_pair(a["process"]))] = Base.RUNNING
        if step.fault and step.fault["kind"] == "restart-container":
            self._restarted(step.fault["pod"], step.fault["process"])
        self.settled = step.settle
        if step.settle:
            # The check after a settled step waits until deleted suspensions are gone (or reports that they hang).
            self.deleting.clear()

    def _forget(self, pod: str) -> None:
        for key in [k for k in self.base if k[0] == pod]:
            del self.base[key]

    def _restarted(self, pod: str, job_process: str) -> None:
        """A restarted containerrun starts its process: running, unless it was stopped by hand before a hold that
        may still be there, when the operator may rightly keep either (see promise.Base)."""
        key = (pod, *_pair(job_process))
        before = self.base.get(key, Base.RUNNING)
        if before is not Base.RUNNING and self.may_hold(pod, job_process):
            self.base[key] = Base.EITHER
        else:
            self.base.pop(key, None)


# --- the generator -------------------------------------------------------------------------------------------------

# Relative weights of the actions (those not valid in a model are left out when drawing).
ACTIONS = {
    "create-suspension": 14,
    "patch-suspension": 16,
    "delete-suspension": 9,
    "rename-suspension": 4,
    "relabel-pod": 7,
    "create-pod": 3,
    "delete-pod": 3,
    "recreate-pod": 4,
    "restart-container": 6,
    "stop-by-hand": 5,
    "start-by-hand": 3,
    "wait": 3,
}
FAULTS = {
    "kill-operator": 5,
    "restart-apiserver": 2,
    "freeze": 5,
    "slow-exec": 6,
    "revoke-exec": 3,
    "restart-container": 4,
}
FAULT_CHANCE = 0.45
# Steps that may be followed by the next request at once (a person's STOP or START waits for a settled cluster:
# only then is it sure that nothing holds the process, not even a release still under way).
QUICK = frozenset(
    {
        "create-suspension",
        "patch-suspension",
        "delete-suspension",
        "rename-suspension",
        "relabel-pod",
        "restart-container",
    }
)
QUICK_CHANCE = 0.45
REVISE_CHANCE = 0.5
EXEC_TIMEOUT_S = 10.0  # the e2e operator settings' (harness.operator.E2E_OPERATOR_ENV): a slow exec outlasts it
# The fenced exec (docs/architecture.md): a go-ahead counts only within the window after the exec began (the
# default go_ahead_window_s), and nothing is sent later than the grace after it, however slow the sender.
GO_AHEAD_WINDOW_S = 5.0
SEND_GRACE_S = 10.0


def _seconds(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 1)


def _spec(rng: random.Random) -> dict[str, Any]:
    spec: dict[str, Any] = dict(rng.choice(TARGETS))
    # Mostly one filter at most: both at once mostly select nothing (which is tried too, now and then).
    filters = rng.choices([(), ("jobs",), ("processes",), ("jobs", "processes")], weights=[5, 3, 3, 1])[0]
    for key in filters:
        chosen = rng.choice([c for c in (JOB_FILTERS if key == "jobs" else PROCESS_FILTERS) if c])
        spec[key] = list(chosen)
    for key, options in (("duration", DURATIONS), ("probes", PROBES)):
        value = rng.choice(options)
        if value is not None:
            spec[key] = value
    if rng.random() < 0.15:
        spec["suspend"] = False
    return spec


# What a patch may change: the API server keeps the target, the filters and the container as they were created
# (delete and re-create to change them), and lets `probes` change only from Refuse.
MUTABLE = frozenset({"suspend", "duration", "reason", "probes"})


def _patch(rng: random.Random, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch that changes one thing (null removes a field)."""
    kinds = ["suspend", "suspend", "suspend", "suspend", "duration", "duration", "reason"]
    if spec.get("probes") == "Refuse":
        kinds += ["probes", "probes"]
    kind = rng.choice(kinds)
    if kind == "suspend":
        return {"suspend": not spec.get("suspend", True)}
    if kind == "duration":
        return {"duration": rng.choice([d for d in DURATIONS if d != spec.get("duration")])}
    if kind == "probes":
        return {"probes": rng.choice(["Warn", "Skip"])}
    return {"reason": f"ticket OPS-{rng.randrange(1000, 9999)}"}


def _action(rng: random.Random, model: Model, action: str) -> Step:
    pods = sorted(model.pods)
    if action == "create-suspension":
        name = rng.choice([n for n in SUSPENSIONS if n not in model.suspensions and n not in model.deleting])
        return Step(action, {"name": name, "spec": _spec(rng)})
    if action == "rename-suspension":
        free = [n for n in SUSPENSIONS if n not in model.suspensions and n not in model.deleting]
        return Step(action, {"name": rng.choice(sorted(model.suspensions)), "to": rng.choice(free)})
    if action in ("patch-suspension", "delete-suspension"):
        name = rng.choice(sorted(model.suspensions))
        # People go on with what they just did, the more so when they did not wait for it to settle.
        if model.recent in model.suspensions and rng.random() < (0.85 if model.deleting or not model.settled else 0.6):
            name = model.recent
        if action == "delete-suspension":
            return Step(action, {"name": name})
        return Step(action, {"name": name, "patch": _patch(rng, model.suspensions[name])})
    if action == "relabel-pod":
        pod = rng.choice(pods)
        if rng.random() < 0.7:
            return Step(action, {"pod": pod, "key": TIER, "value": rng.choice(["a", "b", None])})
        return Step(action, {"pod": pod, "key": INSTANCE_GROUP_LABEL, "value": rng.choice(["db", "api", "spare"])})
    if action == "create-pod":
        return Step(action, {"pod": rng.choice(model.absent_pods())})
    if action in ("delete-pod", "recreate-pod"):
        return Step(action, {"pod": rng.choice(pods)})
    if action == "restart-container":
        pod = rng.choice(pods)
        return Step(action, {"pod": pod, "process": rng.choice(processes_of(pod))})
    if action in ("stop-by-hand", "start-by-hand"):
        pod, jp = rng.choice(model.free(Base.RUNNING if action == "stop-by-hand" else Base.STOPPED))
        return Step(action, {"pod": pod, "process": jp, "tool": rng.choice(["processcontrol", "nc"])})
    return Step("wait", {"seconds": _seconds(rng, 2, 20)})


# Faults that last a while: the request may go out while they last (`lead`) or they may begin after it.
WINDOWS = frozenset({"kill-operator", "freeze", "revoke-exec", "slow-exec"})


def _fault(rng: random.Random, pods: Sequence[str], preferred: Sequence[str]) -> dict[str, Any]:
    """A fault; one that concerns a pod mostly concerns one of `preferred` (those the step's suspension targets:
    a fault where nothing happens finds nothing)."""
    kind = rng.choices(list(FAULTS), weights=list(FAULTS.values()))[0]
    # Mostly within the first second after the request, while the operator acts on it.
    fault: dict[str, Any] = {"kind": kind, "delay": round(rng.choice([0.0, 0.1, 0.3]) + rng.uniform(0, 1.2), 1)}
    if kind in ("freeze", "restart-container", "slow-exec"):
        pod = rng.choice(sorted(preferred) if preferred and rng.random() < 0.7 else sorted(pods))
        fault["pod"] = pod
        if kind != "slow-exec":
            fault["process"] = rng.choice(processes_of(pod))
    if kind == "kill-operator":
        fault["down"] = _seconds(rng, 0, 6)
    elif kind == "restart-apiserver":
        fault["down"] = _seconds(rng, 1, 4)
    elif kind == "freeze":
        # Longer than the verification timeout (20 s in the e2e settings) now and then.
        fault["down"] = rng.choice([3.0, 8.0, 25.0, 45.0])
    elif kind == "slow-exec":
        fault["sleep"] = _seconds(rng, EXEC_TIMEOUT_S + 1, EXEC_TIMEOUT_S + 6)
        # Mostly over before the exec times out: what follows goes out fast, and the slowed exec lands after it.
        fault["down"] = _seconds(rng, 2, EXEC_TIMEOUT_S) if rng.random() < 0.7 else _seconds(rng, 10, 20)
        if rng.random() < 0.5:
            # Only the send, after the go-ahead: it lands around the operator's exec timeout, within the send
            # grace (so it still acts), while the operator already goes on.
            fault["phase"] = "send"
            fault["sleep"] = _seconds(rng, EXEC_TIMEOUT_S - 4, SEND_GRACE_S - 0.5)
    elif kind == "revoke-exec":
        fault["down"] = _seconds(rng, 3, 20)
    # A slowed pod is slowed before the request goes out (else the request's execs would be gone already).
    if kind == "slow-exec" or (kind in WINDOWS and rng.random() < 0.5):
        fault["lead"] = round(rng.uniform(0.2, max(0.4, fault["down"] * 0.7)), 1)
        del fault["delay"]
    return fault


def generate(rng: random.Random, model: Model) -> Step:
    """The next step for this model: an action drawn by weight among those valid, maybe with a fault."""
    while True:
        action = rng.choices(list(ACTIONS), weights=list(ACTIONS.values()))[0]
        if not model.settled and model.recent in model.suspensions and rng.random() < REVISE_CHANCE:
            # Not waiting for a change to settle, people mostly take it back or go further with it (a GitOps sync
            # flipping between two revisions does too).
            action = rng.choice(["patch-suspension", "patch-suspension", "delete-suspension", "rename-suspension"])
        free_names = [n for n in SUSPENSIONS if n not in model.suspensions and n not in model.deleting]
        if action == "create-suspension" and (len(model.suspensions) >= MAX_SUSPENSIONS or not free_names):
            continue
        if action in ("patch-suspension", "delete-suspension") and not model.suspensions:
            continue
        if action == "rename-suspension" and not (model.suspensions and free_names):
            continue
        if action in ("relabel-pod", "delete-pod", "recreate-pod", "restart-container") and not model.pods:
            continue
        if action == "create-pod" and not model.absent_pods():
            continue
        if action == "stop-by-hand" and not model.free(Base.RUNNING):
            continue
        if action == "start-by-hand" and not model.free(Base.STOPPED):
            continue
        step = _action(rng, model, action)
        step.settle = not (action in QUICK and rng.random() < QUICK_CHANCE)
        if rng.random() < FAULT_CHANCE and model.pods:
            name = step.args.get("name", model.recent)
            spec = model.suspensions.get(name or "") or step.args.get("spec") or {}
            preferred = [pod for pod, labels in sorted(model.pods.items()) if spec and selects(spec, labels)]
            step.fault = _fault(rng, sorted(model.pods), preferred)
            if not model.fault_valid(step):
                step.fault = None
        return step


def generate_steps(seed: int, count: int) -> list[Step]:
    """The first `count` steps of a seed (the model follows the steps, not the cluster)."""
    rng, model, steps = random.Random(seed), Model.initial(), []
    for _ in range(count):
        step = generate(rng, model)
        model.apply(step)
        steps.append(step)
    return steps


# --- running them --------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One episode or replay: the steps run, what broke after the last of them, counts and time."""

    seed: int | None
    steps: list[Step]
    violations: list[Violation]
    seconds: float = 0.0
    skipped: int = 0  # steps of a replayed list that no longer made sense

    def counts(self) -> tuple[Counter[str], Counter[str]]:
        """Steps by action, faults by kind."""
        return Counter(s.action for s in self.steps), Counter(s.fault["kind"] for s in self.steps if s.fault)

    def as_json(self) -> dict[str, Any]:
        """The whole record: enough to replay it (`steps`)."""
        actions, faults = self.counts()
        return {
            "seed": self.seed,
            "steps": [s.as_json() for s in self.steps],
            "stepsByKind": dict(sorted(actions.items())),
            "faultsByKind": dict(sorted(faults.items())),
            "violations": [str(v) for v in self.violations],
            "seconds": round(self.seconds, 1),
        }

    def report(self) -> str:
        """For people: the seed, the counts, and each violation with the sequence that led to it."""
        actions, faults = self.counts()
        lines = [
            f"seed {self.seed}: {len(self.steps)} steps in {self.seconds:.0f}s",
            "  steps by kind: " + ", ".join(f"{k} {v}" for k, v in sorted(actions.items())),
            "  faults by kind: " + (", ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "none"),
        ]
        if self.violations:
            lines.append(f"  violations after step {len(self.steps)}:")
            lines.append(describe(self.violations))
            lines.append("  sequence:")
            lines += [f"   {i:>3}. {s}" for i, s in enumerate(self.steps, 1)]
        else:
            lines.append("  violations: 0")
        return "\n".join(lines)


TRANSIENT = ("connection refused", "ServiceUnavailable", "etcdserver", "timeout", "EOF", "the server is currently")


def _retrying(call: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Run a request, riding out an API server that is coming back (a restart fault just ended)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except ControlPlaneError as error:
            if time.monotonic() > deadline or not any(t in str(error) for t in TRANSIENT):
                raise ControlPlaneError(f"{what}: {error}") from error
            time.sleep(1)


class Runner:
    """Runs steps in one namespace, keeps the model and the checker's hints, and checks after each step."""

    def __init__(self, cluster: Cluster, limits: Limits, work: Path, log: Callable[[str], None] = print) -> None:
        self.cluster = cluster
        self.ns = cluster.namespace
        self.model = Model.initial()
        self.hints = Hints(base=self.model.base)
        self.checker = Checker(self.ns, HostProcesses(), limits, self.hints)
        self.checker.before_read = self._kubelet
        self._log_since = 0  # the operator log's offset when the current step began
        self.work = work
        self.log = log
        self.slowed: list[Path] = []
        self.settled = True
        # Longer than anything an exec may still send (the window plus the grace after it), and than a slowed
        # exec's sleep, with a margin for the process to get there: whatever the last steps' execs do has landed.
        self.quiet_s = GO_AHEAD_WINDOW_S + SEND_GRACE_S + 5

    @property
    def operator(self) -> OperatorProcess:
        return self.cluster.operator

    def setup(self) -> list[Violation]:
        """The world's initial pods; then the check that all runs, as nothing is suspended."""
        for group in WORLD:
            for ordinal in group.initial:
                self._create_pod(fakepods.pod_name(group.name, ordinal))
        self.hints.disturbed = time.time()
        return self.checker.converge()

    def run(self, steps: Sequence[Step], seed: int | None = None) -> Outcome:
        """Each step the model allows, then the check; stop at the first violation."""
        start = time.monotonic()
        done: list[Step] = []
        skipped = 0
        violations = self.setup()
        for step in steps if not violations else []:
            if not self.model.valid(step):
                skipped += 1
                continue
            if not self.model.fault_valid(step):
                step = Step(step.action, step.args)
            violations = self._before(step)
            if violations:
                break  # what the earlier steps left
            violations = self.step(step)
            done.append(step)
            if violations:
                break
        return Outcome(seed, done, violations or self._last(), time.monotonic() - start, skipped)

    def episode(self, seed: int, count: int) -> Outcome:
        """`count` generated steps of a seed, stopping at the first violation."""
        start = time.monotonic()
        rng = random.Random(seed)
        done: list[Step] = []
        violations = self.setup()
        while not violations and len(done) < count:
            step = generate(rng, self.model)
            violations = self._before(step)
            if violations:
                break  # what the earlier steps left
            violations = self.step(step)
            done.append(step)
        return Outcome(seed, done, violations or self._last(), time.monotonic() - start)

    def _before(self, step: Step) -> list[Violation]:
        """A person acts on a settled cluster (see QUICK): after steps that did not wait, wait first."""
        if step.action.endswith("-by-hand") and not self.settled:
            self.settled = True
            return self.checker.converge()
        return []

    def _last(self) -> list[Violation]:
        """After the last step: what a slowed exec of the last steps does when it lands late, and the check a last
        step that did not settle skipped."""
        self._pause(self.quiet_s)
        return self.checker.converge()

    def step(self, step: Step) -> list[Violation]:
        """Carry out one step (its fault included), update the model, and check."""
        self.log(f"step: {step}")
        began = time.monotonic()
        self._log_since = log_offset(self.operator.log_path)
        fault = step.fault or {}
        lead = float(fault.get("lead", 0.0))
        with contextlib.ExitStack() as during:
            if lead:
                # The request goes out while the fault lasts: it begins `lead` seconds before.
                during.enter_context(self._fault(fault))
                self._pause(lead)
            self._act(step)
            self.model.apply(step)
            if lead:
                self._pause(max(0.0, fault["down"] - lead))
        if fault and not lead:
            # The fault lands `delay` seconds after the request, while the operator acts on it.
            self._pause(fault["delay"])
            with self._fault(fault):
                self._pause(fault["down"] if fault["kind"] in WINDOWS else 0.0)
        violations = self.checker.converge() if step.settle else self.checker.glance()
        self.settled = step.settle
        if self.operator.process is None or self.operator.process.poll() is not None:
            # A leader that could not renew its Lease (an apiserver restart past the renew deadline) exits on
            # purpose and the kubelet starts it again: so does this runner. Any other exit is a crash.
            if not self.operator.lost_its_lease(self._log_since):
                violations.append(Violation("operator-exited", "operator", self.operator.log_tail(20)))
            self.operator.start()
        verdict = "VIOLATED" if violations else "ok" if step.settle else "ok so far"
        self.log(f"  {verdict} in {time.monotonic() - began:.1f}s")
        return violations

    def _kubelet(self) -> None:
        """Start the operator again at once when it exited on a lost Lease, as the kubelet would: waiting for the
        end of the step would leave it down for the whole repair time, and count that against the operator."""
        if self.operator.lost_its_lease(self._log_since):
            self.log("  the operator lost its Lease and exited: started again")
            self._log_since = log_offset(self.operator.log_path)
            self.operator.start()

    def _pause(self, seconds: float) -> None:
        """Wait, reading the truth meanwhile: the checker notes first effects (holds that appear while a fault
        keeps a STOP from being verified count towards a duration)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.checker.observe()
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    # Actions ------------------------------------------------------------------------------------------------------

    def _create_pod(self, pod: str) -> None:
        group = group_of(pod)
        ordinal = int(pod.rpartition("-")[2])
        fakepods.create_group(
            group.name, self.ns, 1, group.processes, first_ordinal=ordinal, probed=group.probed, ready_timeout=120
        )

    def _generation(self, out: str) -> int:
        return int(json.loads(out)["metadata"].get("generation") or 0)

    def _create(self, name: str, spec: Mapping[str, Any]) -> None:
        before = time.time()
        self.hints.requests.append(before)
        manifest = self.cluster.suspension(name, **spec)
        out = _retrying(
            lambda: self.cluster.kubectl("create", "-o", "json", "-f", "-", input_text=json.dumps(manifest)),
            f"create {name}",
        ).stdout
        self.hints.generations[(name, self._generation(out))] = before
        self.hints.started[name] = before

    def _delete(self, name: str) -> None:
        self.hints.requests.append(time.time())
        _retrying(lambda: self.cluster.kubectl("delete", "psus", name, "--wait=false"), f"delete {name}")

    def _act(self, step: Step) -> None:
        a, before = step.args, time.time()
        if step.action not in ("create-suspension", "delete-suspension", "rename-suspension"):
            self.hints.requests.append(before)
        if step.action == "create-suspension":
            self._create(a["name"], a["spec"])
        elif step.action == "rename-suspension":
            # A rename in Git: the new object applied, then the old one pruned, as a GitOps sync does.
            self._create(a["to"], self.model.suspensions[a["name"]])  # the model is changed after the request
            self._delete(a["name"])
        elif step.action == "patch-suspension":
            patch = json.dumps({"spec": a["patch"]})
            out = _retrying(
                lambda: self.cluster.kubectl("patch", "psus", a["name"], "--type=merge", "-p", patch, "-o", "json"),
                step.action,
            ).stdout
            self.hints.generations[(a["name"], self._generation(out))] = before
            if a["patch"].get("suspend") is True:
                self.hints.started[a["name"]] = before
        elif step.action == "delete-suspension":
            self._delete(a["name"])
        elif step.action == "relabel-pod":
            label = f"{a['key']}-" if a["value"] is None else f"{a['key']}={a['value']}"
            _retrying(lambda: self.cluster.kubectl("label", "pod", a["pod"], label, "--overwrite"), step.action)
        elif step.action == "create-pod":
            self._create_pod(a["pod"])
        elif step.action == "delete-pod":
            fakepods.delete_pod(self.ns, a["pod"])
        elif step.action == "recreate-pod":
            # A StatefulSet's way: the same name at once, a new uid.
            fakepods.delete_pod(self.ns, a["pod"])
            self._create_pod(a["pod"])
        elif step.action == "restart-container":
            fakepods.restart_container(self.ns, a["pod"], a["process"])
        elif step.action in ("stop-by-hand", "start-by-hand"):
            command = "STOP" if step.action == "stop-by-hand" else "START"
            self.cluster.send(a["pod"], a["process"], command, a.get("tool", "processcontrol"))
        elif step.action == "wait":
            self._pause(a["seconds"])
        if step.action in ("relabel-pod", "create-pod", "delete-pod", "recreate-pod", "restart-container") or (
            step.action.endswith("-by-hand")
        ):
            self.hints.disturbed = time.time()

    # Faults -------------------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _fault(self, fault: Mapping[str, Any]) -> Iterator[None]:
        """The fault from its beginning to its end (a restart is over when it begins)."""
        kind = fault["kind"]
        if kind == "kill-operator":
            self.operator.kill()
            try:
                yield
            finally:
                self.operator.start()
        elif kind == "freeze":
            record = fakepods.container_process(self.ns, fault["pod"], fakepods.JobProcess.parse(fault["process"]))
            if record is not None:
                os.kill(record.pid, signal.SIGSTOP)
            try:
                yield
            finally:
                if record is not None:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(record.pid, signal.SIGCONT)
        elif kind == "revoke-exec":
            with revoked_exec():
                yield
        elif kind == "slow-exec":
            directory = self.work / f"slow-{len(self.slowed)}"
            self.slowed.append(directory)
            slowed = slow_shell(directory, fault["sleep"], fault.get("phase", "all"))
            self.cluster.restrict_exec_path(fault["pod"], slowed)
            try:
                yield
            finally:
                with contextlib.suppress(ControlPlaneError):  # the request may have deleted the pod meanwhile
                    self.cluster.restrict_exec_path(fault["pod"], None)
        elif kind == "restart-apiserver":
            restart_component("kube-apiserver", down_s=fault["down"])
            yield
        elif kind == "restart-container":
            fakepods.restart_container(self.ns, fault["pod"], fault["process"])
            self.hints.disturbed = time.time()
            yield

    def close(self) -> None:
        """Stop the slowed execs still sleeping in their pods."""
        for directory in self.slowed:
            started = directory / "started"
            for line in started.read_text().split() if started.exists() else []:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(line), signal.SIGKILL)


# --- namespaces ----------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def fresh_namespace(operator: OperatorProcess, prefix: str = "promise") -> Iterator[Cluster]:
    """A namespace of its own for one episode or replay; afterwards its suspensions go (their finalizers removed
    when a broken run keeps them), then its pods' processes and the namespace."""
    namespace = f"{prefix}-{uuid.uuid4().hex[:6]}"
    # Right after kube-apiserver restarts, kube-controller-manager can take minutes to create the ServiceAccount.
    fakepods.ensure_namespace(namespace, timeout=300)
    try:
        yield Cluster(namespace, operator)
    finally:
        if kubectl("delete", "psus", "--all", "-n", namespace, "--timeout=60s", check=False).returncode != 0:
            names = kubectl("get", "psus", "-n", namespace, "-o", "name", check=False).stdout.split()
            for name in names:
                kubectl(
                    "patch",
                    name,
                    "-n",
                    namespace,
                    "--type=merge",
                    "-p",
                    '{"metadata":{"finalizers":null}}',
                    check=False,
                )
        for pod in kubectl("get", "pods", "-n", namespace, "-o", "name", check=False).stdout.split():
            fakepods.stop_pod_processes(namespace, pod.removeprefix("pod/"))
        kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def run_in_fresh_namespace(
    operator: OperatorProcess,
    limits: Limits,
    play: Callable[[Runner], Outcome],
    log: Callable[[str], None] = print,
) -> Outcome:
    """One episode or replay from a clean start."""
    with fresh_namespace(operator) as cluster:
        runner = Runner(cluster, limits, state_dir() / "promise" / cluster.namespace, log)
        try:
            return play(runner)
        finally:
            runner.close()


# --- shrinking -----------------------------------------------------------------------------------------------------


def ddmin(
    steps: Sequence[Step],
    fails: Callable[[list[Step]], bool],
    budget_s: float,
    log: Callable[[str], None] = print,
) -> list[Step]:
    """Delta debugging (Zeller's ddmin, complements first, which suits sequences that end in the failure): the
    shortest list found within the budget that still fails."""
    deadline = time.monotonic() + budget_s
    current, chunks = list(steps), 2
    while len(current) >= 2 and time.monotonic() < deadline:
        size = math.ceil(len(current) / chunks)
        parts = [current[i : i + size] for i in range(0, len(current), size)]
        for index in range(len(parts)):
            if time.monotonic() >= deadline:
                break
            candidate = [step for j, part in enumerate(parts) if j != index for step in part]
            log(f"shrink: trying {len(candidate)} of {len(current)} steps")
            if fails(candidate):
                current, chunks = candidate, max(chunks - 1, 2)
                break
        else:
            if chunks >= len(current):
                break
            chunks = min(len(current), chunks * 2)
    return current


def shrink(
    operator: OperatorProcess,
    limits: Limits,
    outcome: Outcome,
    budget_s: float,
    log: Callable[[str], None] = print,
) -> Outcome:
    """The shortest step list found within the budget that breaks one of the same clauses again, replayed once
    more at the end; the original outcome when nothing shorter fails."""
    kinds = {v.kind for v in outcome.violations}

    def fails(candidate: list[Step]) -> bool:
        try:
            replay = run_in_fresh_namespace(operator, limits, lambda r: r.run(candidate, outcome.seed), log)
        except (ControlPlaneError, fakepods.FakePodError, HarnessError) as error:
            log(f"shrink: the replay could not run ({error}): counted as not failing")
            return False
        return bool(kinds & {v.kind for v in replay.violations})

    deadline = time.monotonic() + budget_s
    smallest = ddmin(outcome.steps, fails, budget_s, log)
    smallest = simplify(smallest, fails, deadline - time.monotonic(), log)
    if [s.as_json() for s in smallest] == [s.as_json() for s in outcome.steps]:
        return outcome
    again = run_in_fresh_namespace(operator, limits, lambda r: r.run(smallest, outcome.seed), log)
    return again if kinds & {v.kind for v in again.violations} else outcome


def simplify(
    steps: Sequence[Step],
    fails: Callable[[list[Step]], bool],
    budget_s: float,
    log: Callable[[str], None] = print,
) -> list[Step]:
    """After ddmin: each fault left out in turn, kept out when the list still fails without it."""
    deadline = time.monotonic() + budget_s
    current = list(steps)
    for index, step in enumerate(current):
        if step.fault is None or time.monotonic() >= deadline:
            continue
        candidate = [*current[:index], Step(step.action, step.args, None, step.settle), *current[index + 1 :]]
        log(f"shrink: trying step {index + 1} without its {step.fault['kind']}")
        if fails(candidate):
            current = candidate
    return current
