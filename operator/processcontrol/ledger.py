"""The hold ledger: what this operator stopped in a pod, for whom, and what to give back.

It lives on the pod itself, as the annotation `processcontrol.dev/holds` (JSON). Every STOP and START is decided
from it and written there before it is sent: a STOP's hold (with each process's state before the first hold), a
START's `releasing` mark. `seq` counts those writes, and each go-ahead names the one it was decided from. So it
survives operator restarts, moves with the pod (a pod that is gone holds nothing) and scales with pods, not with
the size of a suspension's status. A person reads it with `kubectl get pod -o yaml`.

    {"v": 1, "seq": 4, "epoch": 3,
     "holds": {"<suspension uid>": {"name": "restore-db", "jobs": [], "processes": [], "container": "c",
                                    "since": "2026-12-01T10:00:00Z", "verifiedRestarts": 0}},
     "processes": {"pxc-mysql/mysql": {"holders": ["<suspension uid>"], "wasRunning": true}}}

A staged suspension's hold lists the stages it has taken so far (`stages`, each a jobs/processes filter; the hold
covers a process one of them selects), and a stage being given back marks its processes `releasing` for that
holder (`processes.<key>.releasing`) while the hold keeps the earlier stages: `release_stages`.

It evolves within one `v`: fields an older reader does not know are kept when it writes and ignored when it reads,
so only additions whose absence reads as the old meaning are made that way. A change an older operator would
misread bumps `v`; an operator that meets a newer `v` acts on nothing there (`LedgerTooNew`).

Everything here is pure: the pod worker reads, transforms and writes ledgers; nothing here does I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from processcontrol.api import GROUP
from processcontrol.api.models import BOSH_NAME_MAX, BOSH_NAME_PATTERN, MAX_STAGES, BoshName, DnsLabel, Timestamp
from processcontrol.bounded import bounded
from processcontrol.exceptions import LedgerError, LedgerTooNew

HOLDS_ANNOTATION = f"{GROUP}/holds"
# The ledger format this operator writes and understands.
LEDGER_VERSION = 1

# Bounds of what is read (the annotation is the operator's alone, by the admission policy, but a ledger is parsed
# before anything is known of it): no larger than the API server lets all annotations of a pod be together, so every
# ledger this operator can write it can read; as many processes as one report of the in-pod script may name.
MAX_LEDGER_CHARS = 256 * 1024
MAX_HOLDS = 64
MAX_PROCESSES = 4096
# How much of a ledger's validation errors a message quotes (a forged ledger made log lines of 1.45 MB).
ERROR_LIMIT = 300
# A suspension's uid (the API server makes UUIDs; tests and other servers use other words of this shape).
Uid = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=64)]
_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_BOSH = re.compile(BOSH_NAME_PATTERN)


class _LedgerModel(BaseModel):
    # extra="allow": what a newer operator added within this `v` survives this one's writes.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True)


class HoldStage(_LedgerModel):
    """One stage a staged hold has taken: its filter, as the suspension's spec has it."""

    jobs: tuple[BoshName, ...] = Field(default=(), max_length=64)
    processes: tuple[BoshName, ...] = Field(default=(), max_length=64)

    def covers(self, job: str, process: str) -> bool:
        """Whether the stage's filter selects this socket."""
        return (not self.jobs or job in self.jobs) and (not self.processes or process in self.processes)


