"""Per-business-number throughput and the per-recipient backoff, on an injected clock."""

from __future__ import annotations

import pytest

from connectors.whatsapp.throughput import MAX_EXPONENT, NumberLimiter, PairBackoff


class Tick:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_default_is_80_per_second_with_a_small_burst() -> None:
    tick = Tick()
    limiter = NumberLimiter({}, monotonic=tick)
    waits = [limiter.reserve("pn1") for _ in range(80)]
    # A burst of 8 (a tenth of a second) goes at once; then one every 1/80 s.
    assert waits[:8] == pytest.approx([0.0] * 8, abs=1e-9)
    assert waits[8] == pytest.approx(1 / 80)
    assert waits[79] == pytest.approx(72 / 80)
    # Eighty sends take ~0.9 s of reservations: never more than 80 within a second.
    tick.t += 1.0
    assert limiter.reserve("pn1") == pytest.approx(0.0, abs=1e-9)


def test_numbers_do_not_share_a_budget_and_rates_are_per_number() -> None:
    tick = Tick()
    limiter = NumberLimiter({"fast": 1000.0}, default_rate=10.0, burst=1, monotonic=tick)
    assert [limiter.reserve("slow") for _ in range(3)] == pytest.approx([0.0, 0.1, 0.2])
    assert [limiter.reserve("fast") for _ in range(3)] == pytest.approx([0.0, 0.001, 0.002])
    assert limiter.reserve("other") == 0.0
    assert limiter.rate("fast") == 1000.0 and limiter.rate("slow") == 10.0


def test_idle_time_refills_only_up_to_the_burst() -> None:
    tick = Tick()
    limiter = NumberLimiter({}, default_rate=10.0, burst=2, monotonic=tick)
    tick.t += 3600  # an hour of silence does not bank 36,000 sends
    assert [limiter.reserve("n") for _ in range(4)] == pytest.approx([0.0, 0.0, 0.1, 0.2], abs=1e-9)


def test_pause_holds_every_send_of_the_number() -> None:
    tick = Tick()
    limiter = NumberLimiter({}, default_rate=80.0, burst=1, monotonic=tick)
    limiter.pause("n", 1.0)
    assert limiter.reserve("n") == pytest.approx(1.0)
    assert limiter.reserve("n") == pytest.approx(1.0 + 1 / 80)
    assert limiter.reserve("m") == 0.0
    tick.t += 5
    assert limiter.reserve("n") == 0.0


@pytest.mark.anyio
async def test_acquire_waits_the_reserved_time() -> None:
    tick = Tick()
    limiter = NumberLimiter({}, default_rate=1000.0, burst=1, monotonic=tick)
    assert await limiter.acquire("n") == 0.0
    assert await limiter.acquire("n") == pytest.approx(0.001)


def test_rates_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        NumberLimiter({"n": 0.0})


def test_pair_backoff_is_4_to_the_n_and_resets_on_success() -> None:
    tick = Tick()
    pairs = PairBackoff(monotonic=tick)
    assert pairs.remaining("pn", "+49176") == 0.0
    assert [pairs.hit("pn", "+49176") for _ in range(3)] == [4.0, 16.0, 64.0]
    assert pairs.remaining("pn", "+49176") == 64.0
    assert pairs.remaining("pn", "+49177") == 0.0  # per recipient
    assert pairs.remaining("other", "+49176") == 0.0  # per business number
    tick.t += 60
    assert pairs.remaining("pn", "+49176") == pytest.approx(4.0)
    pairs.success("pn", "+49176")
    assert pairs.remaining("pn", "+49176") == 0.0 and pairs.hits("pn", "+49176") == 0
    assert pairs.hit("pn", "+49176") == 4.0


def test_pair_backoff_is_capped() -> None:
    pairs = PairBackoff(monotonic=Tick())
    delays = [pairs.hit("pn", "u") for _ in range(MAX_EXPONENT + 3)]
    assert delays[-1] == delays[-2] == float(4**MAX_EXPONENT)
