"""The promise checker (harness.promise) and the random steps (harness.chaos), without a cluster: the checker
judges truths built here by hand, the generator is run against its own model.

The checker is the oracle of tests/e2e/test_promise.py and the soak: a clause it does not see broken would let a
real failure through, and one it sees broken where nothing is would send people after a bug that is not there.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from harness import chaos
from harness.chaos import Model, Step, ddmin, generate, generate_steps, simplify
from harness.cluster import execs_done, slow_shell
from harness.promise import (
    HOLDS_ANNOTATION,
    Base,
    Checker,
    Hints,
    Limits,
    Live,
    Pair,
    PodTruth,
    ProcState,
    SuspensionTruth,
    Truth,
    Violation,
)
from processcontrol.api import ProcessSuspensionSpec

IG = "quarks.cloudfoundry.org/instance-group-name"
SUSPENDED = "processcontrol.dev/suspended"
MYSQL: Pair = ("pxc-mysql", "mysql")
AGENT: Pair = ("pxc-mysql", "galera-agent")
CCNG: Pair = ("cloud_controller_ng", "ccng")
T0 = 1_800_000_000.0
S, R = ProcState.STOPPED, ProcState.RUNNING


def container(pair: Pair, probe: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": f"{pair[0]}-{pair[1]}",
        "args": ["--job-name", pair[0], "--process-name", pair[1], "--", "run"],
    }
    if probe:
        body["livenessProbe"] = {"exec": {"command": ["true"]}}
    return body


def pod(
    name: str,
    processes: Mapping[Pair, ProcState],
    group: str = "db",
    holds: Mapping[str, list[Pair]] | None = None,
    labelled: bool | None = None,
    probed: tuple[Pair, ...] = (),
    **labels: str,
) -> PodTruth:
    """A pod whose ledger has `holds` (uid -> the processes it holds) and the label when it holds anything."""
    annotations = {}
    if holds:
        entries: dict[str, dict[str, Any]] = {}
        for uid, pairs in holds.items():
            for pair in pairs:
                entries.setdefault(f"{pair[0]}/{pair[1]}", {"holders": [], "wasRunning": True})["holders"].append(uid)
        ledger = {"v": 1, "holds": {uid: {"name": uid} for uid in holds}, "processes": entries}
        annotations[HOLDS_ANNOTATION] = json.dumps(ledger)
    label = {SUSPENDED: "true"} if (bool(holds) if labelled is None else labelled) else {}
    return PodTruth(
        name=name,
        uid=f"uid-{name}",
        labels={IG: group, **labels, **label},
        annotations=annotations,
        terminating=False,
        phase="Running",
        containers=tuple(container(p, p in probed) for p in processes),
        processes=dict(processes),
    )


def ready(reason: str, generation: int = 1, at: float = T0, status: str = "True") -> dict[str, Any]:
    moment = datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    condition = {"type": "Ready", "status": status, "reason": reason, "lastTransitionTime": moment}
    return {"observedGeneration": generation, "conditions": [{**condition, "observedGeneration": generation}]}


def suspension(
    name: str, status: dict[str, Any] | None = None, generation: int = 1, deleting: bool = False, **spec: Any
) -> SuspensionTruth:
    return SuspensionTruth(
        name=name,
        uid=name,  # uid = name keeps the ledgers above readable
        generation=generation,
        spec={"instanceGroup": "db", **spec},
        status=status if status is not None else ready("Suspended", generation),
        deleting=deleting,
        created=T0 - 100,
    )


def truth(*objects: PodTruth | SuspensionTruth, at: float = T0 + 10) -> Truth:
    pods = {o.name: o for o in objects if isinstance(o, PodTruth)}
    suspensions = {o.name: o for o in objects if isinstance(o, SuspensionTruth)}
    return Truth(at, pods, suspensions)


def kinds(found: list[Violation]) -> list[str]:
    return sorted(v.kind for v in found)


# By default something changed from outside after the Ready the helpers declare at T0: a Ready that is not true is
# then stale, not false when declared (the tests of that difference say when things changed).
AFTER_READY = T0 + 1


def judge(*objects: PodTruth | SuspensionTruth, hints: Hints | None = None, at: float = T0 + 10) -> list[str]:
    hints = hints or Hints(disturbed=AFTER_READY)
    return kinds(Checker("ns", source=None, hints=hints).judge(truth(*objects, at=at)))  # type: ignore[arg-type]


# --- processes -----------------------------------------------------------------------------------------------------


def test_a_held_process_that_runs_is_a_violation_and_a_stopped_one_is_not() -> None:
    s = suspension("s")
    assert judge(s, pod("db-0", {MYSQL: S, AGENT: S}, holds={"s": [MYSQL, AGENT]})) == []
    found = Checker("ns", source=None).judge(  # type: ignore[arg-type]
        truth(s, pod("db-0", {MYSQL: R, AGENT: S}, holds={"s": [MYSQL, AGENT]}))
    )
    assert [str(v) for v in found if v.kind == "held-running"] == [
        "held-running: db-0 pxc-mysql/mysql: running, held by s"
    ]


def test_filters_and_targets_decide_what_is_held() -> None:
    s = suspension("s", processes=["mysql"])
    # galera-agent is not selected: it must run, as before any hold.
    assert judge(s, pod("db-0", {MYSQL: S, AGENT: R}, holds={"s": [MYSQL]})) == []
    assert judge(s, pod("db-0", {MYSQL: S, AGENT: S}, holds={"s": [MYSQL]})) == ["unheld-stopped"]
    # A pod of another group is not targeted at all.
    assert judge(s, pod("api-0", {MYSQL: R}, group="api")) == []
    selector = suspension(
        "t",
        status=ready("Suspending", status="False"),
        instanceGroup=None,
        selector={"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a"]}]},
    )
    assert judge(selector, pod("db-0", {MYSQL: R}, tier="a")) == ["held-running", "not-ready"]
    assert judge(selector, pod("db-0", {MYSQL: R}, tier="b")) == []


def test_a_process_stopped_by_hand_stays_stopped_and_is_not_expected_to_run() -> None:
    hints = Hints(base={("db-0", *AGENT): Base.STOPPED})
    assert judge(pod("db-0", {MYSQL: R, AGENT: S}), hints=hints) == []
    assert judge(pod("db-0", {MYSQL: R, AGENT: R}), hints=hints) == ["unheld-running"]
    assert judge(pod("db-0", {MYSQL: R, AGENT: S})) == ["unheld-stopped"]
    either = Hints(base={("db-0", *AGENT): Base.EITHER})
    assert judge(pod("db-0", {MYSQL: R, AGENT: S}), hints=either) == judge(pod("db-0", {MYSQL: R, AGENT: R})) == []


@pytest.mark.parametrize(
    ("policy", "state", "expected"),
    [
        # Warn stops the probed process too.
        ("Warn", R, ["held-running", "ready-stale"]),
        # Skip leaves it running; the other process is held.
        ("Skip", R, []),
        ("Skip", S, ["unheld-stopped"]),
        # Refuse holds nothing in such a pod: both must run, and Ready cannot come.
        ("Refuse", R, []),
    ],
)
def test_the_probe_policy_decides_what_a_probed_container_keeps(
    policy: str, state: ProcState, expected: list[str]
) -> None:
    s = suspension("s", instanceGroup="api", probes=policy)
    fwd: Pair = ("log-cache", "forwarder")
    fwd_state = R if policy == "Refuse" else S
    holds = {} if policy == "Refuse" else {"s": [fwd] + ([CCNG] if policy == "Warn" else [])}
    api = pod("api-0", {CCNG: state, fwd: fwd_state}, group="api", holds=holds, probed=(CCNG,))
    assert judge(s, api) == expected


# --- ledgers and labels --------------------------------------------------------------------------------------------


def test_a_ledger_names_only_live_holds_that_cover_its_processes() -> None:
    live = suspension("s", processes=["mysql"])
    # A hold of a suspension that is gone: its process must run again (the ledger says so too).
    assert judge(pod("db-0", {MYSQL: S}, holds={"gone": [MYSQL]})) == ["ledger-dead-hold", "unheld-stopped"]
    resumed = suspension("r", suspend=False, status=ready("Resumed"))
    assert judge(resumed, pod("db-0", {MYSQL: R}, holds={"r": [MYSQL]})) == ["ledger-dead-hold", "ready-stale"]
    # A live suspension's hold on a process its filters do not select.
    assert judge(live, pod("db-0", {MYSQL: S, AGENT: S}, holds={"s": [MYSQL, AGENT]})) == [
        "ledger-foreign",
        "unheld-stopped",
    ]


def test_the_suspended_label_goes_with_the_last_hold_and_comes_with_the_first() -> None:
    assert judge(pod("db-0", {MYSQL: R}, labelled=True)) == ["label-without-hold"]
    assert judge(suspension("s"), pod("db-0", {MYSQL: S}, holds={"s": [MYSQL]}, labelled=False)) == ["label-missing"]


def test_an_unreadable_ledger_is_a_violation() -> None:
    broken = pod("db-0", {MYSQL: R})
    broken = PodTruth(**{**broken.__dict__, "annotations": {HOLDS_ANNOTATION: "{not json"}})
    assert judge(broken) == ["ledger-unreadable"]


# --- status --------------------------------------------------------------------------------------------------------


def test_ready_declared_after_the_last_outside_change_while_not_in_force_cannot_be_repaired() -> None:
    running = pod("db-0", {MYSQL: R}, holds={"s": [MYSQL]})
    declared_late = suspension("s", status=ready("Suspended", at=T0 + 5))
    hints = Hints(disturbed=T0 - 30)
    assert "ready-not-in-force" in judge(declared_late, running, hints=hints)
    # Declared before a container restart made the process run: stale, which the operator has time to repair.
    assert "ready-stale" in judge(declared_late, running, hints=Hints(disturbed=T0 + 4))
    # A Ready of the previous generation says nothing about this one.
    older = suspension("s", generation=2, status=ready("Suspended", generation=1, at=T0 + 5))
    assert "ready-not-in-force" not in judge(older, running, hints=hints)
    # A request that made the generation counts as the moment it was declared at the earliest.
    kept = suspension("s", generation=2, status=ready("Suspended", generation=2, at=T0 - 60))
    hints.generations[("s", 2)] = T0
    assert "ready-not-in-force" in judge(kept, running, hints=hints)


def test_ready_must_come_where_the_intent_can_be_verified() -> None:
    stopped = pod("db-0", {MYSQL: S}, holds={"s": [MYSQL]})
    assert judge(suspension("s", status=ready("Suspending", status="False")), stopped) == ["not-ready"]
    # No target pod: Ready cannot come (NoMatchingPods).
    assert judge(suspension("s", instanceGroup="none", status=ready("NoMatchingPods", status="False"))) == []
    # A resumed suspension says Resumed.
    resumed = suspension("s", suspend=False, generation=2, status=ready("Resumed", generation=2))
    assert judge(resumed, pod("db-0", {MYSQL: R})) == []
    stopped_since = Hints(disturbed=T0 - 30)
    assert judge(resumed, pod("db-0", {MYSQL: S}), hints=stopped_since) == [
        "ready-not-in-force",
        "unheld-stopped",
    ]


def test_a_preview_holds_nothing_and_is_ready_as_previewed() -> None:
    """spec.preview: live for nobody (as suspend: false), and its Ready says Previewed, never Suspended."""
    checker = Checker("ns", source=None)  # type: ignore[arg-type]
    assert checker.liveness(suspension("p", preview=True), T0) is Live.DEAD
    assert checker.liveness(suspension("p", preview=False), T0) is Live.LIVE
    previewed = suspension("p", preview=True, status=ready("Previewed"))
    before = Hints(disturbed=T0 - 30)
    assert judge(previewed, pod("db-0", {MYSQL: R})) == []
    # Its hold left in a ledger (patched from live to preview, not yet given back), its process still stopped.
    assert judge(previewed, pod("db-0", {MYSQL: S}, holds={"p": [MYSQL]}), hints=before) == [
        "ledger-dead-hold",
        "ready-not-in-force",
        "unheld-stopped",
    ]
    assert "ready-not-in-force" in judge(
        suspension("p", preview=True, status=ready("Suspended")), pod("db-0", {MYSQL: R}), hints=before
    )
    assert "ready-not-in-force" in judge(
        suspension("p", preview=True, status=ready("Resumed")), pod("db-0", {MYSQL: R}), hints=before
    )
    # Not Ready: it must come, where the pods can be looked at.
    assert judge(
        suspension("p", preview=True, status=ready("Previewing", status="False")), pod("db-0", {MYSQL: R})
    ) == ["not-ready"]


def test_resumed_is_about_the_suspensions_own_holds_not_those_another_gives_back() -> None:
    resumed = suspension("r", suspend=False, generation=2, status=ready("Resumed", generation=2, at=T0 + 5))
    expired = suspension("x", suspend=False, status=ready("Resuming", status="False"))
    before = Hints(disturbed=T0 - 30)
    # The process r covered is stopped because x's hold is still being given back: x's clause, not r's Ready.
    giving_back = pod("db-0", {MYSQL: S}, holds={"x": [MYSQL]})
    assert judge(resumed, expired, giving_back, hints=before) == ["ledger-dead-hold", "not-ready", "unheld-stopped"]
    # Stopped with no hold anywhere (a STOP that landed after the START): r said Resumed while it was not.
    assert judge(resumed, pod("db-0", {MYSQL: S}), hints=before) == ["ready-not-in-force", "unheld-stopped"]


def test_a_deleted_suspension_must_be_gone() -> None:
    gone = suspension("s", deleting=True)
    assert judge(gone, pod("db-0", {MYSQL: R})) == ["deletion-stuck"]
    # Being deleted, it holds nothing: its process must run and its hold go.
    assert judge(gone, pod("db-0", {MYSQL: S}, holds={"s": [MYSQL]})) == [
        "deletion-stuck",
        "ledger-dead-hold",
        "unheld-stopped",
    ]


# --- expiry --------------------------------------------------------------------------------------------------------


def test_a_duration_is_live_until_it_passed_since_the_request_and_over_once_it_passed_since_the_first_effect() -> None:
    checker = Checker("ns", source=None, limits=Limits(expiry_slack_s=5))  # type: ignore[arg-type]
    checker.hints.started["s"] = T0
    s = suspension("s", duration="10s")
    assert checker.liveness(s, T0 + 9) is Live.LIVE
    # Past the duration, nothing seen of its first effect: it may have started late.
    assert checker.liveness(s, T0 + 60) is Live.UNSURE
    # A hold seen in a ledger is an effect: from then on, duration + slack at most.
    checker.first_effect["s"] = (T0, T0 + 2)
    assert checker.liveness(s, T0 + 16) is Live.UNSURE
    assert checker.liveness(s, T0 + 18) is Live.DEAD
    # An effect seen in an earlier run (before suspend was set true again) does not count.
    checker.hints.started["s"] = T0 + 100
    assert checker.liveness(s, T0 + 130) is Live.UNSURE
    # The operator's own expiresAt, when it is not earlier than the duration allows.
    said = suspension("s", duration="10s", status={"expiresAt": "2027-01-15T08:01:50Z"})
    expires = datetime(2027, 1, 15, 8, 1, 50, tzinfo=UTC).timestamp()
    checker.hints.started["s"] = expires - 10
    assert checker.liveness(said, expires + 1) is Live.DEAD
    assert checker.liveness(said, expires - 1) is Live.LIVE


def test_an_expired_suspension_must_give_back_its_processes() -> None:
    hints = Hints(started={"s": T0 - 100})
    s = suspension("s", duration="10s", status={**ready("Suspended"), "suspendedAt": "2027-01-15T08:00:00Z"})
    at = datetime(2027, 1, 15, 8, 1, 0, tzinfo=UTC).timestamp()  # 60 s later: past 10 s + 30 s of slack
    hints.started["s"] = at - 100
    found = judge(s, pod("db-0", {MYSQL: S}, holds={"s": [MYSQL]}), hints=hints, at=at)
    # A stale Suspended (expiry is not a request: it was true when declared), the hold and the process.
    assert found == ["ledger-dead-hold", "ready-stale", "unheld-stopped"]


# --- waiting for convergence ---------------------------------------------------------------------------------------


def reader(truths: list[Truth]) -> Iterator[Truth]:
    yield from truths
    while True:
        yield truths[-1]


def test_converge_waits_for_the_repair_and_reports_what_lasts() -> None:
    s = suspension("s")
    bad = truth(s, pod("db-0", {MYSQL: R}, holds={"s": [MYSQL]}))
    good = truth(s, pod("db-0", {MYSQL: S}, holds={"s": [MYSQL]}))
    limits = Limits(repair_s=0.5, stable_s=0.05, interval_s=0.01)
    hints = Hints(disturbed=AFTER_READY)  # a container restart made it run after Ready was declared
    repaired = reader([bad, bad, good])
    assert Checker("ns", None, limits, hints, reader=lambda: next(repaired)).converge() == []  # type: ignore[arg-type]
    lasting = reader([bad])
    found = Checker("ns", None, limits, hints, reader=lambda: next(lasting)).converge()  # type: ignore[arg-type]
    assert kinds(found) == ["held-running", "ready-stale"]


def test_converge_returns_a_false_ready_at_once() -> None:
    s = suspension("s", status=ready("Suspended", at=T0 + 5))
    false_ready = reader([truth(s, pod("db-0", {MYSQL: R}, holds={"s": [MYSQL]}))])
    checker = Checker("ns", None, Limits(repair_s=60), Hints(disturbed=T0 - 30), reader=lambda: next(false_ready))  # type: ignore[arg-type]
    found = checker.converge()
    assert kinds(found) == ["ready-not-in-force"]
    assert checker.reads == 1


# --- the random steps ----------------------------------------------------------------------------------------------


def test_a_seed_gives_the_same_steps_and_another_seed_others() -> None:
    first = [s.as_json() for s in generate_steps(23, 60)]
    assert first == [s.as_json() for s in generate_steps(23, 60)]
    assert first != [s.as_json() for s in generate_steps(24, 60)]
    assert [Step.from_json(json.loads(json.dumps(s))).as_json() for s in first] == first


def test_generated_steps_are_valid_where_they_are_drawn_and_make_valid_objects() -> None:
    actions: set[str] = set()
    faults: set[str] = set()
    for seed in range(40):
        rng, model = random.Random(seed), Model.initial()
        for _ in range(80):
            step = generate(rng, model)
            assert model.valid(step), step
            assert model.fault_valid(step), step
            if step.action == "patch-suspension":
                # The API server refuses a change of target, filters or container.
                assert set(step.args["patch"]) <= chaos.MUTABLE, step
            if step.action == "stop-by-hand":
                assert not model.may_hold(step.args["pod"], step.args["process"]), step
            model.apply(step)
            actions.add(step.action)
            faults.add(step.fault["kind"] if step.fault else "none")
            assert len(model.suspensions) <= chaos.MAX_SUSPENSIONS
            for spec in model.suspensions.values():
                # What the API server would refuse (exactly one target, names, durations) never goes out.
                ProcessSuspensionSpec.model_validate(spec)
    assert actions == set(chaos.ACTIONS)
    assert faults == {*chaos.FAULTS, "none"}


def test_a_replayed_shorter_list_drops_the_steps_that_no_longer_make_sense() -> None:
    model = Model.initial()
    patch = Step("patch-suspension", {"name": "s0", "patch": {"suspend": False}})
    assert not model.valid(patch)
    model.apply(Step("create-suspension", {"name": "s0", "spec": {"instanceGroup": "db", "probes": "Refuse"}}))
    assert model.valid(patch)
    assert model.valid(Step("patch-suspension", {"name": "s0", "patch": {"probes": "Warn"}}))
    # A person's STOP goes only to a process nothing may hold.
    assert not model.valid(Step("stop-by-hand", {"pod": "db-0", "process": "pxc-mysql/mysql"}))
    assert model.valid(Step("stop-by-hand", {"pod": "api-0", "process": "log-cache/forwarder"}))
    deleting = Step("delete-pod", {"pod": "db-0"}, {"kind": "freeze", "pod": "db-0", "process": "pxc-mysql/mysql"})
    assert model.valid(deleting) and not model.fault_valid(deleting)


def test_a_container_restarted_after_a_stop_by_hand_may_be_either_while_held() -> None:
    model = Model.initial()
    model.apply(Step("stop-by-hand", {"pod": "db-0", "process": "pxc-mysql/mysql"}))
    assert model.base[("db-0", *MYSQL)] is Base.STOPPED
    model.apply(Step("create-suspension", {"name": "s0", "spec": {"instanceGroup": "db"}}))
    model.apply(Step("restart-container", {"pod": "db-0", "process": "pxc-mysql/mysql"}))
    assert model.base[("db-0", *MYSQL)] is Base.EITHER
    model.apply(Step("delete-suspension", {"name": "s0"}))
    model.apply(Step("restart-container", {"pod": "db-0", "process": "pxc-mysql/mysql"}))
    assert ("db-0", *MYSQL) not in model.base  # running again, as any new process


def test_ddmin_finds_the_two_steps_that_matter() -> None:
    steps = [Step("wait", {"seconds": i}) for i in range(12)]

    def fails(candidate: list[Step]) -> bool:
        seconds = [s.args["seconds"] for s in candidate]
        return 3 in seconds and 8 in seconds and seconds.index(3) < seconds.index(8)

    found = ddmin(steps, fails, budget_s=30, log=lambda _: None)
    assert [s.args["seconds"] for s in found] == [3, 8]


def started(truth_: Truth, pod_name: str, pair: Pair, *moments: float) -> Truth:
    """The same truth, the pod's process started by a START at these moments."""
    pods = dict(truth_.pods)
    pods[pod_name] = PodTruth(**{**pods[pod_name].__dict__, "starts": {pair: moments}})
    return Truth(truth_.at, pods, truth_.suspensions)