class Hold(_LedgerModel):
    """One suspension's hold on a pod: its name (for people and events) and the filter it was taken with."""

    name: Annotated[str, StringConstraints(max_length=253)]
    jobs: tuple[BoshName, ...] = Field(default=(), max_length=64)
    processes: tuple[BoshName, ...] = Field(default=(), max_length=64)
    container: DnsLabel | None = None  # where its STOP was sent; its START goes there too
    # The pod's container restart count when the stop was last verified; None until then. After an operator
    # restart a hold whose restarts still match is known to be in force without an exec (no status flap).
    verified_restarts: int | None = Field(default=None, ge=0)
    # The restart count of each targeted process's container when the hold was taken: restarts since then are
    # restarts under suspension (a probe the stopped process fails, most likely).
    restart_base: dict[DnsLabel, Annotated[int, Field(ge=0)]] = Field(default_factory=dict, max_length=MAX_PROCESSES)
    # Processes its filter selects that it leaves running (probes: Skip), as job/process.
    skipped: tuple[str, ...] = Field(default=(), max_length=MAX_PROCESSES)
    # When the hold was first written here: a `duration` runs from the first hold on any pod.
    since: Timestamp | None = None
    # Being given back: its START is due or on its way. A releasing hold never counts as in force.
    releasing: bool = False
    # Of a staged suspension: the stages taken here so far, in order (its jobs/processes are empty). An older
    # operator ignores them, and takes the hold for one on every process: it stops no more than the ledger names.
    stages: tuple[HoldStage, ...] = Field(default=(), max_length=MAX_STAGES)

    @model_validator(mode="after")
    def _skipped_are_keys(self) -> Hold:
        bad = [key for key in self.skipped if not is_process_key(key)]
        if bad:
            raise ValueError(f"skipped {bounded(repr(bad[0]), 80)} is not job/process of BOSH names")
        return self

    def covers(self, job: str, process: str) -> bool:
        """Whether the hold's filter selects this socket (empty filter = everything; a staged hold: a stage it
        has taken selects it)."""
        if self.stages and not any(stage.covers(job, process) for stage in self.stages):
            return False
        return (not self.jobs or job in self.jobs) and (not self.processes or process in self.processes)


class HeldProcess(_LedgerModel):
    """One process this operator stopped: who holds it, and whether it ran before the first hold."""

    holders: tuple[Uid, ...] = Field(max_length=MAX_HOLDS)
    was_running: bool
    # Holders giving back this process alone (its stage), not their whole hold: for them it waits for its START
    # as under a releasing hold. An older operator ignores it and keeps the process stopped until the hold goes.
    releasing: tuple[Uid, ...] = Field(default=(), max_length=MAX_HOLDS)

    def gives_back(self, uid: str, ledger: Ledger) -> bool:
        """Whether this holder is giving the process back: its whole hold, or this process's stage."""
        return uid in self.releasing or ledger.holds[uid].releasing


class Ledger(_LedgerModel):
    """Every hold on one pod."""

    v: int = LEDGER_VERSION
    seq: int = Field(default=0, ge=0)  # bumped by every write a go-ahead is decided from
    # The leader's term (its Lease epoch) at the last write: a leader never writes over a newer one. Absent (0):
    # written by an operator from before leader election, which any term may write over.
    epoch: int = Field(default=0, ge=0)
    holds: dict[Uid, Hold] = Field(default_factory=dict, max_length=MAX_HOLDS)
    processes: dict[str, HeldProcess] = Field(default_factory=dict, max_length=MAX_PROCESSES)

    @property
    def empty(self) -> bool:
        """Nothing held: the annotation can go."""
        return not self.holds and not self.processes

    @model_validator(mode="after")
    def _holders_are_holds(self) -> Ledger:
        for key, entry in self.processes.items():
            if not is_process_key(key):
                raise ValueError(f"process key {bounded(repr(key), 80)} is not job/process of BOSH names")
            unknown = [uid for uid in entry.holders if uid not in self.holds]
            if unknown or not entry.holders:
                raise ValueError(f"process {key} is held by {unknown[:3] or 'nobody'}, which holds nothing here")
            if not set(entry.releasing) <= set(entry.holders):
                raise ValueError(f"process {key} is given back by a suspension that does not hold it")
        return self

    def in_force(self, uid: str) -> bool:
        """Whether the suspension holds something here that is not being given back."""
        hold = self.holds.get(uid)
        return hold is not None and not hold.releasing

    def held_by(self, uid: str) -> list[tuple[str, str]]:
        """The (job, process) pairs this suspension holds here (not those of a stage it is giving back)."""
        return [
            split_key(key)
            for key, entry in self.processes.items()
            if uid in entry.holders and uid not in entry.releasing
        ]


def process_key(job: str, process: str) -> str:
    """The ledger's key of a socket; BOSH names never contain `/`."""
    return f"{job}/{process}"


def split_key(key: str) -> tuple[str, str]:
    """The (job, process) of a ledger key (every key of a ledger read is one: `is_process_key`)."""
    job, _, process = key.partition("/")
    return job, process


