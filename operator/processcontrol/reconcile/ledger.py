"""The hold ledger: what this operator stopped in a pod, for whom, and what to give back.

It lives on the pod itself, as the annotation `processcontrol.dev/holds` (JSON), written before the first STOP and
changed only after a START was delivered. So it survives operator restarts, moves with the pod (a pod that is gone
holds nothing) and scales with pods, not with the size of a suspension's status. A person reads it with
`kubectl get pod -o yaml`.

    {"v": 1,
     "holds": {"<suspension uid>": {"name": "restore-db", "jobs": [], "processes": [], "container": "c",
                                    "verifiedRestarts": 0}},
     "processes": {"pxc-mysql/mysql": {"holders": ["<suspension uid>"], "wasRunning": true}}}

Everything here is pure: the pod worker reads, transforms and writes ledgers; nothing here does I/O.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from processcontrol.api import GROUP
from processcontrol.exceptions import LedgerError

HOLDS_ANNOTATION = f"{GROUP}/holds"


class _LedgerModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Hold(_LedgerModel):
    """One suspension's hold on a pod: its name (for people and events) and the filter it was taken with."""

    name: str
    jobs: tuple[str, ...] = ()
    processes: tuple[str, ...] = ()
    container: str | None = None  # where its STOP was sent; its START goes there too
    # The pod's container restart count when the stop was last verified; None until then. After an operator
    # restart a hold whose restarts still match is known to be in force without an exec (no status flap).
    verified_restarts: int | None = None
    # The restart count of each targeted process's container when the hold was taken: restarts since then are
    # restarts under suspension (a probe the stopped process fails, most likely).
    restart_base: dict[str, int] = Field(default_factory=dict)
    # Processes its filter selects that it leaves running (probes: Skip), as job/process.
    skipped: tuple[str, ...] = ()

    def covers(self, job: str, process: str) -> bool:
        """Whether the hold's filter selects this socket (empty filter = everything)."""
        return (not self.jobs or job in self.jobs) and (not self.processes or process in self.processes)


class HeldProcess(_LedgerModel):
    """One process this operator stopped: who holds it, and whether it ran before the first hold."""

    holders: tuple[str, ...]
    was_running: bool


class Ledger(_LedgerModel):
    """Every hold on one pod."""

    v: Literal[1] = 1
    holds: dict[str, Hold] = Field(default_factory=dict)
    processes: dict[str, HeldProcess] = Field(default_factory=dict)

    @property
    def empty(self) -> bool:
        """Nothing held: the annotation can go."""
        return not self.holds and not self.processes

    def held_by(self, uid: str) -> list[tuple[str, str]]:
        """The (job, process) pairs this suspension holds here."""
        return [split_key(key) for key, entry in self.processes.items() if uid in entry.holders]


def process_key(job: str, process: str) -> str:
    """The ledger's key of a socket; BOSH names never contain `/`."""
    return f"{job}/{process}"


def split_key(key: str) -> tuple[str, str]:
    """The (job, process) of a ledger key."""
    job, _, process = key.partition("/")
    return job, process


def parse_ledger(annotations: Mapping[str, str] | None) -> Ledger:
    """The pod's ledger; absent means empty. A ledger that cannot be read raises `LedgerError`: acting on a
    guess could start what someone else stopped or forget what we stopped."""
    raw = (annotations or {}).get(HOLDS_ANNOTATION)
    if not raw:
        return Ledger()
    try:
        return Ledger.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as error:
        raise LedgerError(f"annotation {HOLDS_ANNOTATION} is not a valid hold ledger: {error}") from error


def dump_ledger(ledger: Ledger) -> str | None:
    """The annotation value; None removes the annotation."""
    if ledger.empty:
        return None
    return json.dumps(ledger.model_dump(by_alias=True, mode="json"), separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class Observed:
    """One socket as an exec saw it: was its process running before anything was sent?"""

    job: str
    process: str
    running: bool


def take_hold(ledger: Ledger, uid: str, hold: Hold, observed: Iterable[Observed]) -> Ledger:
    """Record `uid`'s hold and the state of each socket it covers before the first hold of it.

    A process already held keeps the state from before its first hold: a second suspension must not mistake
    the first one's stop for the process's own state."""
    holds = dict(ledger.holds)
    previous = holds.get(uid)
    holds[uid] = hold.model_copy(update={"verified_restarts": previous.verified_restarts if previous else None})
    if previous is not None:
        # More sockets for a hold already taken: it keeps its restart baseline and what it leaves running.
        holds[uid] = holds[uid].model_copy(
            update={
                "restart_base": {**hold.restart_base, **previous.restart_base},
                "skipped": tuple(sorted({*previous.skipped, *hold.skipped})),
            }
        )
    if previous is not None and (previous.jobs, previous.processes) != (hold.jobs, hold.processes):
        holds[uid] = holds[uid].model_copy(update={"verified_restarts": None})
    processes = dict(ledger.processes)
    for socket in observed:
        if not hold.covers(socket.job, socket.process):
            continue
        key = process_key(socket.job, socket.process)
        entry = processes.get(key)
        if entry is None:
            processes[key] = HeldProcess(holders=(uid,), was_running=socket.running)
        elif uid not in entry.holders:
            processes[key] = entry.model_copy(update={"holders": tuple(sorted((*entry.holders, uid)))})
    return ledger.model_copy(update={"holds": holds, "processes": processes})


def mark_verified(ledger: Ledger, uid: str, restarts: int) -> Ledger:
    """Note that `uid`'s stop was verified at this container restart count."""
    hold = ledger.holds.get(uid)
    if hold is None or hold.verified_restarts == restarts:
        return ledger
    holds = {**ledger.holds, uid: hold.model_copy(update={"verified_restarts": restarts})}
    return ledger.model_copy(update={"holds": holds})


@dataclass(frozen=True)
class Release:
    """What letting go of some holds means for one pod."""

    ledger: Ledger  # the ledger once the STARTs below were delivered
    to_start: tuple[tuple[str, str], ...]  # processes whose last hold goes and that ran before their first


def release(ledger: Ledger, uids: Iterable[str]) -> Release:
    """Drop the holds of `uids`.

    A process still held by anyone stays stopped; one whose last hold goes returns to its state before the
    first hold."""
    dropping = set(uids)
    holds = {uid: hold for uid, hold in ledger.holds.items() if uid not in dropping}
    processes: dict[str, HeldProcess] = {}
    to_start: list[tuple[str, str]] = []
    for key, entry in sorted(ledger.processes.items()):
        job, process = split_key(key)
        holders = tuple(uid for uid in entry.holders if uid not in dropping)
        if holders:
            processes[key] = entry.model_copy(update={"holders": holders})
        elif entry.was_running:
            to_start.append((job, process))
    return Release(
        ledger=ledger.model_copy(update={"holds": holds, "processes": processes}),
        to_start=tuple(to_start),
    )


def holders_in(annotations: Mapping[str, str] | None) -> tuple[str, ...] | None:
    """The suspension uids holding something in a pod, for the pod index; None when the ledger is unreadable."""
    try:
        ledger = parse_ledger(annotations)
    except LedgerError:
        return None
    return tuple(sorted(ledger.holds))


def ledger_patch(ledger: Ledger, label: str) -> dict[str, Any]:
    """The metadata merge patch that writes a ledger and its searchable summary: the label is on a pod while
    this operator keeps some process of it stopped."""
    value = dump_ledger(ledger)
    return {
        "annotations": {HOLDS_ANNOTATION: value},
        "labels": {label: "true" if ledger.processes else None},
    }
