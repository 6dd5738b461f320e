"""Exec slots: at most `size` execs at once, served in arrival order, foreground work before background work.

Background work is a re-check of a settled hold: a look that sends nothing, due every few minutes for every held
pod. With thousands of pods those re-checks alone can fill every slot (10,000 pods, each re-checked every 300 s,
want 33 execs a second); in one first-come queue a container restart's new STOP, or a whole suspension's STARTs,
would then wait behind thousands of them. Here they wait only behind each other.
"""

from __future__ import annotations

import asyncio
import collections


class Slots:
    """A semaphore whose waiters are served foreground first, then background, each in arrival order."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._free = size
        self._foreground: collections.deque[asyncio.Future[None]] = collections.deque()
        self._background: collections.deque[asyncio.Future[None]] = collections.deque()

    async def acquire(self, *, background: bool = False) -> None:
        # A free slot means nobody waits: a release hands its slot to a waiter before it frees one.
        if self._free > 0:
            self._free -= 1
            return
        served: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._background if background else self._foreground).append(served)
        try:
            await served
        except asyncio.CancelledError:
            if served.done() and not served.cancelled():
                self.release()  # served as it was cancelled: the slot goes to the next waiter, not lost
            raise

    def release(self) -> None:
        for queue in (self._foreground, self._background):
            while queue:
                served = queue.popleft()
                if not served.done():  # a cancelled waiter stays queued until here
                    served.set_result(None)
                    return
        self._free += 1