def is_process_key(key: str) -> bool:
    """`job/process`, both BOSH names: what the ledger keys processes by."""
    job, slash, process = key.partition("/")
    return bool(slash) and all(len(name) <= BOSH_NAME_MAX and _BOSH.fullmatch(name) for name in (job, process))


def parse_ledger(annotations: Mapping[str, str] | None) -> Ledger:
    """The pod's ledger; absent means empty. A ledger that cannot be read raises `LedgerError`: acting on a
    guess could start what someone else stopped or forget what we stopped."""
    raw = (annotations or {}).get(HOLDS_ANNOTATION)
    if not raw:
        return Ledger()
    if len(raw) > MAX_LEDGER_CHARS:
        raise LedgerError(f"annotation {HOLDS_ANNOTATION} has {len(raw)} characters, more than a hold ledger has")
    try:
        data = json.loads(raw)
        version = data.get("v") if isinstance(data, dict) else None
        if isinstance(version, int) and version > LEDGER_VERSION:
            raise LedgerTooNew(
                f"annotation {HOLDS_ANNOTATION} has format v{bounded(str(version), 20)}; this operator knows "
                f"v{LEDGER_VERSION} and acts on nothing in this pod until a newer operator runs"
            )
        ledger = Ledger.model_validate(data)
    except ValidationError as error:
        raise LedgerError(f"annotation {HOLDS_ANNOTATION} is not a valid hold ledger: {_summary(error)}") from error
    except (ValueError, RecursionError) as error:
        why = bounded(str(error), ERROR_LIMIT)
        raise LedgerError(f"annotation {HOLDS_ANNOTATION} is not a valid hold ledger: {why}") from error
    if ledger.v < LEDGER_VERSION:
        raise LedgerError(f"annotation {HOLDS_ANNOTATION} has format v{ledger.v}, which no operator wrote")
    return ledger


