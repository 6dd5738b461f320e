"""The hold ledger's rules, without a pod: who holds what, and what giving back a hold starts."""

from __future__ import annotations

import json

import pytest

from processcontrol.exceptions import LedgerError, LedgerTooNew
from processcontrol.ledger import (
    HOLDS_ANNOTATION,
    MAX_LEDGER_CHARS,
    Hold,
    HoldStage,
    Ledger,
    LedgerSummary,
    Observed,
    adopt,
    begin_release,
    dump_ledger,
    finish_release,
    holders_in,
    ledger_patch,
    mark_verified,
    next_seq,
    parse_ledger,
    release_stages,
    take_hold,
    to_start,
)

MYSQL = Observed("pxc-mysql", "mysql", True)
AGENT = Observed("pxc-mysql", "galera-agent", True)
ALL = Hold(name="all")
AGENTS = Hold(name="agents", processes=("galera-agent",))
T0 = "2026-12-01T10:00:00Z"
T1 = "2026-12-01T11:00:00Z"


def hold(ledger: Ledger, uid: str, h: Hold, seen: list[Observed], **kwargs: bool) -> Ledger:
    return take_hold(ledger, uid, h, seen, since=T0, **kwargs)


def release(ledger: Ledger, uids: list[str]) -> tuple[tuple[tuple[str, str], ...], Ledger]:
    """What giving these holds back must START, and the ledger once those STARTs were delivered."""
    releasing = begin_release(ledger, uids)
    due = to_start(releasing)
    return due, finish_release(releasing, due)


def test_the_first_hold_records_the_state_before_it() -> None:
    ledger = hold(Ledger(), "u1", ALL, [MYSQL, Observed("pxc-mysql", "galera-agent", False)])
    assert ledger.processes["pxc-mysql/mysql"].was_running
    assert not ledger.processes["pxc-mysql/galera-agent"].was_running
    assert ledger.holds["u1"].since == T0
    # A second suspension sees the agent stopped by the first: that is not the agent's own state.
    later = hold(ledger, "u2", AGENTS, [Observed("pxc-mysql", "galera-agent", False), MYSQL])
    assert later.processes["pxc-mysql/galera-agent"].holders == ("u1", "u2")
    assert not later.processes["pxc-mysql/galera-agent"].was_running
    assert later.processes["pxc-mysql/mysql"].holders == ("u1",), "the filter decides what a hold covers"


def test_the_last_hold_to_go_starts_only_what_ran_before_the_first() -> None:
    ledger = hold(Ledger(), "u1", ALL, [MYSQL, AGENT])
    ledger = hold(ledger, "u2", AGENTS, [AGENT])
    due, first = release(ledger, ["u1"])
    assert due == (("pxc-mysql", "mysql"),)
    assert set(first.holds) == {"u2"}
    assert first.processes["pxc-mysql/galera-agent"].holders == ("u2",)
    due, second = release(first, ["u2"])
    assert due == (("pxc-mysql", "galera-agent"),)
    assert second.empty
    assert dump_ledger(second) is None


def test_a_process_stopped_before_any_hold_is_left_stopped() -> None:
    ledger = hold(Ledger(), "u1", ALL, [MYSQL, Observed("pxc-mysql", "galera-agent", False)])
    assert release(ledger, ["u1"])[0] == (("pxc-mysql", "mysql"),)


def test_a_releasing_hold_stays_until_its_start_is_delivered() -> None:
    """Issue 22 case 1: a START that was not delivered is not forgotten: the hold and its process stay."""
    ledger = hold(Ledger(), "u1", ALL, [MYSQL, AGENT])
    releasing = begin_release(mark_verified(ledger, "u1", 0), ["u1"])
    assert releasing.holds["u1"].releasing and not releasing.in_force("u1")
    assert releasing.holds["u1"].verified_restarts is None, "a releasing hold never counts as verified"
    assert to_start(releasing) == (("pxc-mysql", "galera-agent"), ("pxc-mysql", "mysql"))
    partly = finish_release(releasing, [("pxc-mysql", "mysql")])  # the agent's START failed
    assert set(partly.holds) == {"u1"} and list(partly.processes) == ["pxc-mysql/galera-agent"]
    assert to_start(partly) == (("pxc-mysql", "galera-agent"),)
    assert finish_release(partly, [("pxc-mysql", "galera-agent")]).empty


