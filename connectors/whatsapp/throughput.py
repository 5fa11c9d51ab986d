"""Throughput of the business numbers, and the per-recipient backoff of error 131056,
enforced across every process that shares the store.

``NumberLimiter`` keeps each business number under its messages-per-second (Meta's
default 80/s; 1,000 when upgraded) with the generic cell rate algorithm on one shared
timestamp per number (``Coordination.reserve``: one call per send, no background task).
A send reserves its slot at once and sleeps until it; sends beyond the burst queue up in
arrival order. A 130429 answer pauses the number for every process (``pause``).

``PairBackoff`` remembers, per (business number, recipient), how many 131056 answers came
in a row: the n-th means "not before 4^n seconds" (4 s, 16 s, 64 s, … capped at
4^``MAX_EXPONENT``); a successful send to that recipient resets it.

Both keep their state in the store's ``Coordination`` (``ConnectorContext.shared``): on
Redis every worker process sees one budget per number and one backoff per recipient (two
processes together still send at most 80/s from one number); on SQLite (one process),
this process's memory.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gateway.coordination import Coordination, LocalCoordination

DEFAULT_RATE = 80.0
MAX_EXPONENT = 6  # 4^6 s ≈ 68 minutes
PAIR_MEMORY = 3600.0  # seconds a recipient's backoff count outlives its wait


class NumberLimiter:
    """Messages per second per business number (GCRA), shared through ``shared``."""

    def __init__(
        self,
        rates: dict[str, float],
        *,
        default_rate: float = DEFAULT_RATE,
        burst: int | None = None,
        shared: Coordination | None = None,
        prefix: str = "wa:rate:",
    ) -> None:
        for key, rate in [*rates.items(), ("default", default_rate)]:
            if rate <= 0:
                raise ValueError(f"throughput for {key} must be > 0, got {rate}")
        self.rates = dict(rates)
        self.default_rate = default_rate
        self.burst = burst
        self.shared = shared if shared is not None else LocalCoordination()
        self.prefix = prefix

    def rate(self, key: str) -> float:
        """The messages per second allowed for ``key``."""
        return self.rates.get(key, self.default_rate)

    def _burst(self, rate: float) -> int:
        # A tenth of a second's worth by default: smooth, yet no waiting at low load.
        return self.burst if self.burst is not None else max(1, int(rate // 10))

    async def reserve(self, key: str) -> float:
        """Take the next slot of ``key``; returns how many seconds to wait for it."""
        rate = self.rate(key)
        return await self.shared.reserve(self.prefix + key, rate, self._burst(rate))

    async def pause(self, key: str, seconds: float) -> None:
        """Hold every send of ``key`` back for ``seconds`` (the carrier said: too fast)."""
        rate = self.rate(key)
        await self.shared.push_back(self.prefix + key, seconds, rate, self._burst(rate))

    async def acquire(self, key: str) -> float:
        """Wait for ``key``'s next slot; returns the seconds waited."""
        delay = await self.reserve(key)
        if delay > 0:
            await asyncio.sleep(delay)
        return delay


class PairBackoff:
    """Per-recipient backoff after 131056 (pair rate limit): 4^n seconds, reset on success.

    Kept as "hits|until" (wall-clock seconds: processes on several machines share it)."""

    def __init__(
        self,
        shared: Coordination | None = None,
        *,
        prefix: str = "wa:pair:",
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.shared = shared if shared is not None else LocalCoordination()
        self.prefix = prefix
        self.wall = wall

    def _name(self, number: str, recipient: str) -> str:
        return f"{self.prefix}{number}:{recipient}"

    async def state(self, number: str, recipient: str) -> tuple[int, float]:
        """How many 131056 answers in a row ``recipient`` has had, and the seconds until
        it may be written to again from ``number`` (0: now)."""
        value = await self.shared.get(self._name(number, recipient))
        if value is None:
            return 0, 0.0
        hits, until = value.split("|")
        return int(hits), max(0.0, float(until) - self.wall())

    async def remaining(self, number: str, recipient: str) -> float:
        """Seconds until ``recipient`` may be written to again from ``number`` (0: now)."""
        return (await self.state(number, recipient))[1]

    async def hits(self, number: str, recipient: str) -> int:
        """How many 131056 answers in a row ``recipient`` has had."""
        return (await self.state(number, recipient))[0]

    async def hit(self, number: str, recipient: str) -> float:
        """Record a 131056 answer; returns the backoff in seconds (4^n)."""
        hits = min(await self.hits(number, recipient) + 1, MAX_EXPONENT)
        delay = float(4**hits)
        value = f"{hits}|{self.wall() + delay}"
        await self.shared.put(self._name(number, recipient), value, delay + PAIR_MEMORY)
        return delay

    async def success(self, number: str, recipient: str) -> None:
        """A send to ``recipient`` went through: forget its backoff."""
        await self.shared.delete(self._name(number, recipient))
