"""The webhooks as an extension of the core: found through the entry point, configured
and stored through the core's seams, served by the app, run by the workers, allowed to
deliver locally in the demo."""

from __future__ import annotations

import asyncio

import pytest
from standardwebhooks import Webhook
from starlette.routing import Route

from gateway.api.app import create_app
from gateway.config import parse_settings
from gateway.demo import demo_settings
from gateway.extensions import extensions
from gateway.process import worker
from gateway.runtime import Runtime
from tests.webhooks.conftest import add_endpoint, add_events
from tests.webhooks.receiver import Receiver
from webhooks.api import ROUTES
from webhooks.extension import EXTENSION
from webhooks.settings import webhook_settings
from webhooks.storage import WEBHOOK_STORE

pytestmark = pytest.mark.anyio


def test_found_through_the_entry_point() -> None:
    assert EXTENSION in extensions()


async def test_the_app_serves_the_routes(rt: Runtime) -> None:
    app = create_app(rt, workers=False)
    served = [r for r in app.routes if isinstance(r, Route)]
    for route in ROUTES:
        assert route in served


async def test_the_workers_run_the_delivery_engine(rt: Runtime, receiver: Receiver) -> None:
    """``gateway serve`` and ``gateway worker`` run ``Worker.run``: deliveries just happen."""
    endpoint = await add_endpoint(rt, "team_x", receiver.url)
    stop = asyncio.Event()
    task = asyncio.create_task(worker(rt).run(stop))
    try:
        await add_events(rt, "team_x", ("forward.sent", {"message_id": "msg_1"}))
        for _ in range(1000):  # at most 20 s
            if receiver.received:
                break
            await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    (got,) = receiver.received
    assert Webhook(endpoint.secret).verify(got.body, got.headers)["type"] == "forward.sent"


def test_the_demo_delivers_to_local_receivers(tmp_path: object) -> None:
    settings = demo_settings(str(tmp_path), "127.0.0.1", 8080)
    assert webhook_settings(settings).allow_private_targets


def test_its_section_is_parsed_by_it() -> None:
    settings = parse_settings({"webhooks": {"timeout": 3}})
    assert webhook_settings(settings).timeout == 3
    assert settings.extensions["webhooks"] == EXTENSION.parse_settings({"timeout": 3})


async def test_the_runtime_opens_its_storage(rt: Runtime) -> None:
    assert EXTENSION.storage() == (WEBHOOK_STORE,)
    assert rt.role(WEBHOOK_STORE) is rt.role(WEBHOOK_STORE)  # opened once, with the store
    assert await rt.role(WEBHOOK_STORE).list_endpoints(None) == []