def test_a_hold_taken_back_while_releasing_is_in_force_again_and_not_verified() -> None:
    """Issue 22 case 2: suspend: true again after a START that may have landed: a new STOP, never belief."""
    ledger = mark_verified(hold(Ledger(), "u1", ALL, [MYSQL]), "u1", 0)
    again = take_hold(begin_release(ledger, ["u1"]), "u1", ALL, [Observed("pxc-mysql", "mysql", True)], since=T1)
    assert again.in_force("u1") and again.holds["u1"].verified_restarts is None
    assert again.holds["u1"].since == T1, "a new run: a duration counts from it, not from the run given up"
    assert again.processes["pxc-mysql/mysql"].was_running, "the state before the first hold stays"


def test_more_sockets_for_a_hold_in_force_keep_when_it_began() -> None:
    ledger = hold(Ledger(), "u1", AGENTS, [AGENT])
    more = take_hold(ledger, "u1", ALL, [MYSQL, AGENT], since=T1)
    assert more.holds["u1"].since == T0


def test_a_hand_over_covers_the_process_throughout() -> None:
    """Issue 22 case 6: the new holder joins before the old one leaves; nothing is started in between."""
    ledger = hold(Ledger(), "old", ALL, [MYSQL, AGENT])
    handed = begin_release(adopt(ledger, "new", AGENTS, since=T1), ["old"])
    assert to_start(handed) == (("pxc-mysql", "mysql"),), "only what the new one does not cover is started"
    assert handed.processes["pxc-mysql/galera-agent"].holders == ("new",)
    assert handed.processes["pxc-mysql/galera-agent"].was_running
    assert not handed.in_force("old") and handed.in_force("new")


def test_a_lost_ledger_records_what_it_finds_stopped_as_running_before() -> None:
    """Issue 22 case 5: without the ledger, a process this operator stopped must not pass for stopped by hand."""
    ledger = hold(Ledger(), "u1", ALL, [Observed("pxc-mysql", "mysql", False)], assume_running=True)
    assert ledger.processes["pxc-mysql/mysql"].was_running


def test_verification_is_noted_and_kept_for_more_sockets() -> None:
    ledger = mark_verified(hold(Ledger(), "u1", ALL, [MYSQL]), "u1", 3)
    assert ledger.holds["u1"].verified_restarts == 3
    assert hold(ledger, "u1", ALL, []).holds["u1"].verified_restarts == 3


def test_seq_counts_the_writes_go_aheads_are_decided_from() -> None:
    ledger = next_seq(hold(Ledger(), "u1", ALL, [MYSQL]))
    assert ledger.seq == 1 and next_seq(ledger).seq == 2


def test_the_annotation_round_trips_and_carries_the_label() -> None:
    ledger = hold(Ledger(), "u1", ALL, [MYSQL])
    patch = ledger_patch(ledger, "processcontrol.dev/suspended")
    raw = patch["annotations"][HOLDS_ANNOTATION]
    assert json.loads(raw)["processes"]["pxc-mysql/mysql"] == {"holders": ["u1"], "wasRunning": True}
    assert parse_ledger({HOLDS_ANNOTATION: raw}) == ledger
    assert patch["labels"] == {"processcontrol.dev/suspended": "true"}
    cleared = ledger_patch(Ledger(), "processcontrol.dev/suspended")
    assert cleared == {"annotations": {HOLDS_ANNOTATION: None}, "labels": {"processcontrol.dev/suspended": None}}


