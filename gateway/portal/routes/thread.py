"""A conversation: its messages as bubbles, older pages, live refreshes, read state and
attachments."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.api.downloads import INLINE_IMAGES, download
from gateway.errors import NotFound
from gateway.models import Attachment, Conversation, Message
from gateway.portal import compose
from gateway.portal.accounts import Viewer
from gateway.portal.views import attachment_ids, bubble, channel_name, contact, window_of
from gateway.portal.web import Portal, portal_of, render, viewer_of
from gateway.store.base import MessageFilter

_CURSOR_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz_0123456789ABCDEFGHJKMNPQRSTVWXYZ")


async def conversation_of(request: Request) -> tuple[Portal, Viewer, Conversation]:
    """The viewer's conversation named in the path; another member's does not exist."""
    portal = await portal_of(request)
    viewer = viewer_of(request)
    conv = await portal.rt.store.get_conversation(request.path_params["id"])
    if conv is None or conv.team_id != viewer.team.id or conv.member_id != viewer.member.id:
        raise NotFound("conversation not found")
    return portal, viewer, conv


async def _attachments(
    portal: Portal, viewer: Viewer, messages: list[Message]
) -> dict[str, Attachment]:
    out = {}
    for att_id in attachment_ids(messages):
        att = await portal.rt.store.get_attachment(att_id)
        if att is not None and att.team_id == viewer.team.id:
            out[att_id] = att
    return out


async def messages_context(
    request: Request, portal: Portal, viewer: Viewer, conv: Conversation, before: str | None
) -> dict[str, Any]:
    """The bubbles of a page of messages (newest page unless ``before``), oldest first."""
    if before is not None and not (set(before) <= _CURSOR_CHARS and len(before) < 64):
        before = None
    flt = MessageFilter(team_id=viewer.team.id, member_id=viewer.member.id, conversation_id=conv.id)
    page = await portal.rt.store.list_messages(flt, before, portal.settings.page_size)
    messages = list(reversed(page.items))
    atts = await _attachments(portal, viewer, messages)
    fmt = request.scope["portal_formats"]
    return {
        "conversation": conv,
        "bubbles": [bubble(m, atts, fmt) for m in messages],
        "older": page.next_cursor,
        "channel_name": channel_name,
        "region": viewer.team.region,
    }


async def thread(request: Request) -> Response:
    """GET /c/{id}: the thread with its composer; opening it reads it."""
    portal, viewer, conv = await conversation_of(request)
    context = await messages_context(request, portal, viewer, conv, None)
    summary = await portal.store.get_summary(conv.id, viewer.member.id)
    now = portal.rt.clock.now()
    context.update(
        summary=summary,
        contact=contact(summary or conv.remote_number, viewer.team.region),
        number=contact(conv.remote_number, viewer.team.region),
        window=window_of(conv.last_inbound_whatsapp_at, now),
        composer=await compose.composer_context(
            portal, viewer, conv, request.query_params.get("channel"), None
        ),
    )
    await portal.store.mark_read(viewer.member.id, conv.id)
    return render(request, "thread.html", context)


async def messages(request: Request) -> Response:
    """GET /c/{id}/messages: the newest page (live refresh; ``read=1`` while the member
    looks at it), or with ``before`` an older page."""
    portal, viewer, conv = await conversation_of(request)
    before = request.query_params.get("before")
    context = await messages_context(request, portal, viewer, conv, before)
    if before is None and request.query_params.get("read") == "1":
        await portal.store.mark_read(viewer.member.id, conv.id)
    name = "_older.html" if before else "_messages.html"
    return render(request, name, context)


async def message(request: Request) -> Response:
    """GET /m/{id}: one bubble (a status change or fax page arrived)."""
    portal = await portal_of(request)
    viewer = viewer_of(request)
    msg = await portal.rt.store.get_message(request.path_params["id"])
    if msg is None or msg.team_id != viewer.team.id or msg.member_id != viewer.member.id:
        raise NotFound("message not found")
    page = request.query_params.get("page", "")
    live_page = int(page) if page.isdigit() and len(page) < 5 else None
    atts = await _attachments(portal, viewer, [msg])
    b = bubble(msg, atts, request.scope["portal_formats"], live_page)
    return render(
        request,
        "_bubble.html",
        {"b": b, "channel_name": channel_name, "region": viewer.team.region},
    )


async def attachment(request: Request) -> Response:
    """GET /a/{id}: an attachment of the viewer's own (images inline, others download)."""
    portal = await portal_of(request)
    viewer = viewer_of(request)
    att = await portal.rt.store.get_attachment(request.path_params["id"])
    if att is None or not att.visible_to(viewer.team.id, viewer.member.id):
        raise NotFound("attachment not found")
    data = portal.rt.blobs.get(att.sha256)
    # Pictures are shown in the thread; everything else is saved (gateway.api.downloads).
    return download(
        att, data, inline=INLINE_IMAGES, headers={"Cache-Control": "private, max-age=86400"}
    )
