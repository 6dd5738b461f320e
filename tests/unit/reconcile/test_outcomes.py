"""The OutcomeBoard's memory of a run that ended between two status writes."""

from __future__ import annotations

from processcontrol.reconcile.outcomes import OutcomeBoard


def test_a_run_ended_between_two_status_writes_is_told_once_and_forgotten_with_the_suspension() -> None:
    board = OutcomeBoard()
    assert not board.take_run_ended("kubecf", "restore")
    board.run_ended("kubecf", "restore")
    board.run_ended("kubecf", "restore")  # every event while `suspend: false`, the daemon's own writes too
    assert not board.take_run_ended("kubecf", "other")
    assert board.take_run_ended("kubecf", "restore")
    assert not board.take_run_ended("kubecf", "restore"), "told once: the next run's status keeps its time"
    board.run_ended("kubecf", "restore")
    board.forget("kubecf", "restore")
    assert not board.take_run_ended("kubecf", "restore")
