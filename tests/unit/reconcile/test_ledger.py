"""The hold ledger's rules, without a pod: who holds what, and what giving back a hold starts."""

from __future__ import annotations

import json

import pytest

from processcontrol.exceptions import LedgerError
from processcontrol.reconcile.ledger import (
    HOLDS_ANNOTATION,
    Hold,
    Ledger,
    Observed,
    dump_ledger,
    holders_in,
    ledger_patch,
    mark_verified,
    parse_ledger,
    release,
    take_hold,
)

MYSQL = Observed("pxc-mysql", "mysql", True)
AGENT = Observed("pxc-mysql", "galera-agent", True)
ALL = Hold(name="all")
AGENTS = Hold(name="agents", processes=("galera-agent",))


def test_the_first_hold_records_the_state_before_it() -> None:
    ledger = take_hold(Ledger(), "u1", ALL, [MYSQL, Observed("pxc-mysql", "galera-agent", False)])
    assert ledger.processes["pxc-mysql/mysql"].was_running
    assert not ledger.processes["pxc-mysql/galera-agent"].was_running
    # A second suspension sees the agent stopped by the first: that is not the agent's own state.
    later = take_hold(ledger, "u2", AGENTS, [Observed("pxc-mysql", "galera-agent", False), MYSQL])
    assert later.processes["pxc-mysql/galera-agent"].holders == ("u1", "u2")
    assert not later.processes["pxc-mysql/galera-agent"].was_running
    assert later.processes["pxc-mysql/mysql"].holders == ("u1",), "the filter decides what a hold covers"


def test_the_last_hold_to_go_starts_only_what_ran_before_the_first() -> None:
    ledger = take_hold(Ledger(), "u1", ALL, [MYSQL, AGENT])
    ledger = take_hold(ledger, "u2", AGENTS, [AGENT])
    first = release(ledger, ["u1"])
    assert first.to_start == (("pxc-mysql", "mysql"),)
    assert set(first.ledger.holds) == {"u2"}
    assert first.ledger.processes["pxc-mysql/galera-agent"].holders == ("u2",)
    second = release(first.ledger, ["u2"])
    assert second.to_start == (("pxc-mysql", "galera-agent"),)
    assert second.ledger.empty
    assert dump_ledger(second.ledger) is None


def test_a_process_stopped_before_any_hold_is_left_stopped() -> None:
    ledger = take_hold(Ledger(), "u1", ALL, [MYSQL, Observed("pxc-mysql", "galera-agent", False)])
    assert release(ledger, ["u1"]).to_start == (("pxc-mysql", "mysql"),)


def test_verification_is_noted_and_a_new_filter_forgets_it() -> None:
    ledger = mark_verified(take_hold(Ledger(), "u1", ALL, [MYSQL]), "u1", 3)
    assert ledger.holds["u1"].verified_restarts == 3
    assert take_hold(ledger, "u1", ALL, []).holds["u1"].verified_restarts == 3
    assert take_hold(ledger, "u1", AGENTS, []).holds["u1"].verified_restarts is None


def test_the_annotation_round_trips_and_carries_the_label() -> None:
    ledger = take_hold(Ledger(), "u1", ALL, [MYSQL])
    patch = ledger_patch(ledger, "processcontrol.dev/suspended")
    raw = patch["annotations"][HOLDS_ANNOTATION]
    assert json.loads(raw)["processes"]["pxc-mysql/mysql"] == {"holders": ["u1"], "wasRunning": True}
    assert parse_ledger({HOLDS_ANNOTATION: raw}) == ledger
    assert patch["labels"] == {"processcontrol.dev/suspended": "true"}
    cleared = ledger_patch(Ledger(), "processcontrol.dev/suspended")
    assert cleared == {"annotations": {HOLDS_ANNOTATION: None}, "labels": {"processcontrol.dev/suspended": None}}


@pytest.mark.parametrize("raw", ["{not json", '{"v": 2}', '{"holds": {"u": {}}}', "[]"])
def test_an_unreadable_ledger_is_an_error_not_an_empty_one(raw: str) -> None:
    with pytest.raises(LedgerError, match=HOLDS_ANNOTATION):
        parse_ledger({HOLDS_ANNOTATION: raw})
    assert holders_in({HOLDS_ANNOTATION: raw}) is None
    assert holders_in(None) == ()
