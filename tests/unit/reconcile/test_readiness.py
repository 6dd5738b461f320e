"""kopf's index readiness (readiness.py): the operator's ToggleSet behaves as kopf's does, but an operator that finds
N objects at its start wakes its waiting workers O(N) times, not O(N^2)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from types import ModuleType

import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._core.reactor import orchestration

import processcontrol.reconcile.handlers  # noqa: F401  (installs the counting set, as the operator does)
from processcontrol.reconcile import readiness
from processcontrol.reconcile.readiness import KOPF_TOGGLE_SET, CountingToggleSet

SetClass = Callable[[Callable[[Iterable[bool]], bool]], aiotoggles.ToggleSet]
# The name kopf's orchestrator builds its index readiness with, at the operator's start.
KOPF_ORCHESTRATION_TOGGLES: ModuleType = vars(orchestration)["aiotoggles"]
BOTH = pytest.mark.parametrize("toggle_set", [KOPF_TOGGLE_SET, CountingToggleSet], ids=["kopf", "counting"])


async def woken(waiter: asyncio.Task[None]) -> bool:
    """Whether the waiter ends within a moment (every task ready to run has run)."""
    for _ in range(20):
        await asyncio.sleep(0)
    return waiter.done()


def test_the_operator_makes_kopf_build_counting_sets() -> None:
    assert aiotoggles.ToggleSet is CountingToggleSet
    assert KOPF_ORCHESTRATION_TOGGLES.ToggleSet is CountingToggleSet
    assert readiness.install() is True  # again: nothing changes


async def test_an_operator_starting_with_many_objects_wakes_each_worker_a_few_times() -> None:
    """kopf's start, as its watcher and workers do it (queueing.py, processing.py): a toggle per listed object, made
    before its worker starts; each worker indexes its object, drops its toggle and waits for the set to be on. kopf's
    own set makes that about N^2/2 looks at the set's state (45,000 at 300 objects); this one, a few per worker."""
    objects = 300
    indexed: aiotoggles.ToggleSet = KOPF_ORCHESTRATION_TOGGLES.ToggleSet(all)
    looks = 0
    is_on = indexed.is_on

    def counted() -> bool:
        nonlocal looks
        looks += 1
        return is_on()

    indexed.is_on = counted  # type: ignore[method-assign]
    blocker = await indexed.make_toggle(name="orchestration blocker")
    handled: list[int] = []

    async def worker(number: int, toggle: aiotoggles.Toggle) -> None:
        await asyncio.sleep(0)  # the index handlers
        await indexed.drop_toggle(toggle)
        await indexed.wait_for(True)
        handled.append(number)

    workers = []
    for number in range(objects):
        toggle = await indexed.make_toggle(name=f"object {number}")
        workers.append(asyncio.create_task(worker(number, toggle)))
        await asyncio.sleep(0)
    for _ in range(5):
        await asyncio.sleep(0)
    assert not handled, "no worker handles anything before every object is indexed"
    await indexed.drop_toggle(blocker)
    await asyncio.wait_for(asyncio.gather(*workers), 10)

    assert sorted(handled) == list(range(objects))
    assert looks <= 8 * objects, f"{looks} looks at the set's state for {objects} objects"


@BOTH
async def test_an_all_set_is_on_when_every_toggle_is_on(toggle_set: SetClass) -> None:
    toggles = toggle_set(all)
    assert toggles.is_on(), "an empty all-set is on"
    first = await toggles.make_toggle(name="first")
    assert toggles.is_off()
    on = asyncio.create_task(toggles.wait_for(True))
    assert not await woken(on)
    await first.turn_to(True)
    assert await woken(on) and toggles.is_on()

    off = asyncio.create_task(toggles.wait_for(False))
    second = await toggles.make_toggle(False, name="second")
    assert await woken(off) and toggles.is_off()
    on = asyncio.create_task(toggles.wait_for(True))
    await toggles.drop_toggle(second)
    assert await woken(on) and toggles.is_on()
    await first.turn_to(False)
    assert toggles.is_off()
    await toggles.drop_toggles([first, second])  # second: no longer in it
    assert toggles.is_on() and len(toggles) == 0


@BOTH
async def test_an_any_set_is_on_when_one_toggle_is_on(toggle_set: SetClass) -> None:
    toggles = toggle_set(any)
    assert toggles.is_off(), "an empty any-set is off"
    on = asyncio.create_task(toggles.wait_for(True))
    paused = await toggles.make_toggle(True, name="paused")
    assert await woken(on) and toggles.is_on()
    other = await toggles.make_toggle(False, name="other")
    off = asyncio.create_task(toggles.wait_for(False))
    await paused.turn_to(False)
    assert await woken(off) and toggles.is_off()
    await other.turn_to(True)
    await other.turn_to(True)  # twice: counted once
    assert toggles.is_on()
    await toggles.drop_toggle(other)
    assert toggles.is_off()
    await other.turn_to(False)  # dropped: the set does not see it
    assert toggles.is_off() and paused in toggles and other not in toggles


@BOTH
async def test_a_toggle_of_the_set_wakes_its_own_waiters(toggle_set: SetClass) -> None:
    toggles = toggle_set(all)
    toggle = await toggles.make_toggle(name="peering")
    on = asyncio.create_task(toggle.wait_for(True))
    assert not await woken(on)
    await toggle.turn_to(True)
    assert await woken(on)


def test_a_toggle_set_kopf_changed_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class Elsewhere(aiotoggles.ToggleSet):
        pass

    monkeypatch.setattr(aiotoggles, "ToggleSet", Elsewhere)
    assert readiness.install() is False
    assert aiotoggles.ToggleSet is Elsewhere
    assert "left as it is" in caplog.text


def test_only_all_and_any_sets_are_counted() -> None:
    with pytest.raises(ValueError, match="for all or any"):
        CountingToggleSet(lambda states: sum(states) > 1)
