"""The portal while its Redis is SIGKILLed and restarted on its AOF (a redis-server of this
test's own, never the one at ``REDIS_URL``): pages answer a 503 page with ``Retry-After``
instead of a traceback, the live tail backs off with one traceback per outage, and both
work again once Redis is back (the session survived)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.api.app import create_app
from gateway.clock import FrozenClock
from gateway.config import parse_settings
from gateway.portal.settings import PortalSettings
from gateway.portal.web import portal_for
from gateway.process import open_runtime
from gateway.runtime import Runtime
from tests.gateway.api.test_store_outage import Redis
from tests.gateway.conftest import fake_connectors
from tests.gateway.portal.conftest import BASE, SAME_ORIGIN, csrf_of, seed_portal, sign_in

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def redis() -> Iterator[Redis]:
    server = Redis()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def rt(redis: Redis, tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Runtime]:
    settings = parse_settings({"gateway": {"store": redis.url, "blobs": str(tmp_path / "blobs")}})
    settings = dataclasses.replace(settings, connectors=fake_connectors(), public_url=BASE)
    # The tail looks every 20 ms: a failure logged each time would be 50 a second.
    settings = settings.with_extension("portal", PortalSettings(poll_interval=0.02))
    runtime = await open_runtime(settings, clock=clock)
    await runtime.wait_started()
    try:
        yield runtime
    finally:
        await runtime.aclose()


async def test_redis_killed_and_restarted(
    rt: Runtime, redis: Redis, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    seed = await seed_portal(rt, clock)
    portal = await portal_for(rt)
    portal.hub.start()
    app = create_app(rt, workers=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        assert (await sign_in(c, seed.seed.anna.email)).status_code == 303
        page = await c.get("/")
        assert page.status_code == 200
        csrf = csrf_of(page.text)
        redis.kill()
        with caplog.at_level(logging.INFO):
            for r in [
                await c.get("/", headers={"Accept-Language": "de"}),
                await c.get("/settings"),
                await c.post("/settings/forwarding", data={"csrf": csrf}, headers=SAME_ORIGIN),
            ]:
                assert r.status_code == 503, r.text
                assert r.headers["retry-after"] == "1"
                assert r.headers["content-type"].startswith("text/html")
                assert r.headers["content-security-policy"].startswith("default-src 'none'")
            german = await c.get("/", headers={"Accept-Language": "de"})
            assert "Für einen Moment nicht erreichbar" in german.text
            await asyncio.sleep(1.0)  # the tail keeps failing meanwhile
            tail = [r for r in caplog.records if "event tail" in r.getMessage()]
            assert len([r for r in tail if r.exc_info]) == 1, "one traceback per outage"
            # Backing off (to 2 s): a handful of lines in a second, not fifty.
            assert 2 <= len(tail) <= 12, [r.getMessage() for r in tail]
            redis.start()  # the same port and directory: it loads its AOF
            for _ in range(100):  # the tail's next try comes within its longest wait
                if any("works again" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.05)
            assert any("event tail works again" in r.getMessage() for r in caplog.records)
        page = await c.get("/")
        assert page.status_code == 200 and "Inbox" in page.text  # still signed in
    await portal.hub.stop()
