"""The core's operations in the OpenAPI document: prose, parameters and problem codes.

Written by hand from the handlers in ``gateway/api/v1.py`` and ``gateway/api/app.py``
(``tests/gateway/api/test_openapi.py`` holds them to the served routes and to real
answers); the request bodies refer to the schemas made from the typed commands.
"""

from __future__ import annotations

from typing import Any

from gateway.api.openapi_components import PERIOD_PATTERN
from gateway.api.openapi_kit import (
    AUTH,
    IDEMPOTENCY,
    INTERNAL,
    JSON,
    JSON_BODY,
    NOT_FOUND,
    Case,
    Codes,
    errors,
    json_response,
    operation,
    param,
    path_id,
    query_enum,
    ref,
    replayed,
)
from gateway.models import Channel, Direction, Status

SEND_ERRORS: Codes = {
    403: [
        Case("sender_not_owned"),
        Case("member_inactive"),
        Case("addon_missing"),
        Case("destination_blocked"),
    ],
    404: [Case("not_found", "the API key's team no longer exists")],
    422: [
        Case(
            "validation_error",
            "the body is not a JSON object of the documented fields, or a field is missing "
            "or invalid (see `field`)",
        ),
        Case("invalid_number"),
        Case("channel_unavailable"),
        Case("whatsapp_window_closed"),
    ],
}

MESSAGE_TOO_LARGE: Codes = {
    413: [Case("payload_too_large", "the body is larger than 256 KiB (declared or sent)")]
}


def _send_body(description: str) -> dict[str, Any]:
    return {
        "required": True,
        "description": description,
        "content": {JSON: {"schema": ref("SendRequest")}},
    }


