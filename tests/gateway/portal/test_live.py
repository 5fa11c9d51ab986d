"""Live updates over server-sent events from a real server: only the member's own events,
``Last-Event-ID`` resume, heartbeats, the end of a stream whose session ended, and events
received by another process on the same Redis store."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.base import InboundMessage
from gateway.clock import SystemClock
from gateway.ids import new_id
from gateway.inbound import Inbound
from gateway.models import Message
from gateway.portal.settings import PortalSettings
from gateway.portal.web import portal_for
from tests.gateway.conftest import CONTACT, MOBILE_A
from tests.gateway.portal.browser import LiveServer
from tests.gateway.portal.conftest import PortalSeed, seed_portal, sign_in

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    """A gateway serving the portal, heartbeats every second."""
    server = LiveServer(tmp_path, portal=PortalSettings(heartbeat_seconds=1))
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def seeded(server: LiveServer) -> PortalSeed:
    assert server.rt is not None
    seed: PortalSeed = await server.call(seed_portal(server.rt, SystemClock()))  # type: ignore[arg-type]
    return seed


async def arrive(
    server: LiveServer, text: str, to: str = MOBILE_A, sender: str = CONTACT
) -> Message:
    assert server.rt is not None
    message = InboundMessage(
        "fake1", "sms", f"c-{new_id('x')}", sender, to, text, server.rt.clock.now()
    )
    stored = await server.call(Inbound(server.rt).inbound(message))
    assert stored is not None
    return stored


class Stream:
    """An open event stream, parsed into (id, event, data) frames and comments."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()

    async def next_frame(self, timeout: float = 10.0, comments: bool = False) -> dict[str, Any]:
        """The next frame; one of comments only (a heartbeat) just when ``comments``: a
        heartbeat may come between any two events on a loaded machine."""
        frame: dict[str, Any] = {}
        async with asyncio.timeout(timeout):
            async for line in self.lines:
                if line == "":
                    if frame and (comments or frame.keys() != {"comments"}):
                        return frame
                    frame = {}
                    continue
                if line.startswith(":"):
                    frame.setdefault("comments", []).append(line)
                    continue
                name, _, value = line.partition(": ")
                frame[name] = json.loads(value) if name == "data" else value
        raise EOFError("the stream ended")


@pytest.fixture
async def client(live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as c:
        yield c


async def open_stream(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> Any:
    return client.stream(
        "GET", "/events", headers={"Accept": "text/event-stream", **(headers or {})}
    )


async def test_own_events_only_resume_and_heartbeat(
    live: LiveServer, client: httpx.AsyncClient
) -> None:
    seed = await seeded(live)
    assert (await sign_in(client, seed.seed.anna.email)).status_code == 303
    async with await open_stream(client) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-accel-buffering"] == "no"
        stream = Stream(response)
        first = await stream.next_frame()
        assert first["retry"] == "3000"
        hello = await stream.next_frame()
        assert hello["data"] == {"type": "hello"}
        await arrive(live, "für Ben", to=seed.seed.ben.mobile or "")
        mine = await arrive(live, "für Anna")
        frame = await stream.next_frame()
        assert frame["event"] == "portal"
        assert frame["data"]["type"] == "message.received"
        assert frame["data"]["conversation_id"] == mine.conversation_id
        assert frame["data"]["contact"] == "0176 12345678"
        last_id = frame["id"]
        # Nothing happens: a heartbeat comes.
        quiet = await stream.next_frame(timeout=5, comments=True)
        assert quiet == {"comments": [": heartbeat"]}
    # Missed while away: two more messages; a reconnect with Last-Event-ID gets them.
    later = [await arrive(live, f"später {i}") for i in range(2)]
    async with await open_stream(client, {"Last-Event-ID": last_id}) as response:
        stream = Stream(response)
        await stream.next_frame()  # retry
        got = [(await stream.next_frame())["data"]["message_id"] for _ in range(2)]
        assert got == [m.id for m in later]


async def test_a_stream_ends_with_its_session(live: LiveServer, client: httpx.AsyncClient) -> None:
    seed = await seeded(live)
    await sign_in(client, seed.seed.ben.email)
    assert live.rt is not None
    portal = await live.call(portal_for(live.rt))
    async with await open_stream(client) as response:
        stream = Stream(response)
        await stream.next_frame()
        await stream.next_frame()
        await live.call(portal.store.end_sessions(seed.seed.ben.id))
        # The next heartbeat finds the session gone and ends the stream.
        with pytest.raises(EOFError):
            await stream.next_frame(timeout=portal.settings.heartbeat_seconds + 10)
    r = await client.get("/events")
    assert r.status_code == 303 or r.status_code == 401


async def test_a_message_received_by_another_process_arrives(
    tmp_path: Path, redis_url: str
) -> None:
    sep = "&" if "?" in redis_url else "?"
    store = f"{redis_url}{sep}prefix=t{uuid.uuid4().hex[:12]}"
    one = LiveServer(tmp_path / "one", store=store).start()
    two = LiveServer(tmp_path / "two", store=store).start()
    try:
        seed = await seeded(one)
        async with httpx.AsyncClient(base_url=one.url, timeout=30) as client:
            await sign_in(client, seed.seed.anna.email)
            async with await open_stream(client) as response:
                stream = Stream(response)
                await stream.next_frame()
                await stream.next_frame()
                # The carrier hands the message to the OTHER gateway process.
                msg = await arrive(two, "über den anderen Prozess")
                frame = await stream.next_frame()
                assert frame["data"]["message_id"] == msg.id
            # And the inbox of the first process lists it (its index follows the log).
            page = await client.get("/")
            assert "über den anderen Prozess" in page.text
    finally:
        one.stop()
        two.stop()


async def test_a_page_resumes_from_the_event_it_was_rendered_at(
    live: LiveServer, client: httpx.AsyncClient
) -> None:
    """A message arriving between a page's rendering and its stream's opening is not lost:
    the page carries the tail's position (``data-live-since``), the script opens its
    stream from there (``?last_event_id=``), and the stream replays what came since."""
    import re

    seed = await seeded(live)
    await sign_in(client, seed.seed.anna.email)
    async with await open_stream(client) as response:  # starts the process's tail
        await Stream(response).next_frame()
    since = None
    for _ in range(200):  # until the tail has read its starting point
        page = (await client.get("/")).text
        found = re.search(r'data-live-since="(\d+)"', page)
        if found:
            since = found.group(1)
            break
        await asyncio.sleep(0.05)
    assert since is not None
    meanwhile = await arrive(live, "while the page was loading")
    async with client.stream("GET", f"/events?last_event_id={since}") as response:
        stream = Stream(response)
        await stream.next_frame()  # retry
        frame = await stream.next_frame()
        assert frame["data"]["type"] == "message.received"
        assert frame["data"]["message_id"] == meanwhile.id
