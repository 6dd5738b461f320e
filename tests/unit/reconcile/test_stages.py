"""Ordered stages without a pod: the gates, the levels the board keeps, the status, and the spec's stage of a
socket."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from processcontrol.api import INSTANCE_GROUP_LABEL, PodState, ProcessSuspensionSpec, ProcessSuspensionStatus
from processcontrol.api.reasons import Reason
from processcontrol.ledger import HOLDS_ANNOTATION, holders_in
from processcontrol.reconcile.outcomes import OutcomeBoard
from processcontrol.reconcile.plan import Intent, Mode, PodRecord, build_status
from processcontrol.reconcile.stages import hold_gate, may_give_back, stage_status
from processcontrol.targets import PodInfo

NOW = datetime(2026, 12, 2, 6, 0, 0, tzinfo=UTC)
STAGES = [{"processes": ["galera-agent"]}, {"jobs": ["pxc-mysql"], "processes": ["mysql"]}, {"jobs": ["bpm"]}]


def spec(**fields: object) -> ProcessSuspensionSpec:
    return ProcessSuspensionSpec.model_validate({"instanceGroup": "database", "stages": STAGES, **fields})


def pod(name: str) -> PodInfo:
    return PodInfo(
        namespace="kubecf",
        name=name,
        uid=f"uid-{name}",
        labels={INSTANCE_GROUP_LABEL: "database"},
        phase="Running",
        terminating=False,
        containers=("pxc-mysql",),
        data_containers=("pxc-mysql",),
    )


def record(stage: int, state: PodState = PodState.SUSPENDING, mode: Mode = Mode.SUSPEND) -> PodRecord:
    return PodRecord(uid="u", state=state, mode=mode, generation=1, stage=stage)


def test_a_socket_is_in_the_first_stage_that_selects_it() -> None:
    staged = spec()
    assert staged.stage_count == 3
    assert staged.stage_of("pxc-mysql", "galera-agent") == 0
    assert staged.stage_of("pxc-mysql", "mysql") == 1
    assert staged.stage_of("bpm", "mysql") == 2, "bpm/mysql is not pxc-mysql's: the third stage has it"
    assert staged.stage_of("other", "thing") is None, "no stage selects it: left alone"
    plain = ProcessSuspensionSpec.model_validate({"instanceGroup": "database", "jobs": ["pxc-mysql"]})
    assert plain.stage_count == 1 and plain.stage_of("pxc-mysql", "mysql") == 0


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"stages": [{"jobs": ["a"]}]}, "two stages"),
        ({"jobs": ["a"]}, "exclusive"),
        ({"processes": ["a"]}, "exclusive"),
        ({"stages": [{"jobs": ["a"]}, {"jobs": []}]}, "jobs or processes"),
    ],
)
def test_stages_are_refused_alone_with_filters_or_empty(fields: dict[str, object], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        spec(**fields)


def test_the_hold_gate_opens_a_stage_once_every_target_has_the_one_before() -> None:
    assert hold_gate(0, [0, 0], 3) == 1, "stage 1 (index 0) always"
    assert hold_gate(1, [1, 0], 3) == 1, "one pod has not stopped stage 1 yet"
    assert hold_gate(1, [1, 1], 3) == 2
    assert hold_gate(3, [3, 3], 3) == 3, "never more than there are"
    # A new pod (level 0) holds the others back from taking more, and takes one stage at a time itself.
    assert hold_gate(2, [0, 3], 3) == 1
    assert hold_gate(0, [3, 3], 3) == 1
    assert hold_gate(1, [3, 3], 3) == 2


def test_a_stage_is_given_back_once_no_pod_that_did_not_fail_holds_more() -> None:
    assert may_give_back(3, [3, 3])
    assert not may_give_back(2, [3, 2]), "a pod still has stage 3 stopped"
    assert may_give_back(2, [2, 1])
    assert may_give_back(1, [])


def test_the_board_counts_levels_and_leaves_failed_pods_out_of_resuming() -> None:
    board = OutcomeBoard()
    board.report("ns", "s", "p0", record(2))
    board.report("ns", "s", "p1", record(1, mode=Mode.RESUME, state=PodState.RESUMING))
    assert board.suspending_levels("ns", "s", ["p0", "p1", "p2"]) == [2, 0, 0], "resuming and silent pods: 0"
    board.report("ns", "s", "p2", record(3, state=PodState.FAILED, mode=Mode.RESUME))
    assert board.resuming_levels("ns", "s", but="p1") == [2]


def test_a_pod_with_no_outcome_yet_counts_the_stages_its_ledger_holds() -> None:
    # Just after a restart: p0 has reported (it holds stage 1 only), p1 has not; its ledger holds both stages.
    board = OutcomeBoard()
    board.report("ns", "s", "p0", record(1, mode=Mode.RESUME, state=PodState.RESUMING))
    assert board.resuming_levels("ns", "s", but="p0", held={"p0": 1, "p1": 2}) == [2]
    assert not may_give_back(1, board.resuming_levels("ns", "s", but="p0", held={"p1": 2}))
    # Once p1 reports, its outcome counts, not its ledger (which lags what its worker is giving back).
    board.report("ns", "s", "p1", record(1, mode=Mode.RESUME, state=PodState.RESUMING))
    assert board.resuming_levels("ns", "s", but="p0", held={"p1": 2}) == [1]
    board.report("ns", "s", "p1", record(2, mode=Mode.RESUME, state=PodState.FAILED))
    assert board.resuming_levels("ns", "s", but="p0", held={"p1": 2}) == [], "a failed pod holds nobody up"


def test_the_pod_index_keeps_how_many_stages_each_staged_hold_took() -> None:
    ledger: dict[str, Any] = {
        "v": 1,
        "holds": {
            "uid-staged": {"name": "restore", "stages": [{"processes": ["galera-agent"]}, {"processes": ["mysql"]}]},
            "uid-plain": {"name": "other"},
        },
        "processes": {
            "pxc-mysql/galera-agent": {"holders": ["uid-staged", "uid-plain"], "wasRunning": True},
            "pxc-mysql/mysql": {"holders": ["uid-staged"], "wasRunning": True},
        },
    }
    summary = holders_in({HOLDS_ANNOTATION: json.dumps(ledger)})
    assert summary.holders == ("uid-plain", "uid-staged")
    assert (summary.stages_of("uid-staged"), summary.stages_of("uid-plain"), summary.stages_of("gone")) == (2, 0, 0)
    # Stage 2 on its way back (the write-ahead leaves one stage in the hold, mysql releasing for it): still level 2
    # until its START is verified, as the pod's own worker counts it. The e2e run under load found this one.
    ledger["holds"]["uid-staged"]["stages"] = [{"processes": ["galera-agent"]}]
    ledger["processes"]["pxc-mysql/mysql"] = {
        "holders": ["uid-staged"],
        "releasing": ["uid-staged"],
        "wasRunning": True,
    }
    giving_back = holders_in({HOLDS_ANNOTATION: json.dumps(ledger)})
    assert giving_back.stages_of("uid-staged") == 2


def test_the_board_wakes_the_workers_when_a_level_moves() -> None:
    woken: list[tuple[str, str]] = []
    board = OutcomeBoard(stage_moved=lambda namespace, name: woken.append((namespace, name)))
    board.report("ns", "s", "p0", record(0))
    board.report("ns", "s", "p0", replace(record(0), message="still stopping"))
    assert woken == [("ns", "s")], "a new message alone opens no gate"
    board.report("ns", "s", "p0", record(1))
    board.report("ns", "s", "p0", record(1, state=PodState.FAILED))
    board.report("ns", "s", "p0", None)
    assert len(woken) == 4
    board.report("ns", "t", "p0", PodRecord(uid="u", state=PodState.SUSPENDED, mode=Mode.SUSPEND, generation=1))
    assert len(woken) == 4, "an unstaged suspension's outcomes wake nobody"


def test_the_status_names_the_current_stage() -> None:
    assert stage_status(3, True, [1, 2]).summary == "2/3 Stopping"
    assert stage_status(3, True, [3, 3]).summary == "3/3 Stopped"
    assert stage_status(3, True, []).summary == "1/3 Stopping"
    assert stage_status(3, False, [3, 2]).summary == "3/3 Starting"
    assert stage_status(3, False, [1, 0]).summary == "1/3 Starting"
    assert stage_status(3, False, [0, 0]).summary == "1/3 Started"


def test_build_status_shows_the_stage_and_never_done_before_every_stage() -> None:
    targets = [pod("database-0"), pod("database-1")]
    records = {"database-0": record(3, state=PodState.SUSPENDED), "database-1": record(1)}
    intent = Intent(Mode.SUSPEND, Reason.SUSPEND_REQUESTED)
    status = build_status(spec(), 1, intent, targets, records, ProcessSuspensionStatus(), NOW)
    assert status.stage is not None and status.stage.summary == "2/3 Stopping"
    assert status.summary == "1/2"
    ready = next(c for c in status.conditions if c.type == "Ready")
    assert ready.status == "False" and "stage 2/3 Stopping" in ready.message
    plain = ProcessSuspensionSpec.model_validate({"instanceGroup": "database"})
    assert build_status(plain, 1, intent, targets, records, ProcessSuspensionStatus(), NOW).stage is None
