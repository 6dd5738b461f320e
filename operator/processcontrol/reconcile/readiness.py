"""kopf's index readiness, made linear in the number of objects an operator finds at its start.

kopf handles no object before every object it listed at its start is indexed. Each object's worker makes a toggle
in one `ToggleSet(all)` before it indexes the object, drops it after, and then waits for the set to be on. kopf's
ToggleSet (1.45) wakes every waiter of the set at each make and each drop (`Condition.notify_all`), and each of them
takes the lock in turn to look again. With N objects listed that is about N^2 wake-ups before the first handler runs:
3 s at 1,000 pods, 16 s at 2,000 and 25 minutes at 10,000 (bench-scale, `operator_started_s`), the operator acting
on nothing meanwhile (a restarted container's process left running, a deleted suspension not resumed).

`CountingToggleSet` keeps how many of its toggles are on, so its state costs nothing to read, and it wakes its
waiters only when that state changes: the last drop wakes each waiting worker once. A toggle turned on or off by
its owner still wakes every waiter of the condition, because its own waiters share that condition.

`install()` puts it in kopf's place for every ToggleSet kopf makes from then on (the index readiness and the
operator's pause set; both are `all`/`any` sets). It checks first that kopf's ToggleSet is the class this was
written against, with the attributes it uses, and otherwise leaves kopf alone and says so.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

from kopf._cogs.aiokits import aiotoggles

logger = logging.getLogger(__name__)

KOPF_TOGGLE_SET = aiotoggles.ToggleSet
KOPF_TOGGLE = aiotoggles.Toggle


class CountedToggle(aiotoggles.Toggle):
    """A toggle of a CountingToggleSet: turning it keeps the set's count of toggles that are on."""

    def __init__(
        self, owner: CountingToggleSet, state: bool, *, name: str | None, condition: asyncio.Condition
    ) -> None:
        super().__init__(state, name=name, condition=condition)
        self._owner = owner

    async def turn_to(self, state: bool, /) -> None:
        async with self._condition:
            self._owner._turned(self, bool(state))
            self._state = bool(state)
            self._condition.notify_all()


class CountingToggleSet(aiotoggles.ToggleSet):
    """kopf's ToggleSet for `all` or `any`, whose waiters wake only when the set turns on or off (or one of its
    toggles is turned)."""

    def __init__(self, fn: Callable[[Iterable[bool]], bool]) -> None:
        if fn is not all and fn is not any:
            raise ValueError(f"a counting toggle set is for all or any, not {fn!r}")
        super().__init__(fn)
        self._on = 0  # how many of self._toggles are on

    def is_on(self) -> bool:
        if self._fn is all:
            return self._on == len(self._toggles)
        return self._on > 0

    async def make_toggle(self, state: bool = False, /, *, name: str | None = None) -> aiotoggles.Toggle:
        toggle = CountedToggle(self, bool(state), name=name, condition=self._condition)
        async with self._condition:
            was_on = self.is_on()
            self._toggles.add(toggle)
            self._on += toggle.is_on()
            self._notify_if_turned(was_on)
        return toggle

    async def drop_toggle(self, toggle: aiotoggles.Toggle) -> None:
        await self.drop_toggles([toggle])

    async def drop_toggles(self, toggles: Iterable[aiotoggles.Toggle]) -> None:
        async with self._condition:
            was_on = self.is_on()
            for toggle in toggles:
                if toggle in self._toggles:
                    self._toggles.discard(toggle)
                    self._on -= toggle.is_on()
            self._notify_if_turned(was_on)

    def _turned(self, toggle: CountedToggle, state: bool) -> None:
        """Called with the condition held, before the toggle takes its new state."""
        if toggle in self._toggles and toggle.is_on() != state:
            self._on += 1 if state else -1

    def _notify_if_turned(self, was_on: bool) -> None:
        if self.is_on() != was_on:
            self._condition.notify_all()


def install() -> bool:
    """Make kopf build CountingToggleSets; False (and a warning) when kopf's ToggleSet is not the one expected."""
    current = aiotoggles.ToggleSet
    if current is CountingToggleSet:
        return True
    probe = KOPF_TOGGLE_SET(all)
    expected = all(hasattr(probe, attribute) for attribute in ("_condition", "_toggles", "_fn"))
    if current is not KOPF_TOGGLE_SET or not expected or "_state" not in vars(KOPF_TOGGLE(False)):
        logger.warning(
            "kopf's ToggleSet is not the one processcontrol's counting set was written for: left as it is (an "
            "operator that starts with many objects may wait long before it handles any)"
        )
        return False
    aiotoggles.ToggleSet = CountingToggleSet  # type: ignore[misc]
    return True