def paths() -> dict[str, Any]:
    """The core's paths and their operations."""
    return {
        "/v1/messages": {
            "post": operation(
                "createMessage",
                "Send a message",
                "Messages",
                {
                    "202": json_response(
                        "Accepted: stored, charged to the member's quota and queued for "
                        "sending. Follow the status with `GET /v1/messages/{id}`.",
                        ref("Message"),
                        headers=replayed(),
                    ),
                    **errors(
                        AUTH,
                        JSON_BODY,
                        IDEMPOTENCY,
                        SEND_ERRORS,
                        MESSAGE_TOO_LARGE,
                        {402: [Case("quota_credit_limit")]},
                        {429: [Case("rate_limited")]},
                        INTERNAL,
                    ),
                },
                description="Accepts an outbound SMS, WhatsApp or fax message. A team key "
                "may send from any member's number, a member key only from its own.\n\n"
                "**WhatsApp 24-hour window**: a free-form WhatsApp message goes out only while "
                "the contact's window is open (they wrote to this number on WhatsApp in the "
                "last 24 hours; see `whatsapp_window` on the conversation). Outside it, send "
                'a `template`, or add `"fallback": "sms"` to send the text by SMS; without '
                "either the answer is 422 `whatsapp_window_closed`.\n\n"
                "**Fax**: `to` is a fax number; the fax is the optional `cover` page, then the "
                "`text` as a page, then the `attachments` (PDF, PNG, JPEG, TIFF; upload them "
                "first) in order. The documents are converted after the answer: the message "
                "goes `accepted` → `queued` (with `fax.pages`, and the `tiff`, `pdf` and "
                "`thumbnail` attachments) → `sending` (with `fax.pages_sent`; a `fax.page` "
                "event per confirmed page) → `sent` (with `fax.report`), back to `queued` "
                "with `fax.next_try` and `fax.retry_reason` when the line was busy or the "
                "call failed for now, or `failed` with the reason (an encrypted, broken or "
                "too long document; the unit is given back). One unit per fax.",
                parameters=[param("IdempotencyKey")],
                request_body=_send_body("The message to send."),
            ),
            "get": operation(
                "listMessages",
                "List messages",
                "Messages",
                {
                    "200": json_response(
                        "A page of messages, newest first.", ref("MessageList")
                    ),
                    **errors(
                        AUTH,
                        {
                            422: [
                                Case(
                                    "validation_error",
                                    "`limit`, `cursor`, `channel`, `direction` or `status` is "
                                    "not one of the documented values",
                                )
                            ]
                        },
                        INTERNAL,
                    ),
                },
                description="Messages in both directions, newest first, filtered and "
                "cursor-paged. A member key sees only its member's messages.",
                parameters=[
                    param("Limit"),
                    param("Cursor"),
                    {
                        "name": "conversation_id",
                        "in": "query",
                        "description": "Only messages of this conversation.",
                        "schema": {"type": "string"},
                    },
                    query_enum("channel", [c.value for c in Channel], "Only this channel."),
                    query_enum("direction", [d.value for d in Direction], "Only this direction."),
                    query_enum("status", [s.value for s in Status], "Only this status."),
                ],
            ),
        },
        "/v1/messages/preview": {
            "post": operation(
                "previewMessage",
                "Preview a message",
                "Messages",
                {
                    "200": json_response(
                        "Encoding, segments and quota units the message would take.",
                        ref("Preview"),
                        headers=replayed(),
                    ),
                    **errors(
                        AUTH, JSON_BODY, IDEMPOTENCY, SEND_ERRORS, MESSAGE_TOO_LARGE, INTERNAL
                    ),
                },
                description="Runs every check of `POST /v1/messages` that needs no write "
                "and answers what the message would cost; nothing is stored or charged. On "
                "whatsapp it shows the window, and whether the message would go by SMS.",
                parameters=[param("IdempotencyKey")],
                request_body=_send_body("The message to preview."),
            ),
        },
        "/v1/messages/{id}": {
            "parameters": path_id("message"),
            "get": operation(
                "getMessage",
                "Get a message",
                "Messages",
                {
                    "200": json_response(
                        "The message with its status history.", ref("MessageDetail")
                    ),
                    **errors(AUTH, NOT_FOUND, INTERNAL),
                },
            ),
        },
        "/v1/conversations": {
            "get": operation(
                "listConversations",
                "List conversations",
                "Conversations",
                {
                    "200": json_response(
                        "A page of conversations, latest activity first.",
                        ref("ConversationList"),
                    ),
                    **errors(
                        AUTH,
                        {
                            422: [
                                Case(
                                    "validation_error",
                                    "`limit` is out of range or `cursor` is malformed",
                                )
                            ]
                        },
                        INTERNAL,
                    ),
                },
                description="A member key sees only its member's conversations.",
                parameters=[param("Limit"), param("Cursor")],
            ),
        },
        "/v1/conversations/{id}": {
            "parameters": path_id("conversation"),
            "get": operation(
                "getConversation",
                "Get a conversation",
                "Conversations",
                {
                    "200": json_response("The conversation.", ref("Conversation")),
                    **errors(AUTH, NOT_FOUND, INTERNAL),
                },
            ),
        },
        "/v1/attachments": {
            "post": operation(
                "uploadAttachment",
                "Upload an attachment",
                "Attachments",
                {
                    "201": json_response(
                        "Stored; use the id in a message's `attachments`.",
                        ref("Attachment"),
                        headers=replayed(),
                    ),
                    **errors(
                        AUTH,
                        IDEMPOTENCY,
                        {413: [Case("payload_too_large")]},
                        {
                            415: [
                                Case(
                                    "unsupported_media_type", "the body is not multipart/form-data"
                                )
                            ]
                        },
                        {
                            422: [
                                Case(
                                    "validation_error",
                                    "the multipart body is malformed or has no non-empty "
                                    "file field named `file`",
                                )
                            ]
                        },
                        INTERNAL,
                    ),
                },
                description="Uploads one file (for WhatsApp media or fax documents). The "
                "file's content type is taken from its multipart part.",
                parameters=[param("IdempotencyKey")],
                request_body={
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["file"],
                                "properties": {
                                    "file": {
                                        "type": "string",
                                        "format": "binary",
                                        "contentMediaType": "application/octet-stream",
                                        "description": "The file, with its content type and "
                                        "filename in the part's headers.",
                                    }
                                },
                            },
                            "encoding": {"file": {"contentType": "*/*"}},
                        }
                    },
                },
            ),
        },
        "/v1/attachments/{id}": {
            "parameters": path_id("attachment"),
            "get": operation(
                "getAttachment",
                "Get an attachment's metadata",
                "Attachments",
                {
                    "200": json_response("The attachment.", ref("Attachment")),
                    **errors(AUTH, NOT_FOUND, INTERNAL),
                },
                description="Like messages, a member key sees only its member's attachments "
                "(its uploads and the media its member received) and the team key's "
                "uploads; another member's answer 404.",
            ),
        },
        "/v1/attachments/{id}/content": {
            "parameters": path_id("attachment"),
            "get": operation(
                "getAttachmentContent",
                "Download an attachment",
                "Attachments",
                {
                    "200": {
                        "description": "The bytes, with the attachment's stored content type "
                        "when it is passive; a type a browser would run or render as a page "
                        "(HTML, SVG, XML, JavaScript, CSS …) is served as "
                        "`application/octet-stream`.",
                        "headers": {
                            "ETag": {
                                "description": "The quoted SHA-256 of the bytes.",
                                "schema": {"type": "string"},
                            },
                            "Content-Disposition": {
                                "description": "Always `attachment` (RFC 6266): an ASCII "
                                'fallback `filename="…"` and the exact name as '
                                "`filename*=UTF-8''…` (RFC 5987); the attachment's id when it "
                                "has no filename.",
                                "schema": {"type": "string"},
                            },
                            "X-Content-Type-Options": {
                                "description": "`nosniff`.",
                                "schema": {"type": "string", "enum": ["nosniff"]},
                            },
                        },
                        "content": {
                            "application/octet-stream": {
                                "schema": {
                                    "type": "string",
                                    "format": "binary",
                                    "contentMediaType": "application/octet-stream",
                                }
                            },
                            "*/*": {"schema": {"type": "string", "format": "binary"}},
                        },
                    },
                    **errors(AUTH, NOT_FOUND, INTERNAL),
                },
            ),
        },
        **_forwarding_paths(),
        **_policy_paths(),
        "/v1/quota": {
            "get": operation(
                "getQuota",
                "Get quota usage",
                "Quota",
                {
                    "200": json_response(
                        "Included, used and overage units per member and channel, and the "
                        "team's overage cost.",
                        ref("Quota"),
                    ),
                    **errors(
                        AUTH,
                        {404: [Case("not_found", "the API key's team no longer exists")]},
                        {422: [Case("validation_error", "`period` is not YYYY-MM")]},
                        INTERNAL,
                    ),
                },
                description="A member key sees only its own member.",
                parameters=[
                    {
                        "name": "period",
                        "in": "query",
                        "description": "The month (YYYY-MM, in the gateway's time zone); "
                        "default: the current month.",
                        "schema": {"type": "string", "pattern": PERIOD_PATTERN},
                        "example": "2026-03",
                    }
                ],
            ),
        },
        "/healthz": {
            "get": operation(
                "getHealth",
                "Liveness",
                "Operations",
                {"200": json_response("The process is alive.", ref("Health"))},
                public=True,
            ),
        },
        "/readyz": {
            "get": operation(
                "getReadiness",
                "Readiness",
                "Operations",
                {
                    "200": json_response(
                        "The store answers and every connector can send.", ref("Ready")
                    ),
                    "503": json_response(
                        "The store or a connector is not ready. (This is a readiness "
                        "report, not a problem document.) Which one, and why, is logged and "
                        "shown to operator keys by `GET /v1/health`.",
                        ref("Ready"),
                    ),
                },
                public=True,
            ),
        },
        "/v1/health": {
            "get": operation(
                "getOperatorHealth",
                "Health report (operator)",
                "Operations",
                {
                    "200": json_response(
                        "The readiness of the store and of every connector, with what is "
                        "wrong (`detail`).",
                        ref("HealthReport"),
                    ),
                    **errors(
                        AUTH,
                        {403: [Case("forbidden", "the key is a team's or a member's")]},
                        INTERNAL,
                    ),
                },
                description="For the gateway's operator: an operator key (`gateway admin key "
                "create --operator`) is needed; team and member keys answer 403. The "
                "public `/readyz` answers the status only.",
            ),
        },
        "/metrics": {
            "get": operation(
                "getMetrics",
                "Prometheus metrics",
                "Operations",
                {
                    "200": {
                        "description": "Metrics in the Prometheus text exposition format.",
                        "content": {"text/plain; version=0.0.4": {"schema": {"type": "string"}}},
                    }
                },
                public=True,
            ),
        },
        "/v1/openapi.json": {
            "get": operation(
                "getOpenApiDocument",
                "This OpenAPI document",
                "Operations",
                {
                    "200": json_response(
                        "The OpenAPI 3.1 document of this API.",
                        {"type": "object", "required": ["openapi", "info", "paths"]},
                    )
                },
                public=True,
            ),
        },
    }


