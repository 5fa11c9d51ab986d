"""Webhook fixtures: a runtime that may deliver to loopback, a receiver, an engine, a team."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

import tests.connectors.fake  # noqa: F401  (registers kind "fake")
from gateway.api.app import create_app
from gateway.clock import FrozenClock
from gateway.config import parse_settings
from gateway.ids import new_id
from gateway.models import Event
from gateway.process import open_runtime
from gateway.runtime import Runtime
from tests.gateway.conftest import Seed, fake_connectors, seed_directory
from tests.webhooks.receiver import Receiver
from webhooks.client import Client
from webhooks.delivery import Engine
from webhooks.models import WebhookEndpoint
from webhooks.settings import WebhookSettings
from webhooks.signing import new_secret
from webhooks.storage import WEBHOOK_STORE, WebhookStore


@pytest.fixture
def clock() -> FrozenClock:
    """A frozen clock at the real time (receivers verify timestamps within 5 minutes)."""
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
def hook_settings() -> WebhookSettings:
    """The [webhooks] settings of the runtime under test (loopback receivers allowed)."""
    return WebhookSettings(allow_private_targets=True, timeout=5.0, concurrency=16)


@pytest.fixture
async def rt(
    url: str, tmp_path: Path, clock: FrozenClock, hook_settings: WebhookSettings
) -> AsyncIterator[Runtime]:
    """A runtime on a fresh store of the backend under test, fake connectors included."""
    settings = parse_settings({"gateway": {"store": url, "blobs": str(tmp_path / "blobs")}})
    settings = dataclasses.replace(settings, connectors=fake_connectors())
    settings = settings.with_extension("webhooks", hook_settings)
    runtime = await open_runtime(settings, clock=clock)
    await runtime.wait_started()
    try:
        yield runtime
    finally:
        await runtime.aclose()


def hooks(rt: Runtime) -> WebhookStore:
    """The webhooks' storage role on ``rt``'s store."""
    return rt.role(WEBHOOK_STORE)


@pytest.fixture
async def seed(rt: Runtime, clock: FrozenClock) -> Seed:
    """Two teams with members and keys (``tests.gateway.conftest.Seed``)."""
    return await seed_directory(rt, clock)


@pytest.fixture
async def client(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """The app in-process, workers off (tests drive the engine themselves)."""
    app = create_app(rt, workers=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw.test"
    ) as c:
        yield c


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A receiver on a free loopback port, answering 204 unless told otherwise."""
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
async def engine(rt: Runtime) -> AsyncIterator[Engine]:
    """A delivery engine on ``rt`` (stepped by the tests)."""
    e = Engine(rt, client=Client(allow_private=True), owner="test-engine")
    try:
        yield e
    finally:
        await e.drain()
        await e.client.aclose()


async def add_endpoint(
    rt: Runtime, team_id: str, url: str, events: list[str] | None = None, **kw: object
) -> WebhookEndpoint:
    """Store an endpoint directly (the API tests create theirs through the API)."""
    now = rt.clock.now()
    data: dict[str, object] = dict(
        id=new_id("whep"),
        team_id=team_id,
        url=url,
        events=events or [],
        enabled=True,
        secret=new_secret(),
        created_at=now,
        updated_at=now,
    )
    data.update(kw)
    endpoint = WebhookEndpoint(**data)  # type: ignore[arg-type]
    await hooks(rt).create_endpoint(endpoint, 20)
    return endpoint


async def add_events(
    rt: Runtime, team_id: str, *specs: tuple[str, dict[str, object]]
) -> list[Event]:
    """Append events (type, data) to the log now, in order; returns them with seqs."""
    now = rt.clock.now()
    events = [Event(new_id("evt"), kind, team_id, dict(data), now) for kind, data in specs]
    return await rt.store.append_events(events)


async def settle(engine: Engine) -> None:
    """Fan out everything, then run due attempts until nothing is due now."""
    while await engine.fanout_once():
        await engine.drain()
    await engine.drain()
    while await engine.deliver_due():
        await engine.drain()
