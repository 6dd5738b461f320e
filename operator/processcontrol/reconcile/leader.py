"""Two replicas, one actor: leader election on a coordination.k8s.io/v1 Lease, and the fence every go-ahead passes.

A replica takes the Lease when it is free, is its own (a restarted container of the same pod), or has not changed
for its lease duration as this replica watched it; it bumps the epoch annotation in the same resourceVersion-guarded
update, so every term has a number of its own, which every ledger write carries (ledger_writer.py). The leader
renews every retry period; one that could not renew within its renew deadline, or finds the Lease taken or its
epoch changed, stops acting at once: `lost` exits the process, as controller-runtime does, and the kubelet starts it
again as a standby. Until it leads a replica keeps kopf's watches and indexes warm and runs no pod worker, no status
daemon and no deletion: it sends no exec and writes nothing of ours.

The fence (docs/architecture.md, "Two replicas, one actor", has the timing argument): a go-ahead is written only
when a renewal sent after its exec's look came back succeeded and the term is still valid by the monotonic clock;
a new leader acts only once window + send grace have passed since the Lease last changed under the old one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from processcontrol.api import GROUP
from processcontrol.api.timestamps import parse_time
from processcontrol.exceptions import ApiError, Conflict, NotFound
from processcontrol.reconcile import metrics

logger = logging.getLogger(__name__)

EPOCH_ANNOTATION = f"{GROUP}/epoch"
# A new leader waits this long beyond window + send grace after the old leader's last renewal it saw: the pod's
# clock, ours and the API server's may run at slightly different rates, and the script reads its clock in 10 ms.
TAKEOVER_MARGIN_S = 1.0
# At first sight a Lease's age is judged by its renewTime against our wall clock (so that a single replica does not
# wait a lease duration at start when its predecessor is long gone): counted this much younger than it looks.
CLOCK_SKEW_S = 1.0
# Where a pod's ServiceAccount namespace is mounted: the operator's own namespace.
IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
DEFAULT_NAMESPACE = "processcontrol-system"


class LeaseApi(Protocol):
    """The three Lease calls election makes (KubeClient has them; the unit tests fake them)."""

    async def get_lease(self, namespace: str, name: str) -> dict[str, Any]: ...
    async def create_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]: ...
    async def replace_lease(self, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]: ...


class State(StrEnum):
    """Where this replica is in its one life: it leads at most once (a lost term ends the process)."""

    STANDBY = "standby"
    HELD = "held"  # the Lease is ours; acting waits for the old term's last sends
    LEADING = "leading"
    RELEASED = "released"  # shutting down: gave the Lease back
    LOST = "lost"


def _micro_time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseRecord:
    """What election reads of a Lease."""

    holder: str
    epoch: int
    renew_time: datetime | None
    acquire_time: datetime | None
    duration_s: float | None
    transitions: int
    resource_version: str

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> LeaseRecord:
        """The record of a Lease as the API returns it (camelCase JSON); what cannot be read counts as absent."""
        metadata = body.get("metadata") or {}
        spec = body.get("spec") or {}
        epoch_text = str((metadata.get("annotations") or {}).get(EPOCH_ANNOTATION) or "0")
        duration = spec.get("leaseDurationSeconds")
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            epoch=int(epoch_text) if epoch_text.isdigit() else 0,
            renew_time=_time(spec.get("renewTime")),
            acquire_time=_time(spec.get("acquireTime")),
            duration_s=float(duration) if isinstance(duration, int | float) and duration > 0 else None,
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str(metadata.get("resourceVersion") or ""),
        )


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        return parse_time(value)
    except ValueError:
        return None


def lease_namespace(configured: str) -> str:
    """The Lease's namespace: the setting, else the pod's own namespace, else processcontrol-system."""
    if configured:
        return configured
    with contextlib.suppress(OSError), open(IN_CLUSTER_NAMESPACE) as file:
        own = file.read().strip()
        if own:
            return own
    return DEFAULT_NAMESPACE


def leader_identity(configured: str) -> str:
    """This replica's name in the Lease: the setting, else the host name (in a pod, the pod's name)."""
    return configured or socket.gethostname()


def exit_now(why: str) -> None:
    """A leader that lost its term stops acting at once: nothing of it may run on (no cleanup, which would write),
    and the kubelet starts it again as a standby."""
    logger.critical(f"leadership lost: {why}; exiting so that nothing more is done")
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    for handler in logging.getLogger().handlers:
        with contextlib.suppress(Exception):
            handler.flush()
    os._exit(1)


Announce = Callable[[Mapping[str, Any], str], None]  # an event on the Lease: (its body, the message)


class Leadership:
    """This replica's side of the election, and the fence of its go-aheads (pods.Fence)."""

    def __init__(
        self,
        api: LeaseApi | None,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration_s: float,
        renew_deadline_s: float,
        retry_period_s: float,
        last_send_s: float,
        lost: Callable[[str], None] = exit_now,
        announce: Announce | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration_s = lease_duration_s
        self.renew_deadline_s = renew_deadline_s
        self.retry_period_s = retry_period_s
        # How long after its look an exec may still send (go-ahead window + send grace).
        self.last_send_s = last_send_s
        self._lost = lost
        self._announce = announce
        self.clock = clock
        self.wall = wall
        self.state = State.STANDBY
        self.epoch = 0
        self.since: datetime | None = None  # when this term began (the Lease's acquireTime)
        self.leading = asyncio.Event()
        self._on_lead: list[Callable[[], None]] = []
        self._record: dict[str, Any] | None = None  # the Lease as last written by us
        self._renewed_at = -math.inf  # monotonic: when the last successful renewal was sent
        self._renewal = asyncio.Event()  # set (and replaced) when a renewal ends
        self._kick = asyncio.Event()
        self._seen: tuple[object, ...] | None = None
        self._seen_at = 0.0  # monotonic: when the Lease was seen as it is now (back-dated at first sight)
        self._act_at = 0.0  # monotonic: this term acts from then on
        # Go-aheads written whose exec has not reported yet: token -> until when it may still act (monotonic).
        self._in_flight: dict[int, float] = {}
        self._tokens = itertools.count()
        self._reported = asyncio.Event()  # set (and replaced) when an exec in flight reports

    @classmethod
    def solo(cls) -> Leadership:
        """Leading from the start, with no Lease: for unit tests that run workers without an API."""
        solo = cls(None, "", "", "solo", lease_duration_s=15, renew_deadline_s=10, retry_period_s=2, last_send_s=15)
        solo.state = State.LEADING
        solo._renewed_at = math.inf
        solo.leading.set()
        return solo

    # What the rest of the operator asks --------------------------------------------------------------------

    @property
    def is_leading(self) -> bool:
        """This replica acts: it leads, and its term has not run out."""
        return self.state is State.LEADING and self.valid()

    def valid(self) -> bool:
        """The term still holds by the monotonic clock: a renewal succeeded within the renew deadline."""
        return self.state is State.LEADING and self.clock() < self._renewed_at + self.renew_deadline_s

    def on_lead(self, callback: Callable[[], None]) -> None:
        """Call this once this replica starts to act (at once if it does already)."""
        self._on_lead.append(callback)
        if self.state is State.LEADING:
            callback()

    async def wait_leading(self) -> None:
        """Until this replica acts."""
        await self.leading.wait()

    async def renewed_after(self, monotonic: float) -> bool:
        """Whether a renewal sent after this moment succeeded (asking for one at once): a standby cannot have taken
        the Lease then before a lease duration from now. False when the term ended meanwhile."""
        if self.api is None:
            return self.valid()
        while self.valid():
            if self._renewed_at >= monotonic:
                return True
            ended = self._renewal
            self._kick.set()
            await ended.wait()
        return False

    def may_send(self) -> bool:
        """Checked as the go-ahead is written: the term holds now."""
        return self.valid()

    def sent(self, quiet_after: float) -> int:
        """A go-ahead was written; its exec may act until `quiet_after` (monotonic), unless it reports before."""
        token = next(self._tokens)
        self._in_flight[token] = quiet_after
        return token

    def reported(self, token: int) -> None:
        """That go-ahead's exec ended with its report: it can act no more."""
        if self._in_flight.pop(token, None) is not None:
            reported, self._reported = self._reported, asyncio.Event()
            reported.set()

    def _quiet_left(self) -> float:
        """How long a go-ahead already written may still act: until each exec in flight reported, or its window and
        send grace ran out (an exec that timed out or lost its stream stays in doubt until then)."""
        now = self.clock()
        self._in_flight = {token: until for token, until in self._in_flight.items() if until > now}
        return max(self._in_flight.values(), default=now) - now

    def fenced(self, epoch: int, where: str) -> None:
        """A ledger of a newer term was met: another replica leads now, so this one is stale and stops."""
        if epoch > self.epoch:
            self._lose(f"{where} was written in epoch {epoch}, after this replica's epoch {self.epoch}")

    # The election --------------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Take the Lease, wait for the old term's last sends, lead, and renew until the process ends."""
        if self.api is None:
            return
        await self._acquire()
        keeper = asyncio.create_task(self._keep(), name="lease renewal")
        try:
            quiet = self._act_at - self.clock()
            if quiet > 0:
                logger.info(f"leader election: waiting {quiet:.1f}s for the previous leader's last sends")
                await asyncio.sleep(quiet)
            if self.state is State.HELD and self.valid_held():
                self._lead()
            await keeper
        finally:
            keeper.cancel()

    def valid_held(self) -> bool:
        return self.clock() < self._renewed_at + self.renew_deadline_s

    def _lead(self) -> None:
        self.state = State.LEADING
        self.leading.set()
        metrics.LEADER.set(1)
        metrics.LEADER_EPOCH.set(self.epoch)
        since = _micro_time(self.since) if self.since else "now"
        message = f"{self.identity} leads (epoch {self.epoch}) since {since}"
        logger.info(f"leader election: {message}")
        if self._announce is not None and self._record is not None:
            self._announce(self._record, message)
        for callback in self._on_lead:
            callback()

    def _observe(self, record: LeaseRecord) -> None:
        """Note when the Lease was first seen as it is now; at first sight, back-dated by its renewTime's age (less
        a clock-skew allowance) so that a Lease long expired is taken at once."""
        key = (record.holder, record.epoch, record.renew_time, record.resource_version)
        if key == self._seen:
            return
        now = self.clock()
        back = 0.0
        if self._seen is None and record.renew_time is not None:
            back = max(0.0, (self.wall() - record.renew_time).total_seconds() - CLOCK_SKEW_S)
        self._seen = key
        self._seen_at = now - back

    async def _acquire(self) -> None:
        assert self.api is not None
        while True:
            try:
                body: dict[str, Any] | None = await self.api.get_lease(self.namespace, self.name)
            except NotFound:
                body = None
            except ApiError as error:
                logger.warning(f"leader election: cannot read lease {self.namespace}/{self.name}: {error}")
                await asyncio.sleep(self.retry_period_s)
                continue
            sent = self.clock()
            if body is None:
                # Nobody ever held it: nothing of an older term can still act.
                new = self._body(None, epoch=1, acquired=True, transitions=0)
                try:
                    created = await self.api.create_lease(self.namespace, new)
                except Conflict:
                    continue  # another replica created it first: read it
                except ApiError as error:
                    logger.warning(f"leader election: cannot create lease {self.namespace}/{self.name}: {error}")
                    await asyncio.sleep(self.retry_period_s)
                    continue
                self._held(created, sent, act_at=sent)
                return
            record = LeaseRecord.of(body)
            self._observe(record)
            duration = record.duration_s or self.lease_duration_s
            expired = self.clock() >= self._seen_at + duration
            if record.holder in ("", self.identity) or expired:
                transitions = record.transitions + (0 if record.holder in ("", self.identity) else 1)
                new = self._body(body, epoch=record.epoch + 1, acquired=True, transitions=transitions)
                try:
                    taken = await self.api.replace_lease(self.namespace, new)
                except Conflict:
                    continue  # someone else changed it first: look again
                except ApiError as error:
                    logger.warning(f"leader election: cannot take lease {self.namespace}/{self.name}: {error}")
                    await asyncio.sleep(self.retry_period_s)
                    continue
                # Given back (holder empty): its leader waited for its own last sends before it let go. Otherwise
                # the old term's execs may act until window + grace after its last renewal, which was no later
                # than when we saw the Lease as it was last.
                act_at = sent if record.holder == "" else self._seen_at + self.last_send_s + TAKEOVER_MARGIN_S
                self._held(taken, sent, act_at=act_at)
                if record.holder and record.holder != self.identity:
                    logger.info(f"leader election: took the Lease over from {record.holder} (epoch {record.epoch})")
                return
            await asyncio.sleep(self.retry_period_s)

    def _held(self, body: dict[str, Any], sent: float, act_at: float) -> None:
        record = LeaseRecord.of(body)
        self._record = body
        self.epoch = record.epoch
        self.since = record.acquire_time
        self._renewed_at = sent
        self._act_at = act_at
        self.state = State.HELD

    def _body(
        self, current: Mapping[str, Any] | None, *, epoch: int, acquired: bool, transitions: int | None = None
    ) -> dict[str, Any]:
        """The Lease as this replica writes it: ours, renewed now (and acquired now, for a new term)."""
        now = _micro_time(self.wall())
        metadata = dict((current or {}).get("metadata") or {"name": self.name, "namespace": self.namespace})
        metadata.pop("managedFields", None)
        metadata["annotations"] = {**(metadata.get("annotations") or {}), EPOCH_ANNOTATION: str(epoch)}
        spec = dict((current or {}).get("spec") or {})
        spec.update(
            holderIdentity=self.identity,
            leaseDurationSeconds=max(1, math.ceil(self.lease_duration_s)),
            renewTime=now,
        )
        if acquired:
            spec["acquireTime"] = now
        if transitions is not None:
            spec["leaseTransitions"] = transitions
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    async def _keep(self) -> None:
        """Renew every retry period, or at once when a go-ahead waits for a renewal."""
        while self.state in (State.HELD, State.LEADING):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.retry_period_s):
                    await self._kick.wait()
            self._kick.clear()
            await self._renew()

    async def _renew(self) -> None:
        assert self.api is not None
        assert self._record is not None
        try:
            while self.state in (State.HELD, State.LEADING):
                left = self._renewed_at + self.renew_deadline_s - self.clock()
                if left <= 0:
                    self._lose(f"could not renew the Lease within {self.renew_deadline_s:g}s")
                    return
                sent = self.clock()
                body = self._body(self._record, epoch=self.epoch, acquired=False)
                try:
                    async with asyncio.timeout(left):
                        written = await self.api.replace_lease(self.namespace, body)
                except TimeoutError:
                    continue  # the deadline check above ends it
                except NotFound:
                    self._lose(f"lease {self.namespace}/{self.name} was deleted")
                    return
                except Conflict:
                    if not await self._reread(left):
                        return
                    continue
                except ApiError as error:
                    logger.warning(f"leader election: renewal failed, trying again: {error}")
                    await asyncio.sleep(min(self.retry_period_s / 4, max(0.0, left - 0.01)))
                    continue
                self._record = written
                self._renewed_at = sent
                return
        finally:
            ended, self._renewal = self._renewal, asyncio.Event()
            ended.set()

    async def _reread(self, left: float) -> bool:
        """Someone else wrote the Lease: still ours if it names us and our epoch (a label added by hand, say)."""
        assert self.api is not None
        try:
            async with asyncio.timeout(left):
                body = await self.api.get_lease(self.namespace, self.name)
        except NotFound:
            self._lose(f"lease {self.namespace}/{self.name} was deleted")
            return False
        except (ApiError, TimeoutError):
            return True  # the deadline decides
        record = LeaseRecord.of(body)
        if record.holder != self.identity or record.epoch != self.epoch:
            self._lose(f"the Lease is held by {record.holder or 'nobody'} (epoch {record.epoch}) now")
            return False
        self._record = body
        return True

    def _lose(self, why: str) -> None:
        if self.state in (State.LOST, State.RELEASED):
            return
        self.state = State.LOST
        self.leading.clear()
        metrics.LEADER.set(0)
        ended, self._renewal = self._renewal, asyncio.Event()
        ended.set()
        self._lost(why)

    def step_down(self) -> bool:
        """On shutdown: act no more (no go-ahead, ledger or status write from now on) while the Lease is still ours,
        so that the execs in flight can end and the Lease be given back. False when this replica did not hold it."""
        if self.api is None or self.state not in (State.HELD, State.LEADING):
            return False
        self.state = State.RELEASED
        self.leading.clear()
        metrics.LEADER.set(0)
        return True

    async def drain(self) -> None:
        """Until no go-ahead already written can act any more: most execs report within a second or two."""
        while (left := self._quiet_left()) > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._reported.wait()

    async def release(self) -> None:
        """On shutdown, once stepped down and the pod workers are stopped: let the go-aheads still in doubt run out,
        then give the Lease back, so that a standby takes over at its next look instead of after a lease duration."""
        if self.api is None or self.state is not State.RELEASED:
            return
        quiet = self._quiet_left()
        if quiet > 0:
            logger.info(f"leader election: waiting {quiet:.1f}s for the last go-ahead's sends before letting go")
            await self.drain()
        if self._record is None:
            return
        for _ in range(3):
            body = self._body(self._record, epoch=self.epoch, acquired=False)
            body["spec"]["holderIdentity"] = ""
            try:
                await self.api.replace_lease(self.namespace, body)
                logger.info("leader election: gave the Lease back")
                return
            except Conflict:
                # A renewal cut off by the shutdown may still have landed: give back what is still ours.
                try:
                    current = await self.api.get_lease(self.namespace, self.name)
                except ApiError:
                    break
                record = LeaseRecord.of(current)
                if record.holder != self.identity or record.epoch != self.epoch:
                    return
                self._record = current
            except ApiError as error:
                logger.warning(f"leader election: could not give the Lease back (it expires by itself): {error}")
                return
        logger.warning("leader election: could not give the Lease back (it expires by itself)")
