"""GET /events: the member's live updates as server-sent events.

Frames come from the process's tail of the event log (``live.py``); a reconnecting
browser sends ``Last-Event-ID`` (or ``?last_event_id=`` when another tab's stream is
taken over) and first gets what it missed, from the log. The tail sends heartbeats every
``heartbeat_seconds`` — and a stream whose session ended (signed out, password changed,
member deactivated) ends at the next one.

A plain ASGI app rather than a ``StreamingResponse``: each event is one ``send`` of the
shared frame, with no generator or response machinery per stream in between (a thousand
open streams cost a thousand of those per event).
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.datastructures import Headers
from starlette.types import Message, Receive, Scope, Send

from gateway.portal.accounts import Viewer
from gateway.portal.live import HEARTBEAT, Subscription
from gateway.portal.security import cookies_of, resolve
from gateway.portal.web import SESSION_COOKIE, Portal

RETRY_MS = 3000
HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-store"),
    (b"x-accel-buffering", b"no"),
]


def last_event_id(scope: Scope) -> int | None:
    """``Last-Event-ID`` (header, else ``?last_event_id=``) as a seq."""
    raw = ""
    for name, value in scope["headers"]:
        if name == b"last-event-id":
            raw = value.decode("latin-1")
    if not raw:
        for part in scope.get("query_string", b"").decode("latin-1").split("&"):
            key, _, value = part.partition("=")
            if key == "last_event_id":
                raw = value
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


async def _watch_disconnect(receive: Receive, sub: Subscription) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            sub.offer(None)
            return


class EventStream:
    """The ``/events`` ASGI app (a class: Starlette routes plain functions as
    request-response endpoints)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one stream."""
        await events(scope, receive, send)


async def events(scope: Scope, receive: Receive, send: Send) -> None:
    """The stream (the guard in front has signed the member in)."""
    portal: Portal = scope["portal"]
    viewer: Viewer = scope["portal_viewer"]
    hub = portal.hub
    sub = hub.subscribe(viewer.member.id)
    token = cookies_of_scope(scope)
    last = last_event_id(scope)
    watcher = asyncio.create_task(_watch_disconnect(receive, sub))

    def body(data: bytes) -> Message:
        return {"type": "http.response.body", "body": data, "more_body": True}

    try:
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send(body(f"retry: {RETRY_MS}\n\n".encode()))
        sent = last if last is not None else (hub.seq or 0)
        if last is not None:
            async for frame in hub.replay(viewer.member.id, last):
                sent = frame.seq
                await send(body(frame.data))
        else:
            # A fresh stream says where it starts, so that a take-over resumes from there.
            await send(body(f'id: {sent}\ndata: {{"type": "hello"}}\n\n'.encode()))
        while True:
            item = await sub.queue.get()
            if item is None:
                break
            if item is HEARTBEAT:
                if await resolve(portal, token) is None:
                    break
                await send(body(item.data))
            elif item.seq > sent:
                sent = item.seq
                await send(body(item.data))
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    except OSError:
        pass  # the browser went away mid-send
    finally:
        hub.unsubscribe(sub)
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


def cookies_of_scope(scope: Scope) -> str | None:
    """The session cookie's value."""
    return cookies_of(Headers(scope=scope)).get(SESSION_COOKIE)