def test_fields_a_newer_operator_added_survive_a_write() -> None:
    """Issue 22 case 8: within one `v`, unknown fields are kept on write and ignored on read."""
    raw = json.dumps(
        {
            "v": 1,
            "writer": {"build": 7},
            "holds": {"u1": {"name": "all", "phases": [1, 2]}},
            "processes": {"pxc-mysql/mysql": {"holders": ["u1"], "wasRunning": True, "note": "x"}},
        }
    )
    ledger = parse_ledger({HOLDS_ANNOTATION: raw})
    written = json.loads(dump_ledger(mark_verified(ledger, "u1", 0)) or "{}")
    assert written["writer"] == {"build": 7}
    assert written["holds"]["u1"]["phases"] == [1, 2] and written["holds"]["u1"]["verifiedRestarts"] == 0
    assert written["processes"]["pxc-mysql/mysql"]["note"] == "x"


def test_a_newer_format_is_refused_with_its_own_error() -> None:
    with pytest.raises(LedgerTooNew, match="v2"):
        parse_ledger({HOLDS_ANNOTATION: '{"v": 2, "holds": {}}'})


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        '{"holds": {"u": {}}}',
        "[]",
        '{"v": 0}',
        '{"holds": {}, "processes": {"a/b": {"holders": ["ghost"], "wasRunning": true}}}',
        '{"holds": {"u": {"name": "n"}}, "processes": {"nokey": {"holders": ["u"], "wasRunning": true}}}',
    ],
)
def test_an_unreadable_ledger_is_an_error_not_an_empty_one(raw: str) -> None:
    with pytest.raises(LedgerError, match=HOLDS_ANNOTATION):
        parse_ledger({HOLDS_ANNOTATION: raw})
    summary = holders_in({HOLDS_ANNOTATION: raw})
    assert summary.present and not summary.readable
    assert holders_in(None) == LedgerSummary()


def hold_json(**fields: object) -> dict[str, object]:
    return {"name": "n", **fields}


@pytest.mark.parametrize(
    ("ledger", "why"),
    [
        ({"holds": {"u": hold_json()}, "processes": {"a/": {"holders": ["u"], "wasRunning": True}}}, "BOSH"),
        ({"holds": {"u": hold_json()}, "processes": {"a b/c": {"holders": ["u"], "wasRunning": True}}}, "BOSH"),
        ({"holds": {"u": hold_json()}, "processes": {"a/$(x)": {"holders": ["u"], "wasRunning": True}}}, "BOSH"),
        ({"holds": {"u": hold_json()}, "processes": {"a/b/c": {"holders": ["u"], "wasRunning": True}}}, "BOSH"),
        ({"holds": {"u;x": hold_json()}}, "holds"),
        ({"holds": {"": hold_json()}}, "holds"),
        ({"holds": {"u": hold_json(container="Not_A_Container")}}, "container"),
        ({"holds": {"u": hold_json(container="c" * 64)}}, "container"),
        ({"holds": {"u": hold_json(jobs=["-e"])}}, "jobs"),
        ({"holds": {"u": hold_json(skipped=["nokey"])}}, "skipped"),
        ({"holds": {"u": hold_json(restartBase={"c": -1})}}, "restartBase"),
        ({"holds": {"u": hold_json(name="n" * 300)}}, "name"),
        ({"seq": -1}, "seq"),
        ({"holds": {f"u{i}": hold_json() for i in range(65)}}, "holds"),
    ],
)
def test_what_a_ledger_names_is_checked_where_it_is_read(ledger: dict[str, object], why: str) -> None:
    """Issue 27: ledger keys are job/process of BOSH names, holders and holds are uids, containers DNS labels, counts
    bounded: a ledger with anything else is unreadable (nothing is done in that pod), never acted on."""
    with pytest.raises(LedgerError, match=why):
        parse_ledger({HOLDS_ANNOTATION: json.dumps(ledger)})