def test_a_process_held_throughout_is_never_started_however_briefly() -> None:
    s = suspension("s")
    held = pod("db-0", {MYSQL: S}, holds={"s": [MYSQL]})
    hints = Hints(started={"s": T0 - 100}, disturbed=AFTER_READY)
    checker = Checker("ns", None, hints=hints)  # type: ignore[arg-type]
    first, second = truth(s, held, at=T0 + 10), truth(s, held, at=T0 + 20)
    checker.observe_truth(started(first, "db-0", MYSQL, T0 - 50))
    # Stopped at both reads, yet started (and stopped again) in between: the START reached a held process.
    found = checker.observe_truth(started(second, "db-0", MYSQL, T0 - 50, T0 + 15))
    assert [str(v) for v in found] == [
        "held-started: db-0 pxc-mysql/mysql: started by a START at "
        f"{datetime.fromtimestamp(T0 + 15).strftime('%H:%M:%S.%f')[:-3]} while s held it"
    ]


def test_a_start_sent_for_the_request_just_before_the_hold_is_a_race_not_a_violation() -> None:
    s = suspension("s")
    held = pod("db-0", {MYSQL: S}, holds={"s": [MYSQL]})
    # suspend: false at T0 + 11 (not settled), true again at T0 + 12: the START of the first lands at T0 + 13.
    hints = Hints(started={"s": T0 + 12}, requests=[T0 + 11, T0 + 12], settled=T0, disturbed=AFTER_READY)
    checker = Checker("ns", None, hints=hints)  # type: ignore[arg-type]
    checker.observe_truth(truth(s, held, at=T0 + 12.5))
    assert checker.observe_truth(started(truth(s, held, at=T0 + 20), "db-0", MYSQL, T0 + 13)) == []
    # Once the earlier request had settled, nothing could have sent it: a hand-over that bounced.
    hints.settled = T0 + 11.5
    checker.observe_truth(truth(s, held, at=T0 + 21))
    assert [
        v.kind for v in checker.observe_truth(started(truth(s, held, at=T0 + 30), "db-0", MYSQL, T0 + 13, T0 + 25))
    ] == ["held-started"]
    # Not held at the earlier read (the pod was not targeted): nothing to say.
    checker.observe_truth(truth(s, pod("db-0", {MYSQL: R}, group="api"), at=T0 + 31))
    assert checker.observe_truth(started(truth(s, held, at=T0 + 40), "db-0", MYSQL, T0 + 13, T0 + 25, T0 + 35)) == []


