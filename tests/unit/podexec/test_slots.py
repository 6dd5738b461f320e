"""Exec slots: a bounded semaphore that serves foreground waiters before background ones."""

from __future__ import annotations

import asyncio

import pytest

from processcontrol.podexec.slots import Slots


async def _queue(slots: Slots, order: list[str], name: str, background: bool) -> None:
    await slots.acquire(background=background)
    order.append(name)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_foreground_waiters_go_first_then_background_each_in_arrival_order() -> None:
    slots = Slots(1)
    await slots.acquire()
    order: list[str] = []
    waiters = [
        asyncio.create_task(_queue(slots, order, name, background=name.startswith("b")))
        for name in ("b1", "f1", "b2", "f2")
    ]
    await _settle()
    assert order == [], "the one slot is taken"
    for _ in waiters:
        slots.release()
        await _settle()
    assert order == ["f1", "f2", "b1", "b2"]
    await asyncio.gather(*waiters)


async def test_a_free_slot_is_taken_at_once_whatever_the_kind() -> None:
    slots = Slots(2)
    async with asyncio.timeout(1):
        await slots.acquire(background=True)
        await slots.acquire()


async def test_a_waiter_cancelled_in_the_queue_loses_no_slot() -> None:
    slots = Slots(1)
    await slots.acquire()
    order: list[str] = []
    gone = asyncio.create_task(_queue(slots, order, "gone", background=False))
    stays = asyncio.create_task(_queue(slots, order, "stays", background=True))
    await _settle()
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    slots.release()
    await stays
    assert order == ["stays"]
    slots.release()
    async with asyncio.timeout(1):
        await slots.acquire()  # the slot came back: nobody waits any more


async def test_a_waiter_cancelled_as_it_is_served_passes_the_slot_on() -> None:
    slots = Slots(1)
    await slots.acquire()
    order: list[str] = []
    first = asyncio.create_task(_queue(slots, order, "first", background=False))
    second = asyncio.create_task(_queue(slots, order, "second", background=False))
    await _settle()
    slots.release()  # serves `first`, which is cancelled before it runs again
    first.cancel()
    await asyncio.gather(first, return_exceptions=True)
    await _settle()
    assert order == ["second"], "the slot went on to the next waiter"
    await second


def test_a_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Slots(0)
