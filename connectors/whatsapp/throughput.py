"""Throughput of the business numbers, and the per-recipient backoff of error 131056.

``NumberLimiter`` keeps each business number under its messages-per-second (Meta's
default 80/s; 1,000 when upgraded) with the generic cell rate algorithm: one timestamp per
number, O(1) per send, no background task. A send reserves its slot at once and sleeps
until it; sends beyond the burst queue up in arrival order. A 130429 answer pauses the
number for everyone (``pause``).

``PairBackoff`` remembers, per (business number, recipient), how many 131056 answers came
in a row: the n-th means "not before 4^n seconds" (4 s, 16 s, 64 s, … capped at
4^``MAX_EXPONENT``); a successful send to that recipient resets it.

Both live in the process that sends: several worker processes each keep their own view
(Meta's limits are enforced by Meta; this only keeps us from hammering them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_RATE = 80.0
MAX_EXPONENT = 6  # 4^6 s ≈ 68 minutes
_MAX_PAIRS = 10_000


class NumberLimiter:
    """Messages per second per business number (GCRA), with an injectable monotonic clock."""

    def __init__(
        self,
        rates: dict[str, float],
        *,
        default_rate: float = DEFAULT_RATE,
        burst: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        for key, rate in [*rates.items(), ("default", default_rate)]:
            if rate <= 0:
                raise ValueError(f"throughput for {key} must be > 0, got {rate}")
        self.rates = dict(rates)
        self.default_rate = default_rate
        self.burst = burst
        self.monotonic = monotonic
        self._tat: dict[str, float] = {}  # theoretical arrival time of the next send

    def rate(self, key: str) -> float:
        """The messages per second allowed for ``key``."""
        return self.rates.get(key, self.default_rate)

    def _burst(self, rate: float) -> int:
        # A tenth of a second's worth by default: smooth, yet no waiting at low load.
        return self.burst if self.burst is not None else max(1, int(rate // 10))

    def reserve(self, key: str) -> float:
        """Take the next slot of ``key``; returns how many seconds to wait for it."""
        now = self.monotonic()
        rate = self.rate(key)
        interval = 1.0 / rate
        tat = max(self._tat.get(key, now), now)
        allowed_at = tat - (self._burst(rate) - 1) * interval
        self._tat[key] = tat + interval
        return max(0.0, allowed_at - now)

    def pause(self, key: str, seconds: float) -> None:
        """Hold every send of ``key`` back for ``seconds`` (the carrier said: too fast)."""
        rate = self.rate(key)
        # Sends may start again at now + seconds, one burst at most.
        resume = self.monotonic() + seconds + (self._burst(rate) - 1) / rate
        self._tat[key] = max(self._tat.get(key, 0.0), resume)

    async def acquire(self, key: str) -> float:
        """Wait for ``key``'s next slot; returns the seconds waited."""
        delay = self.reserve(key)
        if delay > 0:
            await asyncio.sleep(delay)
        return delay


@dataclass(slots=True)
class _Pair:
    hits: int
    until: float


class PairBackoff:
    """Per-recipient backoff after 131056 (pair rate limit): 4^n seconds, reset on success."""

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.monotonic = monotonic
        self._pairs: dict[tuple[str, str], _Pair] = {}

    def remaining(self, number: str, recipient: str) -> float:
        """Seconds until ``recipient`` may be written to again from ``number`` (0: now)."""
        pair = self._pairs.get((number, recipient))
        if pair is None:
            return 0.0
        return max(0.0, pair.until - self.monotonic())

    def hit(self, number: str, recipient: str) -> float:
        """Record a 131056 answer; returns the backoff in seconds (4^n)."""
        now = self.monotonic()
        key = (number, recipient)
        pair = self._pairs.get(key)
        hits = min((pair.hits if pair else 0) + 1, MAX_EXPONENT)
        delay = float(4**hits)
        self._pairs[key] = _Pair(hits, now + delay)
        if len(self._pairs) > _MAX_PAIRS:
            self._prune(now)
        return delay

    def success(self, number: str, recipient: str) -> None:
        """A send to ``recipient`` went through: forget its backoff."""
        self._pairs.pop((number, recipient), None)

    def hits(self, number: str, recipient: str) -> int:
        """How many 131056 answers in a row ``recipient`` has had."""
        pair = self._pairs.get((number, recipient))
        return pair.hits if pair else 0

    def _prune(self, now: float) -> None:
        # Recipients whose backoff ran out an hour ago and who were never written to
        # again would otherwise stay forever.
        for key in [k for k, p in self._pairs.items() if p.until < now - 3600]:
            del self._pairs[key]