def test_a_duration_may_neither_run_out_before_it_passed_nor_wait_for_a_verified_stop() -> None:
    checker = Checker("ns", None, limits=Limits(expiry_slack_s=5))  # type: ignore[arg-type]
    start = datetime(2027, 1, 15, 8, 0, 0, tzinfo=UTC).timestamp()
    checker.hints.started["s"] = start
    held = pod("db-0", {MYSQL: S}, holds={"s": [MYSQL]})
    waiting = suspension("s", duration="10s", status=ready("Suspending", status="False"))
    # The hold is seen at once; the STOP never verifies, so the operator shows no expiresAt.
    assert checker.observe_truth(truth(waiting, held, at=start + 1)) == []
    assert checker.observe_truth(truth(waiting, held, at=start + 15)) == []
    late = checker.observe_truth(truth(waiting, held, at=start + 17))
    assert [v.kind for v in late] == ["expiry-late"]
    assert checker.observe_truth(truth(waiting, held, at=start + 18)) == []  # said once
    # A duration set long after the first hold runs out at once: counted from that request, not before.
    later = suspension("l", generation=3, duration="10s", status=ready("Suspended", generation=2))
    checker.hints.started["l"] = start
    checker.first_effect["l"] = (start, start + 1)
    checker.hints.generations[("l", 3)] = start + 100
    assert checker.observe_truth(truth(later, at=start + 101)) == []
    assert [v.kind for v in checker.observe_truth(truth(later, at=start + 106))] == ["expiry-late"]
    early = suspension("e", duration="10s", status={"expiresAt": "2027-01-15T08:00:05Z"})
    checker.hints.started["e"] = start
    assert [v.kind for v in checker.observe_truth(truth(early, at=start + 2))] == ["expiry-early"]
    # Counted from a moment within the bounds: nothing to say.
    fine = suspension("f", duration="10s", status={"expiresAt": "2027-01-15T08:00:12Z"})
    checker.hints.started["f"] = start
    checker.first_effect["f"] = (start, start + 1)
    assert checker.observe_truth(truth(fine, at=start + 30)) == []