# -- forwarding rules (GET/PUT /v1/members/{id}/forwarding) ------------------------------
def _forwarding_paths() -> dict[str, Any]:
    access: Codes = {
        403: [Case("forbidden", "a member key asked about another member of its team")],
        404: [Case("not_found", "no such member in the API key's team")],
    }
    return {
        "/v1/members/{id}/forwarding": {
            "parameters": path_id("member"),
            "get": operation(
                "getForwarding",
                "Get a member's forwarding rules",
                "Forwarding",
                {
                    "200": json_response("The rules.", ref("ForwardingRules")),
                    **errors(AUTH, access, INTERNAL),
                },
                description="A team key may read any member's rules, a member key only its own.",
            ),
            "put": operation(
                "putForwarding",
                "Replace a member's forwarding rules",
                "Forwarding",
                {
                    "200": json_response("The rules as stored.", ref("ForwardingRules")),
                    **errors(
                        AUTH,
                        JSON_BODY,
                        access,
                        {
                            403: [
                                Case(
                                    "addon_missing",
                                    "`sms` lists numbers but the member has not booked the "
                                    "sms (or whatsapp) add-on",
                                )
                            ],
                            413: [Case("payload_too_large", "the body is larger than 64 KiB")],
                            422: [
                                Case(
                                    "validation_error",
                                    "a field is wrong; `field` names it, with the index in a "
                                    "list (`email[1]`): not an address, a duplicate, too "
                                    "many entries, the member's own number, an unknown field",
                                ),
                                Case(
                                    "invalid_number",
                                    "an `sms` entry is not a valid mobile number (`field` "
                                    "names it)",
                                ),
                                Case("smtp_not_configured"),
                            ],
                        },
                        INTERNAL,
                    ),
                },
                description="Replaces the rules whole. Inbound SMS and WhatsApp messages "
                "received from then on are forwarded; each forward is a durable job, retried "
                "while the SMTP relay is unavailable. A team key may change any member's "
                "rules, a member key only its own.",
                request_body={
                    "required": True,
                    "content": {JSON: {"schema": ref("ForwardingRulesUpdate")}},
                },
            ),
        },
    }


