"""The process-wide media ticker and the media endpoint."""

from __future__ import annotations

import asyncio
import time

import pytest

from fax.t38.endpoint import MediaEndpoint, MediaPortsExhaustedError, parse_port_range
from fax.t38.ticker import MediaTicker, SimulatedTicker
from tests.fax.t38.support import free_udp_ports

pytestmark = pytest.mark.anyio


class Recorder:
    def __init__(self, fail_at: int | None = None) -> None:
        self.samples: list[int] = []
        self.fail_at = fail_at
        self.failed: BaseException | None = None

    def tick(self, samples: int) -> None:
        self.samples.append(samples)
        self.last = asyncio.get_running_loop().time()
        if self.fail_at is not None and len(self.samples) == self.fail_at:
            raise RuntimeError("tick failed")

    def fail(self, exc: BaseException) -> None:
        self.failed = exc


async def test_one_ticker_drives_all_sessions_with_real_elapsed_samples() -> None:
    ticker = MediaTicker(interval=0.02)
    a, b = Recorder(), Recorder()
    start = asyncio.get_running_loop().time()
    ticker.add(a)
    ticker.add(b)
    await asyncio.sleep(0.2)
    time.sleep(0.1)  # noqa: ASYNC251 - block the loop on purpose: ticks are missed
    await asyncio.sleep(0.1)
    ticker.remove(a)
    ticker.remove(b)
    await asyncio.sleep(0.05)

    for rec in (a, b):
        # Every sample of loop time up to the last tick was handed out, none twice.
        assert abs(sum(rec.samples) - (rec.last - start) * 8000) < 10
        assert max(rec.samples) >= 800  # the blocked 100 ms came as one catch-up tick
    assert a.samples == b.samples
    assert ticker.late_ticks >= 1
    assert ticker.max_lag >= 0.08
    assert len(ticker) == 0


async def test_shared_ticker_is_one_per_loop() -> None:
    assert MediaTicker.shared() is MediaTicker.shared()


async def test_a_failing_session_is_dropped_and_told() -> None:
    ticker = MediaTicker(interval=0.005)
    bad, good = Recorder(fail_at=2), Recorder()
    ticker.add(bad)
    ticker.add(good)
    await asyncio.sleep(0.05)
    ticker.close()
    assert isinstance(bad.failed, RuntimeError)
    assert len(bad.samples) == 2
    assert len(good.samples) > 2


async def test_simulated_ticker_steps_20_ms_without_waiting() -> None:
    ticker = SimulatedTicker()
    rec = Recorder()
    ticker.add(rec)
    start = time.monotonic()
    for _ in range(100_000):
        if len(rec.samples) >= 500:
            break
        await asyncio.sleep(0)
    ticker.remove(rec)
    assert time.monotonic() - start < 5
    assert set(rec.samples) == {160}
    assert ticker.seconds >= 10


async def test_endpoint_binds_in_the_configured_range() -> None:
    low = free_udp_ports(1)[0] & ~1
    endpoint = await MediaEndpoint.bind("127.0.0.1", f"{low}-{low + 1}")
    assert endpoint.port == low
    assert endpoint.local_address == ("127.0.0.1", low)
    with pytest.raises(MediaPortsExhaustedError):
        await MediaEndpoint.bind("127.0.0.1", (low, low + 1))
    got: list[bytes] = []
    endpoint.attach(lambda data, addr: got.append(data))
    other = await MediaEndpoint.bind()
    other.sendto(b"hello", endpoint.local_address)
    for _ in range(50):
        if got:
            break
        await asyncio.sleep(0.01)
    assert got == [b"hello"]
    endpoint.close()
    other.close()
    assert endpoint.closed


def test_port_range_forms() -> None:
    assert parse_port_range("40000-40009") == range(40000, 40010)
    assert parse_port_range((40000, 40001)) == range(40000, 40002)
    assert parse_port_range("40000") == range(40000, 40001)
    for bad in ("x-y", "80-90", "70000-70001", "5000-4000"):
        with pytest.raises(ValueError):
            parse_port_range(bad)