def test_a_huge_ledger_is_refused_before_it_is_parsed_and_its_error_is_short() -> None:
    """A 175 KB forged ledger made a 1.45 MB log line (pydantic's message repeats every bad input)."""
    processes = {f"j/p{i}": {"holders": ["x" * 40], "wasRunning": "maybe"} for i in range(2500)}
    forged = json.dumps({"holds": {"u": {"name": "n"}}, "processes": processes})
    assert 150_000 < len(forged) < MAX_LEDGER_CHARS
    with pytest.raises(LedgerError) as caught:
        parse_ledger({HOLDS_ANNOTATION: forged})
    assert len(str(caught.value)) < 500, len(str(caught.value))
    assert "more problems" in str(caught.value)
    with pytest.raises(LedgerError, match="more than a hold ledger has"):
        parse_ledger({HOLDS_ANNOTATION: " " * (MAX_LEDGER_CHARS + 1)})


@pytest.mark.parametrize(
    ("raw", "holders"),
    [
        # The uid merely appears: in a name, a value, a broken tail. It names nobody.
        ('{"holds": {"u": {"name": "uid-restore"}}, "processes": 7}', ("u",)),
        ('{"note": "uid-restore", "holds": []}', ()),
        ('{"holds": {"uid-restore": ', ()),
        ("uid-restore", ()),
        # Its `holds` names it: a deletion waits for the ledger to be mended (LedgerUnreadable says so).
        ('{"holds": {"uid-restore": {"name": 5}}}', ("uid-restore",)),
        ('{"holds": {"uid-restore": {}, "not a uid": {}}, "processes": {"x": 1}}', ("uid-restore",)),
    ],
)
def test_the_holders_of_an_unreadable_ledger_are_parsed_never_matched(raw: str, holders: tuple[str, ...]) -> None:
    """Issue 27: an unreadable ledger that merely contained a suspension's uid blocked its deletion for ever."""
    summary = holders_in({HOLDS_ANNOTATION: raw})
    assert (summary.present, summary.readable, summary.holders) == (True, False, holders)


# Staged holds: galera-agent is stage 1, mysql stage 2 (the example's order).
STAGE_AGENT = HoldStage(processes=("galera-agent",))
STAGE_MYSQL = HoldStage(processes=("mysql",))
STAGED_1 = Hold(name="staged", stages=(STAGE_AGENT,))
STAGED_2 = Hold(name="staged", stages=(STAGE_AGENT, STAGE_MYSQL))


def staged() -> Ledger:
    """u1's staged hold, grown stage by stage as a pod worker takes it."""
    first = hold(Ledger(), "u1", STAGED_1, [AGENT, MYSQL])
    return hold(first, "u1", STAGED_2, [AGENT, MYSQL])


def test_a_staged_hold_grows_stage_by_stage_and_keeps_when_it_began() -> None:
    first = take_hold(Ledger(), "u1", STAGED_1, [AGENT, MYSQL], since=T0)
    assert first.held_by("u1") == [("pxc-mysql", "galera-agent")], "only the stages taken are held"
    second = take_hold(first, "u1", STAGED_2, [AGENT, Observed("pxc-mysql", "mysql", True)], since=T1)
    assert sorted(second.held_by("u1")) == [("pxc-mysql", "galera-agent"), ("pxc-mysql", "mysql")]
    assert second.holds["u1"].since == T0
    assert second.holds["u1"].stages == (STAGE_AGENT, STAGE_MYSQL)
    # Taken again with fewer stages (the gate dropped for a new pod): nothing already held is let go.
    again = take_hold(second, "u1", STAGED_1, [AGENT], since=T1)
    assert again.holds["u1"].stages == (STAGE_AGENT, STAGE_MYSQL)
    assert again.processes == second.processes