def _summary(error: ValidationError) -> str:
    """The first problem, and how many there are: pydantic's own text repeats each input (a 175 KB ledger with
    many bad entries made a 1.45 MB message, in the log, the status and an event)."""
    errors = error.errors(include_url=False, include_input=False)
    first = errors[0] if errors else {"loc": (), "msg": str(error)}
    where = ".".join(str(part) for part in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return bounded(f"{where}: {first.get('msg', '')}" if where else str(first.get("msg", "")), ERROR_LIMIT) + more


def dump_ledger(ledger: Ledger) -> str | None:
    """The annotation value; None removes the annotation."""
    if ledger.empty:
        return None
    data = ledger.model_dump(by_alias=True, mode="json")
    # What only staged suspensions use is written only when set: every other ledger stays as it was.
    for fields, key in ((data["holds"].values(), "stages"), (data["processes"].values(), "releasing")):
        for entry in fields:
            if entry.get(key) == []:
                del entry[key]
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


@dataclass(frozen=True)
class Observed:
    """One socket as an exec saw it: was its process running before anything was sent?"""

    job: str
    process: str
    running: bool


def next_seq(ledger: Ledger) -> Ledger:
    """The ledger as a write a go-ahead will be decided from: its `seq` is the go-ahead's."""
    return ledger.model_copy(update={"seq": ledger.seq + 1})


def take_hold(
    ledger: Ledger, uid: str, hold: Hold, observed: Iterable[Observed], *, since: str, assume_running: bool = False
) -> Ledger:
    """Record `uid`'s hold (in force again if it was being given back) and the state of each socket it covers
    before the first hold of it; `assume_running` records every new one as running before (the ledger was lost
    while this operator held them: starting one that was stopped by hand beats leaving one stopped for good).

    A process already held keeps the state from before its first hold: a second suspension must not mistake
    the first one's stop for the process's own state."""
    previous = ledger.holds.get(uid)
    if previous is None:
        taken = hold.model_copy(update={"since": since, "releasing": False, "verified_restarts": None})
    else:
        # More sockets for a hold already taken: it keeps its restart baseline, what it leaves running, and when
        # it began. Taken back from releasing (a `suspend: false` and `true` again before its START went out), it
        # is not verified any more and begins a new run: a duration counts from now, not from the run given up.
        taken = previous.model_copy(
            update={
                "restart_base": {**hold.restart_base, **previous.restart_base},
                "skipped": tuple(sorted({*previous.skipped, *hold.skipped})),
                "since": since if previous.releasing else (previous.since or since),
                "releasing": False,
                "verified_restarts": None if previous.releasing else previous.verified_restarts,
                # A staged hold grows stage by stage; one taken with fewer stages (a gate that dropped meanwhile)
                # takes nothing back.
                "stages": hold.stages if len(hold.stages) > len(previous.stages) else previous.stages,
            }
        )
    processes = dict(ledger.processes)
    for socket in observed:
        if not hold.covers(socket.job, socket.process):
            continue
        key = process_key(socket.job, socket.process)
        entry = processes.get(key)
        if entry is None:
            processes[key] = HeldProcess(holders=(uid,), was_running=socket.running or assume_running)
        elif uid not in entry.holders:
            processes[key] = entry.model_copy(update={"holders": tuple(sorted((*entry.holders, uid)))})
        elif uid in entry.releasing:
            # Its stage was being given back: held again, its state before the first hold unchanged.
            processes[key] = entry.model_copy(update={"releasing": tuple(u for u in entry.releasing if u != uid)})
    return _settled(ledger.model_copy(update={"holds": {**ledger.holds, uid: taken}, "processes": processes}))


def adopt(ledger: Ledger, uid: str, hold: Hold, *, since: str) -> Ledger:
    """A hand-over: `uid` joins the holders of every process held here that its filter covers and it does not
    skip (probes: Skip), with no exec (they are stopped already). Written before the old holds are given back, a
    process covered throughout never runs."""
    held = [Observed(*split_key(key), running=False) for key in ledger.processes if key not in hold.skipped]
    return take_hold(ledger, uid, hold, held, since=since)


def mark_verified(ledger: Ledger, uid: str, restarts: int) -> Ledger:
    """Note that `uid`'s stop was verified at this container restart count."""
    hold = ledger.holds.get(uid)
    if hold is None or hold.releasing or hold.verified_restarts == restarts:
        return ledger
    holds = {**ledger.holds, uid: hold.model_copy(update={"verified_restarts": restarts})}
    return ledger.model_copy(update={"holds": holds})


def begin_release(ledger: Ledger, uids: Iterable[str]) -> Ledger:
    """The write-ahead of giving back: these holds are releasing (never in force again unless taken back). A
    process another hold covers leaves them at once; one that was stopped before its first hold is left stopped;
    the others wait for their START (`to_start`)."""
    leaving = set(uids)
    holds = {
        uid: hold.model_copy(update={"releasing": True, "verified_restarts": None}) if uid in leaving else hold
        for uid, hold in ledger.holds.items()
    }
    return _settled(ledger.model_copy(update={"holds": holds}))


def release_stages(ledger: Ledger, uid: str, keep: int) -> Ledger:
    """The write-ahead of giving back the later stages of a staged hold: it keeps its first `keep` stages (at
    least one: the last goes with `begin_release`, the whole hold), and the processes only the stages given back
    cover are releasing for it. From there on they go as under `begin_release`: one another hold covers leaves
    it at once, one stopped before its first hold is left stopped, the others wait for their START."""
    hold = ledger.holds.get(uid)
    if hold is None or hold.releasing or not 1 <= keep < len(hold.stages):
        return ledger
    kept = hold.model_copy(update={"stages": hold.stages[:keep], "verified_restarts": None})
    processes = {
        key: (
            entry.model_copy(update={"releasing": tuple(sorted({*entry.releasing, uid}))})
            if uid in entry.holders and not kept.covers(*split_key(key))
            else entry
        )
        for key, entry in ledger.processes.items()
    }
    return _settled(ledger.model_copy(update={"holds": {**ledger.holds, uid: kept}, "processes": processes}))


def to_start(ledger: Ledger) -> tuple[tuple[str, str], ...]:
    """The processes whose every holder gives them back: each ran before its first hold and waits for its START."""
    return tuple(split_key(key) for key, entry in sorted(ledger.processes.items()) if _releasing(ledger, entry))


def finish_release(ledger: Ledger, given_back: Iterable[tuple[str, str]]) -> Ledger:
    """These processes got their START (or have no containerrun that could keep them stopped): they leave the
    ledger, and with them every releasing hold that holds nothing any more."""
    done = {process_key(job, process) for job, process in given_back}
    processes = {
        key: entry for key, entry in ledger.processes.items() if key not in done or not _releasing(ledger, entry)
    }
    return _settled(ledger.model_copy(update={"processes": processes}))


def _releasing(ledger: Ledger, entry: HeldProcess) -> bool:
    return all(entry.gives_back(uid, ledger) for uid in entry.holders)


def _settled(ledger: Ledger) -> Ledger:
    """Apply the rules of giving back: a releasing holder leaves every process another hold keeps; a process
    only releasing holds keep goes when it was stopped before the first hold (nothing to start); a releasing hold
    that holds nothing goes."""
    processes: dict[str, HeldProcess] = {}
    for key, entry in sorted(ledger.processes.items()):
        keeping = tuple(uid for uid in entry.holders if not entry.gives_back(uid, ledger))
        if keeping:
            processes[key] = (
                entry if keeping == entry.holders else entry.model_copy(update={"holders": keeping, "releasing": ()})
            )
        elif entry.was_running:
            processes[key] = entry
    named = {uid for entry in processes.values() for uid in entry.holders}
    holds = {uid: hold for uid, hold in ledger.holds.items() if not hold.releasing or uid in named}
    return ledger.model_copy(update={"holds": holds, "processes": processes})


def resume_level(ledger: Ledger, uid: str, starting: bool = False) -> int:
    """A staged hold's level while resuming (reconcile/stages.py): the stages it holds, and one more while the last
    one given back is on its way (its processes releasing for it here, or `starting`: its START sent and not yet
    seen running). A hold that is itself releasing counts what it holds."""
    hold = ledger.holds.get(uid)
    stages = len(hold.stages) if hold is not None else 0
    if hold is not None and hold.releasing:
        return stages
    giving_back = starting or any(uid in entry.releasing for entry in ledger.processes.values())
    return stages + (1 if giving_back else 0)


@dataclass(frozen=True)
class LedgerSummary:
    """What the pod index keeps of a pod's ledger: who holds something there, and whether it can be read."""

    present: bool = False
    readable: bool = True
    # The uids of its holds; of an unreadable ledger, the uids its `holds` names (a deletion waits for those).
    holders: tuple[str, ...] = ()
    # Each staged hold's level here while resuming (resume_level), by uid: what an operator that has just started
    # knows of the pod before its worker reports (giving_back.stage_ready).
    stages: tuple[tuple[str, int], ...] = ()

    def stages_of(self, uid: str) -> int:
        """The suspension's level here as the ledger shows it (0: no staged hold of it)."""
        return next((level for holder, level in self.stages if holder == uid), 0)


def holders_in(annotations: Mapping[str, str] | None) -> LedgerSummary:
    """The pod index's summary of a pod's ledger: parsed, never matched as text. Of a ledger that cannot be read,
    only the keys of a `holds` object that are uids count as its holders: a ledger that merely contains a uid
    somewhere (a name, a broken value) names nobody, and a deletion does not wait for it."""
    raw = (annotations or {}).get(HOLDS_ANNOTATION)
    if not raw:
        return LedgerSummary()
    try:
        ledger = parse_ledger(annotations)
    except LedgerError:
        return LedgerSummary(present=True, readable=False, holders=_claimed(raw))
    stages = tuple((uid, resume_level(ledger, uid)) for uid, hold in sorted(ledger.holds.items()) if hold.stages)
    return LedgerSummary(present=True, holders=tuple(sorted(ledger.holds)), stages=stages)


def _claimed(raw: str) -> tuple[str, ...]:
    if len(raw) > MAX_LEDGER_CHARS:
        return ()
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return ()
    holds = data.get("holds") if isinstance(data, dict) else None
    if not isinstance(holds, dict):
        return ()
    return tuple(sorted(uid for uid in holds if _UID.fullmatch(uid)))[:MAX_HOLDS]


def ledger_patch(ledger: Ledger, label: str) -> dict[str, Any]:
    """The metadata merge patch that writes a ledger and its searchable summary: the label is on a pod while
    this operator keeps some process of it stopped."""
    value = dump_ledger(ledger)
    return {
        "annotations": {HOLDS_ANNOTATION: value},
        "labels": {label: "true" if ledger.processes else None},
    }
