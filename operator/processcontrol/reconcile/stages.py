"""Ordered stages (`spec.stages`): when a pod may stop, and start again, which stage. The gating is all here.

A staged suspension stops its stages in order across every target pod, and starts them in reverse. A process
belongs to the first stage that selects it (`ProcessSuspensionSpec.stage_of`). Each pod's worker publishes, with
its outcome for the suspension on the OutcomeBoard (`PodRecord.stage`), its **level** there:

- while suspending, how many leading stages are verified stopped in the pod (a container restart, or a process
  started by hand, drops it back to the first stage that runs again);
- while resuming, how many leading stages are not yet verified running again (still held, given back but not
  started yet, or started but not seen running yet).

From the levels of the other pods and its own, a pod's worker decides:

- **Stop**: it may hold stages [0, `hold_gate`): one more than the lowest level of every current target pod (a
  target with no outcome counts 0). So stage k is stopped in a pod only once stage k-1 is verified stopped in
  every target pod. Its own level counts, so a pod never has more than one stage in flight: each STOP exec names
  the processes of exactly one stage (holding.py). A new pod, or a restarted container, starts from its own level
  (0, usually): it stops stage 0, verifies it, then stage 1, and meanwhile no other pod takes a stage it had
  not taken before. The gate limits what is taken, never what is kept: no pod gives back anything for it.
- **Start**: a pod that holds t stages may give back stage t-1 (`may_give_back`) once its own stage t has been
  verified running and no other pod's level is above t, that is, once every later stage is verified running in
  every pod. The last stage goes with the whole hold, as an unstaged hold goes (giving_back.py). A pod whose
  outcome is Failed (it cannot be reached, its START is not delivered, its processes do not come back) does not
  hold the other pods up: a resume never leaves the healthy pods stopped because one pod is broken. That pod
  goes on in its own order, stage by stage, whenever it can. A pod that has not reported yet (the operator has
  just started or taken over) counts the stages its ledger holds, as the pod index has it, until it does. An
  orphan hold (its suspension gone) is given back whole at once: nothing is left to order it by.

When a pod's level (or whether it failed) changes, the board wakes the suspension's pod workers
(`OutcomeBoard.stage_moved`, set by the dispatch), so a gate that opens is acted on at once.

Everything here is pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from processcontrol.api.models import StagePhase, StageStatus


class Outcome(Protocol):
    """What the gates read of a pod's outcome for a suspension (plan.PodRecord)."""

    @property
    def stage(self) -> int | None:
        """Its level (None: not a staged suspension's)."""

    @property
    def suspending(self) -> bool:
        """An outcome of suspending (not of resuming)."""

    @property
    def failed(self) -> bool:
        """The pod failed."""


def suspending_levels(outcomes: Mapping[str, Outcome], pods: Iterable[str]) -> list[int]:
    """The levels of these target pods while suspending: one with no outcome of suspending counts 0 (a new pod,
    or one still giving back an earlier run)."""
    levels = []
    for pod in pods:
        outcome = outcomes.get(pod)
        levels.append(outcome.stage or 0 if outcome is not None and outcome.suspending else 0)
    return levels


def resuming_levels(
    outcomes: Mapping[str, Outcome], but: str | None = None, held: Mapping[str, int] | None = None
) -> list[int]:
    """The levels of every pod with an outcome while resuming, those that failed left out (and `but`, the pod
    asking). A pod not resuming yet counts what it holds. A pod with no outcome yet counts the stages its ledger
    holds (`held`, from the pod index): right after the operator starts, or takes over, no pod gives back a stage
    while another still holds a later one only because that pod's worker has not reported yet."""
    levels = [o.stage or 0 for pod, o in outcomes.items() if pod != but and not o.failed]
    return levels + [taken for pod, taken in (held or {}).items() if pod != but and pod not in outcomes]


def hold_gate(level: int, others: Iterable[int], count: int) -> int:
    """How many stages a pod at this level may hold, given the levels of the other target pods."""
    return min(count, min((level, *others)) + 1)


def may_give_back(held: int, others: Iterable[int]) -> bool:
    """Whether a pod holding `held` stages (its own last stage verified running) may give back the last of them:
    no other pod that has not failed is still at a higher level."""
    return all(level <= held for level in others)


def stage_status(count: int, suspending: bool, levels: Iterable[int]) -> StageStatus:
    """The status's current stage from the levels of the pods (while suspending: every target pod; while
    resuming: every pod that did not fail)."""
    levels = list(levels)
    if suspending:
        lowest = min(levels, default=0)
        index, phase = (count, StagePhase.STOPPED) if lowest >= count else (lowest + 1, StagePhase.STOPPING)
    else:
        highest = max(levels, default=0)
        index, phase = (1, StagePhase.STARTED) if highest <= 0 else (min(highest, count), StagePhase.STARTING)
    return StageStatus(index=index, of=count, phase=phase, summary=f"{index}/{count} {phase.value}")
