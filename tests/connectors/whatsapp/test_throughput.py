"""Per-business-number throughput and the per-recipient backoff, on an injected clock
(``LocalCoordination``), and shared by two connectors' limiters on one Redis store."""

from __future__ import annotations

import pytest

from connectors.whatsapp.throughput import MAX_EXPONENT, NumberLimiter, PairBackoff
from gateway.coordination import LocalCoordination
from gateway.store import make_store
from tests.conftest import store_url

pytestmark = pytest.mark.anyio


class Tick:
    """A clock that moves only when told."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def limiter_on(tick: Tick, rates: dict[str, float] | None = None, **kw: object) -> NumberLimiter:
    return NumberLimiter(rates or {}, shared=LocalCoordination(tick), **kw)  # type: ignore[arg-type]


async def test_default_is_80_per_second_with_a_small_burst() -> None:
    tick = Tick()
    limiter = limiter_on(tick)
    waits = [await limiter.reserve("pn1") for _ in range(80)]
    # A burst of 8 (a tenth of a second) goes at once; then one every 1/80 s.
    assert waits[:8] == pytest.approx([0.0] * 8, abs=1e-9)
    assert waits[8] == pytest.approx(1 / 80)
    assert waits[79] == pytest.approx(72 / 80)
    # Eighty sends take ~0.9 s of reservations: never more than 80 within a second.
    tick.t += 1.0
    assert await limiter.reserve("pn1") == pytest.approx(0.0, abs=1e-9)


async def test_numbers_do_not_share_a_budget_and_rates_are_per_number() -> None:
    tick = Tick()
    limiter = limiter_on(tick, {"fast": 1000.0}, default_rate=10.0, burst=1)
    assert [await limiter.reserve("slow") for _ in range(3)] == pytest.approx([0.0, 0.1, 0.2])
    assert [await limiter.reserve("fast") for _ in range(3)] == pytest.approx(
        [0.0, 0.001, 0.002]
    )
    assert await limiter.reserve("other") == 0.0
    assert limiter.rate("fast") == 1000.0 and limiter.rate("slow") == 10.0


async def test_idle_time_refills_only_up_to_the_burst() -> None:
    tick = Tick()
    limiter = limiter_on(tick, default_rate=10.0, burst=2)
    tick.t += 3600  # an hour of silence does not bank 36,000 sends
    waits = [await limiter.reserve("n") for _ in range(4)]
    assert waits == pytest.approx([0.0, 0.0, 0.1, 0.2], abs=1e-9)


async def test_pause_holds_every_send_of_the_number() -> None:
    tick = Tick()
    limiter = limiter_on(tick, default_rate=80.0, burst=1)
    await limiter.pause("n", 1.0)
    assert await limiter.reserve("n") == pytest.approx(1.0)
    assert await limiter.reserve("n") == pytest.approx(1.0 + 1 / 80)
    assert await limiter.reserve("m") == 0.0
    tick.t += 5
    assert await limiter.reserve("n") == 0.0


async def test_acquire_waits_the_reserved_time() -> None:
    tick = Tick()
    limiter = limiter_on(tick, default_rate=1000.0, burst=1)
    assert await limiter.acquire("n") == 0.0
    assert await limiter.acquire("n") == pytest.approx(0.001)


def test_rates_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        NumberLimiter({"n": 0.0})


async def test_pair_backoff_is_4_to_the_n_and_resets_on_success() -> None:
    tick = Tick()
    pairs = PairBackoff(LocalCoordination(tick), wall=tick)
    assert await pairs.remaining("pn", "+49176") == 0.0
    assert [await pairs.hit("pn", "+49176") for _ in range(3)] == [4.0, 16.0, 64.0]
    assert await pairs.remaining("pn", "+49176") == 64.0
    assert await pairs.remaining("pn", "+49177") == 0.0  # per recipient
    assert await pairs.remaining("other", "+49176") == 0.0  # per business number
    tick.t += 60
    assert await pairs.remaining("pn", "+49176") == pytest.approx(4.0)
    await pairs.success("pn", "+49176")
    assert await pairs.remaining("pn", "+49176") == 0.0 and await pairs.hits("pn", "+49176") == 0
    assert await pairs.hit("pn", "+49176") == 4.0


async def test_pair_backoff_is_capped() -> None:
    tick = Tick()
    pairs = PairBackoff(LocalCoordination(tick), wall=tick)
    delays = [await pairs.hit("pn", "u") for _ in range(MAX_EXPONENT + 3)]
    assert delays[-1] == delays[-2] == float(4**MAX_EXPONENT)


async def test_two_processes_share_one_budget_and_one_backoff_on_redis(
    redis_url: str, tmp_path: object
) -> None:
    # Two stores on one Redis: as two worker processes see it.
    url = store_url("redis", redis_url, tmp_path)
    one, two = make_store(url), make_store(url)
    await one.open()
    await two.open()
    try:
        a = NumberLimiter({}, default_rate=10.0, burst=1, shared=one.coordination())
        b = NumberLimiter({}, default_rate=10.0, burst=1, shared=two.coordination())
        waits = [await limiter.reserve("pn") for limiter in (a, b, a, b)]
        # One budget of 10/s: the four sends are spaced 0.1 s apart, whoever sends them.
        assert waits[0] == 0.0
        assert waits[1:] == pytest.approx([0.1, 0.2, 0.3], abs=0.02)
        await a.pause("pn2", 30.0)
        assert await b.reserve("pn2") > 29.0  # the pause holds the other process too
        pa, pb = PairBackoff(one.coordination()), PairBackoff(two.coordination())
        assert await pa.hit("pn", "+49176") == 4.0
        assert await pb.remaining("pn", "+49176") > 3.0
        assert await pb.hit("pn", "+49176") == 16.0  # the count is shared
        await pa.success("pn", "+49176")
        assert await pb.hits("pn", "+49176") == 0
    finally:
        await one.aclose()
        await two.aclose()
