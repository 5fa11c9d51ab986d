"""How long a send waits for an unhealthy connector, on both backends: a minute when the
connector waits for an operator (refused credentials, or it gives no hint), else until
the retry hint it gives (``Health.retry_after``: a bind being re-established, a
connector still starting), within 1 s and 60 s; the attempt is never used up."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from connectors.base import AuthError, Health, NotReadyError
from gateway.auth import Principal
from gateway.clock import FrozenClock
from gateway.commands import SendRequest, convert
from gateway.config import parse_settings
from gateway.dispatch import AUTH_RETRY, unhealthy_delay
from gateway.outbound import submit
from gateway.process import open_runtime, worker
from gateway.runtime import START_RETRY_MIN, Runtime
from tests.connectors.fake import FakeConnector
from tests.gateway.conftest import CONTACT, MOBILE_A, Seed, fake_connectors, seed_directory
from tests.gateway.test_dispatch import fake, send, stored

pytestmark = pytest.mark.anyio


def unhealthy(rt: Runtime, retry_after: float | None) -> None:
    """Make the fake connector report itself down with ``retry_after``."""
    connector = fake(rt)
    connector.health = lambda: Health(False, "bind lost; reconnecting", retry_after)  # type: ignore[method-assign]


async def due_in(rt: Runtime, clock: FrozenClock) -> timedelta:
    """How far ahead the only ready job is due (its attempts refunded)."""
    counts = await rt.store.job_counts()
    assert counts == {"ready": 1, "leased": 0, "dead": 0}
    [job] = await rt.store.lease_jobs(clock.now() + timedelta(days=1), "peek", timedelta(1), 1)
    await rt.store.retry_job(job.id, job.token or "", job.run_at, "peek", refund=True)
    assert job.attempts == 1  # this peek's lease: the unhealthy runs used none
    return job.run_at - clock.now()


def test_unhealthy_delay_bounds() -> None:
    assert unhealthy_delay(Health(False, "token expired")) == AUTH_RETRY
    assert unhealthy_delay(Health(False, "x", retry_after=3.5)) == timedelta(seconds=3.5)
    assert unhealthy_delay(Health(False, "x", retry_after=0.0)) == timedelta(seconds=1)
    assert unhealthy_delay(Health(False, "x", retry_after=3600)) == AUTH_RETRY


async def test_a_reconnecting_connector_is_tried_again_at_its_hint(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    unhealthy(rt, 3.0)
    msg = await send(client, seed)
    for _ in range(3):  # each run waits for the hint; none uses an attempt
        assert await worker(rt).run_once()
        assert (await stored(rt, msg["id"])).status == "queued"
        assert not await worker(rt).run_once()  # not due before the hint
        clock.advance(seconds=3)
    assert await due_in(rt, clock) == timedelta(0)
    del fake(rt).health  # the bind is back
    assert await worker(rt).run_once()
    assert (await stored(rt, msg["id"])).status == "sent"


async def test_without_a_hint_the_send_waits_a_minute(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    unhealthy(rt, None)
    await send(client, seed)
    assert await worker(rt).run_once()
    assert await due_in(rt, clock) == AUTH_RETRY


async def test_a_connector_still_starting_is_tried_again_soon(
    url: str, tmp_path: Path, clock: FrozenClock
) -> None:
    settings = parse_settings({"gateway": {"store": url, "blobs": str(tmp_path / "blobs")}})
    settings = dataclasses.replace(settings, connectors=fake_connectors())
    rt = await open_runtime(settings, clock=clock, start_connectors=False)
    try:
        seed = await seed_directory(rt, clock)
        body = {"channel": "sms", "from": MOBILE_A, "to": CONTACT, "text": "early"}
        await submit(rt, Principal(seed.team.id, None, "test"), convert(SendRequest, body))
        assert await worker(rt).run_once()  # before the connector ever started
        assert await due_in(rt, clock) == timedelta(seconds=START_RETRY_MIN)
    finally:
        await rt.aclose()


async def test_start_failures_say_whether_to_wait_for_an_operator(
    url: str, tmp_path: Path, clock: FrozenClock
) -> None:
    settings = parse_settings({"gateway": {"store": url, "blobs": str(tmp_path / "blobs")}})
    settings = dataclasses.replace(settings, connectors=fake_connectors())
    rt = await open_runtime(settings, clock=clock, start_connectors=False)
    state = rt.connectors["fake1"]
    connector = state.connector
    assert isinstance(connector, FakeConnector)
    errors: list[Exception] = [NotReadyError("carrier down"), AuthError("bad password")]
    seen: list[Health] = []  # the health while waiting for the next start attempt

    async def start() -> None:
        if errors:
            raise errors.pop(0)

    async def watch() -> None:
        while not state.started:
            health = state.health()
            if state.last_error and (not seen or seen[-1].detail != health.detail):
                seen.append(health)
            await asyncio.sleep(0.01)

    connector.start = start  # type: ignore[method-assign]
    starting = state.health()
    try:
        watcher = asyncio.create_task(watch())
        await asyncio.wait_for(rt._start(state), 30)
        await asyncio.wait_for(watcher, 5)
    finally:
        await rt.aclose()
    assert not starting.ok and starting.detail == "starting"
    assert starting.retry_after == START_RETRY_MIN
    not_ready, auth = seen
    assert "carrier down" in not_ready.detail and not_ready.retry_after is not None
    assert START_RETRY_MIN <= not_ready.retry_after <= 1.5  # the next start attempt
    assert "bad password" in auth.detail and auth.retry_after is None
    assert state.health().ok and not state.auth_failed
