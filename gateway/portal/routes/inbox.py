"""The conversation list: filters, search, pages, unread counts; and new conversations."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import GatewayError, ValidationError
from gateway.models import Channel, addon_allows
from gateway.numbers import normalize
from gateway.portal import i18n, search
from gateway.portal.security import read_form
from gateway.portal.storage import InboxPage, InboxQuery
from gateway.portal.views import channel_name, contact, window_of
from gateway.portal.web import is_htmx, portal_of, render, see_other, viewer_of

CHANNELS = tuple(c.value for c in Channel)


def _filters(request: Request) -> dict[str, str]:
    q = request.query_params
    out = {}
    if text := q.get("q", "").strip()[:200]:
        out["q"] = text
    if q.get("channel") in CHANNELS:
        out["channel"] = str(q.get("channel"))
    for flag in ("unread", "failed"):
        if q.get(flag) in ("1", "on", "true"):
            out[flag] = "1"
    return out


def rows_context(
    filters: dict[str, str], page: InboxPage, paged: bool, now: datetime, region: str
) -> dict[str, Any]:
    """What the list templates show of a page of summaries."""
    rows = [
        {
            "summary": s,
            "contact": contact(s, region),
            "window": window_of(s.whatsapp_inbound_at, now) if "whatsapp" in s.channels else None,
        }
        for s in page.items
    ]
    more = None
    if page.next_cursor:
        more = urlencode({**filters, "cursor": page.next_cursor})
    return {
        "rows": rows,
        "filters": filters,
        "query_string": urlencode(filters),
        "more": more,
        "paged": paged,
        "now": now,
        "channel_name": channel_name,
    }


async def _rows(request: Request) -> dict[str, Any]:
    portal = await portal_of(request)
    viewer = viewer_of(request)
    filters = _filters(request)
    query = InboxQuery(
        viewer.member.id,
        channel=filters.get("channel"),
        unread="unread" in filters,
        failed="failed" in filters,
        search=search.fold_query(filters.get("q", "")),
    )
    cursor = request.query_params.get("cursor") or None
    page = await portal.store.list_inbox(query, cursor, portal.settings.page_size)
    return rows_context(
        filters, page, cursor is not None, portal.rt.clock.now(), viewer.team.region
    )


async def inbox(request: Request) -> Response:
    """GET /: the member's conversations."""
    return render(request, "inbox.html", await _rows(request))


async def rows(request: Request) -> Response:
    """GET /inbox/rows: the list alone (htmx: filters, live refresh, next page)."""
    context = await _rows(request)
    name = "_more_rows.html" if context["paged"] else "_conversations.html"
    headers = {}
    if is_htmx(request) and not context["paged"]:
        headers["HX-Push-Url"] = "/" + (
            f"?{context['query_string']}" if context["query_string"] else ""
        )
    return render(request, name, context, headers=headers)


async def unread_badge(request: Request) -> Response:
    """GET /inbox/unread: the navigation's unread badge (live refresh)."""
    portal = await portal_of(request)
    viewer = viewer_of(request)
    total = await portal.store.unread_total(viewer.member.id)
    return render(request, "_unread_badge.html", {"unread_total": total})


def _channels_for(request: Request) -> list[str]:
    member = viewer_of(request).member
    out = []
    for channel in Channel:
        if addon_allows(member.addons, channel) and member.number_for(channel):
            out.append(channel.value)
    return out


async def new_page(request: Request) -> Response:
    """GET /new: start a conversation with a number."""
    channels = _channels_for(request)
    return render(request, "new.html", {"channels": channels, "error": None, "values": {}})


async def create(request: Request) -> Response:
    """POST /new: the conversation with that number (found or created), opened."""
    portal = await portal_of(request)
    viewer = viewer_of(request)
    form = await read_form(request)
    channels = _channels_for(request)
    values = {"number": str(form.get("number") or ""), "channel": str(form.get("channel") or "")}
    try:
        if values["channel"] not in channels:
            raise ValidationError(i18n._("Choose one of your channels."), field="channel")
        try:
            remote = normalize(values["number"], viewer.team.region)
        except ValidationError:
            raise ValidationError(
                i18n._("That is not a valid phone number."), field="number"
            ) from None
        own = viewer.member.number_for(Channel(values["channel"]))
        if own is None:
            raise ValidationError(i18n._("Choose one of your channels."), field="channel")
        if remote == own:
            raise ValidationError(i18n._("That is your own number."), field="number")
    except GatewayError as exc:
        context = {"channels": channels, "error": exc, "values": values}
        return render(request, "new.html", context, 422)
    conversation = await portal.rt.directory.conversation(
        viewer.team.id, viewer.member.id, own, remote, portal.rt.clock.now()
    )
    return see_other(f"/c/{conversation.id}?channel={values['channel']}", request)
