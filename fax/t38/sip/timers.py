"""Time for the SIP stack: RFC 3261 timer values and an injectable timer service.

Everything in the user agent that waits (retransmissions, transaction timeouts, session
refreshes, REGISTER refreshes, the glare back-off) goes through a `Timers` object, so tests
can drive time by hand with `ManualTimers`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class TimerValues:
    """RFC 3261 §17 base timers (seconds): T1 round-trip estimate, T2 cap, T4 lifetime."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def b(self) -> float:
        """Timer B/F/H/J/L/M: 64·T1, a transaction's patience."""
        return 64 * self.t1

    @property
    def d(self) -> float:
        """Timer D: how long a client INVITE transaction absorbs final retransmissions."""
        return max(32.0, self.b)


class TimerHandle(Protocol):
    """A scheduled callback that can be cancelled."""

    def cancel(self) -> None:
        """Do not run the callback."""
        ...


class Timers(Protocol):
    """A monotonic clock and one-shot callbacks."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` after ``delay`` seconds."""
        ...


class LoopTimers:
    """The running asyncio loop's clock and timers."""

    def now(self) -> float:
        """The loop's monotonic time."""
        return asyncio.get_running_loop().time()

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """``loop.call_later``."""
        return asyncio.get_running_loop().call_later(max(0.0, delay), callback)


class _ManualHandle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualTimers:
    """Timers that move only when told to (`advance`): for exact tests of timer logic."""

    def __init__(self) -> None:
        self._now = 0.0
        self._heap: list[tuple[float, int, _ManualHandle, Callable[[], None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        """The manual clock's time."""
        return self._now

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Schedule ``callback`` at now + ``delay``."""
        handle = _ManualHandle()
        heapq.heappush(self._heap, (self._now + max(0.0, delay), next(self._seq), handle,
                                    callback))
        return handle

    def advance(self, seconds: float) -> None:
        """Move time forward, running every callback that falls due, in order."""
        end = self._now + seconds
        while self._heap and self._heap[0][0] <= end:
            at, _, handle, cb = heapq.heappop(self._heap)
            self._now = max(self._now, at)
            if not handle.cancelled:
                cb()
        self._now = end

    def pending(self) -> list[float]:
        """When the callbacks still scheduled will run (for assertions)."""
        return sorted(at for at, _, h, _ in self._heap if not h.cancelled)


async def sleep(timers: Timers, delay: float) -> None:
    """Sleep ``delay`` seconds on ``timers``."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not fut.done():
            fut.set_result(None)

    handle = timers.call_later(delay, wake)
    try:
        await fut
    finally:
        handle.cancel()