def test_simplify_leaves_out_the_faults_that_do_not_matter() -> None:
    kill = {"kind": "kill-operator", "delay": 0.1, "down": 1.0}
    slow = {"kind": "slow-exec", "pod": "db-1", "sleep": 12.0, "down": 3.0, "lead": 0.5}
    steps = [Step("wait", {"seconds": 1}, kill), Step("wait", {"seconds": 2}, slow, settle=False)]

    def fails(candidate: list[Step]) -> bool:
        return any(s.fault is not None and s.fault["kind"] == "slow-exec" for s in candidate)

    found = simplify(steps, fails, budget_s=30, log=lambda _: None)
    assert [s.fault for s in found] == [None, slow]
    assert [s.settle for s in found] == [True, False]


def test_a_send_slowed_exec_keeps_its_look_fast_and_slows_only_stop_and_start(tmp_path: Path) -> None:
    path = slow_shell(tmp_path / "slow", 1000, phase="send")
    wrapper = tmp_path / "slow" / "perl"
    env = {**os.environ, "PATH": path}
    # The look's probe (empty payload) goes straight on: it would hang for 1000 s if it slept too.
    subprocess.run([str(wrapper), "-e", "exit 7", "--", "", "0"], env=env, timeout=60, check=False)
    assert execs_done(tmp_path / "slow")
    # A STOP waits: still under way when the test stops it.
    send = subprocess.Popen([str(wrapper), "-e", "exit 0", "--", "STOP", "0"], env=env, start_new_session=True)
    try:
        for _ in range(600):
            if len((tmp_path / "slow" / "started").read_text().split()) == 2:
                break
            time.sleep(0.05)
        assert send.poll() is None and not execs_done(tmp_path / "slow")
    finally:
        os.killpg(send.pid, signal.SIGKILL)
        send.wait()
    with pytest.raises(ValueError, match="phase"):
        slow_shell(tmp_path / "other", 1, phase="look")


def test_a_slowed_exec_fault_is_drawn_both_ways_and_a_send_one_lands_within_the_send_grace() -> None:
    faults = [chaos._fault(random.Random(seed), ["db-0"], []) for seed in range(400)]
    slowed = [f for f in faults if f["kind"] == "slow-exec"]
    send = [f for f in slowed if f.get("phase") == "send"]
    assert send and len(send) < len(slowed)
    assert all(chaos.EXEC_TIMEOUT_S - 4 <= f["sleep"] < chaos.SEND_GRACE_S for f in send)
    assert all(f["sleep"] > chaos.EXEC_TIMEOUT_S for f in slowed if "phase" not in f)
