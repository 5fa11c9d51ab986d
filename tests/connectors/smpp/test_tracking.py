"""The submit rate limiter (time injected: no timed assertions)."""

from __future__ import annotations

import pytest

from connectors.smpp.tracking import RateLimiter

pytestmark = pytest.mark.anyio


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


async def test_spacing_without_burst() -> None:
    t = FakeTime()
    limiter = RateLimiter(10, time=t.time, sleep=t.sleep)
    for _ in range(4):
        await limiter.acquire()
    assert t.sleeps == [0.1, 0.1, 0.1]


async def test_burst_then_rate() -> None:
    t = FakeTime()
    limiter = RateLimiter(100, time=t.time, sleep=t.sleep)  # burst of 5
    for _ in range(5):
        await limiter.acquire()
    assert t.sleeps == []
    await limiter.acquire()
    assert t.sleeps == [0.01]


async def test_idle_time_is_not_banked_beyond_the_burst() -> None:
    t = FakeTime()
    limiter = RateLimiter(100, time=t.time, sleep=t.sleep)
    t.now += 60
    for _ in range(6):
        await limiter.acquire()
    assert len(t.sleeps) == 1


async def test_unlimited() -> None:
    t = FakeTime()
    limiter = RateLimiter(0, time=t.time, sleep=t.sleep)
    for _ in range(1000):
        await limiter.acquire()
    assert t.sleeps == []