# -- outbound policy (GET/PUT /v1/policy) ------------------------------------------------
def _policy_paths() -> dict[str, Any]:
    team_gone: Codes = {404: [Case("not_found", "the API key's team no longer exists")]}
    return {
        "/v1/policy": {
            "get": operation(
                "getPolicy",
                "Get the outbound policy",
                "Policy",
                {
                    "200": json_response("The effective policy.", ref("Policy")),
                    **errors(AUTH, team_gone, INTERNAL),
                },
                description="Destination screening (country allowlist, prefix rules) and "
                "send limits that every send of the team passes: API, portal, email-to-fax "
                "and forwards.",
            ),
            "put": operation(
                "putPolicy",
                "Replace the team's outbound policy",
                "Policy",
                {
                    "200": json_response("The effective policy as stored.", ref("Policy")),
                    **errors(
                        AUTH,
                        JSON_BODY,
                        {403: [Case("forbidden", "a member key; only a team key may")]},
                        team_gone,
                        {413: [Case("payload_too_large", "the body is larger than 1 MiB")]},
                        {
                            422: [
                                Case(
                                    "validation_error",
                                    "the body is not an object of the documented fields, or "
                                    "a field is wrong (`field` names it): an unknown field, "
                                    "a country code, a prefix, a limit that is not a positive "
                                    "whole number, a prefix both blocked and allowed",
                                )
                            ]
                        },
                        INTERNAL,
                    ),
                },
                description="Team keys only. Takes effect at once in the process that "
                "answers, and within 5 seconds in every other.",
                request_body={
                    "required": True,
                    "content": {JSON: {"schema": ref("PolicyUpdate")}},
                },
            ),
        },
    }
