"""GET /events: the member's live updates as server-sent events.

Frames come from the process's tail of the event log (``live.py``); a reconnecting
browser sends ``Last-Event-ID`` (or ``?last_event_id=`` when another tab's stream is
taken over) and first gets what it missed, from the log. Quiet streams get a comment line
every ``heartbeat_seconds`` — and a stream whose session ended (signed out, password
changed, member deactivated) ends at the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from gateway.portal.security import resolve
from gateway.portal.web import SESSION_COOKIE, portal_of, viewer_of

RETRY_MS = 3000


def _last_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id") or ""
    return int(raw) if raw.isdigit() and len(raw) < 19 else None


async def events(request: Request) -> Response:
    """GET /events: ``text/event-stream`` of the signed-in member's events."""
    portal = await portal_of(request)
    viewer = viewer_of(request)
    hub = portal.hub
    sub = hub.subscribe(viewer.member.id)
    last = _last_id(request)
    token = request.cookies.get(SESSION_COOKIE)
    heartbeat = portal.settings.heartbeat_seconds

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            sent = last if last is not None else (hub.seq or 0)
            if last is not None:
                async for frame in hub.replay(viewer.member.id, last):
                    sent = frame.seq
                    yield frame.data
            else:
                # A fresh stream: say where it starts, so that a take-over resumes here.
                yield f'id: {sent}\ndata: {{"type": "hello"}}\n\n'.encode()
            while True:
                try:
                    item = await asyncio.wait_for(sub.queue.get(), heartbeat)
                except TimeoutError:
                    if await resolve(portal, token) is None:
                        return
                    yield b": heartbeat\n\n"
                    continue
                if item is None:
                    return
                if item.seq <= sent:
                    continue
                sent = item.seq
                yield item.data
        finally:
            hub.unsubscribe(sub)

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)


async def close_quietly(task: asyncio.Task[None]) -> None:
    """Cancel ``task`` and wait for it."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