def test_giving_back_the_last_stage_starts_it_and_keeps_the_rest_held() -> None:
    ledger = staged()
    partial = release_stages(ledger, "u1", 1)
    assert to_start(partial) == (("pxc-mysql", "mysql"),)
    assert partial.in_force("u1"), "the hold keeps its first stage"
    assert partial.held_by("u1") == [("pxc-mysql", "galera-agent")]
    done = finish_release(partial, to_start(partial))
    assert set(done.processes) == {"pxc-mysql/galera-agent"}
    assert done.holds["u1"].stages == (STAGE_AGENT,)
    # The last stage goes with the whole hold, as any hold.
    due, last = release(done, ["u1"])
    assert due == (("pxc-mysql", "galera-agent"),)
    assert last.empty


def test_a_stage_given_back_does_not_start_what_another_suspension_holds() -> None:
    ledger = hold(staged(), "u2", Hold(name="other", processes=("mysql",)), [MYSQL])
    partial = release_stages(ledger, "u1", 1)
    assert to_start(partial) == (), "u2 still holds mysql"
    assert partial.processes["pxc-mysql/mysql"].holders == ("u2",)
    assert partial.processes["pxc-mysql/mysql"].releasing == ()
    # When u2 goes, mysql is started: it ran before its first hold.
    due, after = release(partial, ["u2"])
    assert due == (("pxc-mysql", "mysql"),)
    assert set(after.holds) == {"u1"}


def test_a_stage_stopped_before_the_first_hold_is_left_stopped() -> None:
    ledger = hold(Ledger(), "u1", STAGED_1, [AGENT])
    ledger = hold(ledger, "u1", STAGED_2, [AGENT, Observed("pxc-mysql", "mysql", False)])
    partial = release_stages(ledger, "u1", 1)
    assert to_start(partial) == ()
    assert set(partial.processes) == {"pxc-mysql/galera-agent"}, "nothing to start: mysql leaves the ledger"


def test_a_stage_given_back_stays_until_its_start_is_delivered() -> None:
    partial = release_stages(staged(), "u1", 1)
    undelivered = finish_release(partial, [])
    assert to_start(undelivered) == (("pxc-mysql", "mysql"),)
    assert parse_ledger({HOLDS_ANNOTATION: dump_ledger(undelivered) or ""}) == undelivered, "it survives a restart"


def test_a_stage_taken_back_while_it_was_given_back_is_held_again() -> None:
    partial = release_stages(staged(), "u1", 1)
    again = hold(partial, "u1", STAGED_2, [AGENT, Observed("pxc-mysql", "mysql", False)])
    assert to_start(again) == ()
    assert again.processes["pxc-mysql/mysql"].releasing == ()
    assert again.processes["pxc-mysql/mysql"].was_running, "its state before the first hold is kept"


def test_release_stages_never_gives_back_the_first_stage_or_a_releasing_hold() -> None:
    ledger = staged()
    assert release_stages(ledger, "u1", 0) == ledger
    assert release_stages(ledger, "u1", 2) == ledger
    releasing = begin_release(ledger, ["u1"])
    assert release_stages(releasing, "u1", 1) == releasing


def test_a_ledger_giving_back_a_process_for_a_non_holder_is_refused() -> None:
    ledger = staged()
    raw = json.loads(dump_ledger(ledger) or "")
    raw["processes"]["pxc-mysql/mysql"]["releasing"] = ["u9"]
    with pytest.raises(LedgerError, match="does not hold it"):
        parse_ledger({HOLDS_ANNOTATION: json.dumps(raw)})


def test_a_hand_over_adopts_only_the_stages_taken() -> None:
    ledger = hold(Ledger(), "u1", ALL, [MYSQL, AGENT])
    adopted = begin_release(adopt(ledger, "u2", STAGED_1, since=T0), ["u1"])
    assert to_start(adopted) == (("pxc-mysql", "mysql"),)
    assert adopted.held_by("u2") == [("pxc-mysql", "galera-agent")]
