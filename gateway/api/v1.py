"""The ``/v1`` routes: messages, conversations, attachments and quota."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway import forwarding, outbound, policy, window
from gateway.api.downloads import download
from gateway.api.helpers import (
    choice_param,
    cursor_param,
    json_response,
    limit_param,
    posted,
    read_body,
    team_principal,
)
from gateway.api.helpers import principal as caller
from gateway.api.idempotency import idempotent, reserved_id
from gateway.api.problems import from_error
from gateway.auth import Principal
from gateway.commands import SendRequest, decode, parse
from gateway.errors import (
    GatewayError,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationError,
)
from gateway.ids import new_id
from gateway.models import Attachment, Channel, Conversation, Direction, Status, Team, iso
from gateway.quota import check_period, period_of, quota_report
from gateway.runtime import Runtime
from gateway.store.base import MessageFilter

# Cursors are opaque to clients but checked here, so a mangled one is a 422, not a 500.
_MESSAGE_CURSOR = re.compile(r"^[a-z]+_[0-9A-Z]{26}$")
_CONVERSATION_CURSOR = re.compile(r"^\d{1,15}:[a-z]+_[0-9A-Z]{26}$")


def _rt(request: Request) -> Runtime:
    """The runtime the app serves, whole: the core's routes use the core's services with it
    (extensions' routes see it as a ``Host``, ``gateway.api.helpers.runtime``)."""
    rt: Runtime = request.app.state.rt
    return rt


# -- messages ----------------------------------------------------------------------------
# A send is a few hundred bytes; a long text or a template with many parameters a few KiB.
MESSAGE_BODY_LIMIT = 256 * 1024
MESSAGE_TOO_LARGE = f"the body is larger than the limit of {MESSAGE_BODY_LIMIT} bytes"


async def create_message(request: Request) -> Response:
    """POST /v1/messages: accept an outbound message (202)."""

    async def action(rt: Runtime, principal: Principal, raw: bytes) -> Response:
        # With an Idempotency-Key the message's id is reserved with the key, so a retry
        # after a crash answers the message the first attempt stored (never a second one).
        command = decode(SendRequest, raw)
        accepted = await outbound.submit(rt, principal, command, message_id=reserved_id(request))
        return json_response(accepted.view, 202)

    return await posted(
        request, action, limit=MESSAGE_BODY_LIMIT, too_large=MESSAGE_TOO_LARGE, resumable="msg"
    )


async def preview_message(request: Request) -> Response:
    """POST /v1/messages/preview: encoding, segments and units without sending."""

    async def action(rt: Runtime, principal: Principal, raw: bytes) -> Response:
        draft = await outbound.draft(rt, principal, decode(SendRequest, raw))
        return json_response(draft.preview())

    return await posted(request, action, limit=MESSAGE_BODY_LIMIT, too_large=MESSAGE_TOO_LARGE)


async def get_message(request: Request) -> Response:
    """GET /v1/messages/{id}."""
    rt, principal = _rt(request), await caller(request)
    msg = await rt.store.get_message(request.path_params["id"])
    if msg is None or msg.team_id != principal.team_id or not principal.sees_member(msg.member_id):
        raise NotFound("message not found")
    data = msg.public()
    data["history"] = [
        {"status": h.status, "at": iso(h.at)} for h in await rt.store.status_history(msg.id)
    ]
    return json_response(data)


async def list_messages(request: Request) -> Response:
    """GET /v1/messages: newest first, filtered, cursor-paged."""
    rt, principal = _rt(request), await caller(request)
    q = request.query_params
    flt = MessageFilter(
        team_id=principal.team_id,
        member_id=principal.member_id,
        conversation_id=q.get("conversation_id") or None,
        channel=choice_param(request, "channel", sorted(c.value for c in Channel)),
        direction=choice_param(request, "direction", sorted(d.value for d in Direction)),
        status=choice_param(request, "status", sorted(s.value for s in Status)),
    )
    cursor = cursor_param(request, _MESSAGE_CURSOR)
    page = await rt.store.list_messages(flt, cursor, limit_param(request))
    data = [m.public() for m in page.items]
    return json_response({"data": data, "next_cursor": page.next_cursor})


# -- conversations -----------------------------------------------------------------------
def conversation_view(conv: Conversation, now: datetime) -> dict[str, Any]:
    """A conversation as the API shows it, with its WhatsApp window at ``now``."""
    return {
        "id": conv.id,
        "member_id": conv.member_id,
        "member_number": conv.member_number,
        "remote_number": conv.remote_number,
        "created_at": iso(conv.created_at),
        "last_message_at": iso(conv.last_message_at),
        "whatsapp_window": window.of_conversation(conv, now).view(),
    }


async def list_conversations(request: Request) -> Response:
    """GET /v1/conversations: latest activity first."""
    rt, principal = _rt(request), await caller(request)
    page = await rt.store.list_conversations(
        principal.team_id,
        principal.member_id,
        cursor_param(request, _CONVERSATION_CURSOR),
        limit_param(request),
    )
    return json_response(
        {
            "data": [conversation_view(c, rt.clock.now()) for c in page.items],
            "next_cursor": page.next_cursor,
        }
    )


async def get_conversation(request: Request) -> Response:
    """GET /v1/conversations/{id}."""
    rt, principal = _rt(request), await caller(request)
    conv = await rt.store.get_conversation(request.path_params["id"])
    if (
        conv is None
        or conv.team_id != principal.team_id
        or not principal.sees_member(conv.member_id)
    ):
        raise NotFound("conversation not found")
    return json_response(conversation_view(conv, rt.clock.now()))


# -- attachments -------------------------------------------------------------------------
async def upload_attachment(request: Request) -> Response:
    """POST /v1/attachments: multipart upload of one ``file`` → its id and digest."""
    rt, principal = _rt(request), await caller(request)
    max_size = rt.settings.max_attachment_bytes
    # The multipart envelope adds a little; the file itself is checked exactly below.
    raw = await read_body(request, max_size + 64 * 1024)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UnsupportedMediaType("upload the file as multipart/form-data in a field named 'file'")

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": raw, "more_body": False}

    path = request.url.path

    async def run() -> Response:
        try:
            async with Request(request.scope, replay).form(max_files=1, max_fields=10) as form:
                upload = form.get("file")
                if not isinstance(upload, UploadFile):
                    raise ValidationError("the multipart body has no file field named 'file'")
                data = await upload.read()
                content_type = upload.content_type or "application/octet-stream"
                filename = upload.filename
        except GatewayError as exc:
            return from_error(exc, path)
        except Exception as exc:  # the multipart parser's own errors
            return from_error(ValidationError(f"malformed multipart body: {exc}"), path)
        if len(data) > max_size:
            too_large = PayloadTooLarge(f"the file is larger than the limit of {max_size} bytes")
            return from_error(too_large, path)
        if not data:
            return from_error(ValidationError("the file is empty", field="file"), path)
        sha = rt.blobs.put(data)
        att = Attachment(
            new_id("att"),
            principal.team_id,
            sha,
            len(data),
            content_type,
            filename,
            rt.clock.now(),
            principal.member_id,
        )
        await rt.store.put_attachment(att)
        return json_response(att.public(), 201)

    return await idempotent(rt, request, principal, raw, run)


async def _attachment(request: Request) -> Attachment:
    rt, principal = _rt(request), await caller(request)
    att = await rt.store.get_attachment(request.path_params["id"])
    if att is None or not att.visible_to(principal.team_id, principal.member_id):
        raise NotFound("attachment not found")
    return att


async def get_attachment(request: Request) -> Response:
    """GET /v1/attachments/{id}: the attachment's metadata."""
    return json_response((await _attachment(request)).public())


async def get_attachment_content(request: Request) -> Response:
    """GET /v1/attachments/{id}/content: the bytes, always as an attachment to save."""
    att = await _attachment(request)
    return download(att, _rt(request).blobs.get(att.sha256))


# -- quota -------------------------------------------------------------------------------
async def get_quota(request: Request) -> Response:
    """GET /v1/quota?period=YYYY-MM: per member and channel usage (default: this month)."""
    rt, principal = _rt(request), await caller(request)
    period = request.query_params.get("period") or period_of(rt.clock.now(), rt.settings.tz)
    check_period(period)
    team = await rt.store.get_team(principal.team_id)
    if team is None:
        raise NotFound("team not found")
    members = [m for m in await rt.store.list_members(team.id) if principal.sees_member(m.id)]
    return json_response(await quota_report(rt.store, rt.settings.tariff, team, members, period))


# -- forwarding rules --------------------------------------------------------------------
FORWARDING_BODY_LIMIT = 64 * 1024


async def get_forwarding(request: Request) -> Response:
    """GET /v1/members/{id}/forwarding: the member's forwarding rules."""
    rt, principal = _rt(request), await caller(request)
    return json_response(await forwarding.get_rules(rt, principal, request.path_params["id"]))


async def put_forwarding(request: Request) -> Response:
    """PUT /v1/members/{id}/forwarding: replace the member's forwarding rules."""
    rt, principal = _rt(request), await caller(request)
    # Parsed now, checked once the member is known: a broken body is a 400 before a 404,
    # an unknown member a 404 before a refused rule.
    body = parse(await read_body(request, FORWARDING_BODY_LIMIT))
    rules = await forwarding.put_rules(rt, principal, request.path_params["id"], body)
    return json_response(rules)


# -- outbound policy ---------------------------------------------------------------------
POLICY_BODY_LIMIT = 1024 * 1024  # room for thousands of prefixes


async def _policy_team(rt: Runtime, principal: Principal) -> Team:
    team = await rt.store.get_team(principal.team_id)
    if team is None:
        raise NotFound("team not found")
    return team


async def get_policy(request: Request) -> Response:
    """GET /v1/policy: the team's effective outbound policy, and which fields it sets."""
    rt, principal = _rt(request), await caller(request)
    team = await _policy_team(rt, principal)
    return json_response((await policy.book(rt).effective(team, rt.settings.policy)).view())


async def put_policy(request: Request) -> Response:
    """PUT /v1/policy: replace the team's override of the outbound policy (team keys)."""
    rt = _rt(request)
    principal = await team_principal(
        request, "only a team key may change the team's outbound policy"
    )
    team = await _policy_team(rt, principal)
    body = parse(await read_body(request, POLICY_BODY_LIMIT))
    book = policy.book(rt)
    effective = await book.replace(team, body, rt.settings.policy, rt.clock.now())
    return json_response(effective.view())


# -- end outbound policy -----------------------------------------------------------------
ROUTES = [
    Route("/v1/messages", create_message, methods=["POST"]),
    Route("/v1/messages", list_messages, methods=["GET"]),
    Route("/v1/messages/preview", preview_message, methods=["POST"]),
    Route("/v1/messages/{id}", get_message, methods=["GET"]),
    Route("/v1/conversations", list_conversations, methods=["GET"]),
    Route("/v1/conversations/{id}", get_conversation, methods=["GET"]),
    Route("/v1/attachments", upload_attachment, methods=["POST"]),
    Route("/v1/attachments/{id}", get_attachment, methods=["GET"]),
    Route("/v1/attachments/{id}/content", get_attachment_content, methods=["GET"]),
    Route("/v1/quota", get_quota, methods=["GET"]),
    Route("/v1/policy", get_policy, methods=["GET"]),
    Route("/v1/policy", put_policy, methods=["PUT"]),
    Route("/v1/members/{id}/forwarding", get_forwarding, methods=["GET"]),
    Route("/v1/members/{id}/forwarding", put_forwarding, methods=["PUT"]),
]
