"""The OpenAPI 3.1 document of the API as served (``GET /v1/openapi.json``).

Written by hand from the handlers in ``gateway/api/v1.py`` and ``gateway/api/app.py``;
``tests/gateway/api/test_openapi.py`` keeps it honest: the documented (path, method) pairs
must equal the served routes, and real responses must validate against the documented
schemas. Enumerations and limits are taken from the code itself wherever the code names
them, so they cannot drift.

Every error answer is an RFC 9457 problem document (``application/problem+json``) with a
stable machine ``code``; each operation lists the codes it can answer per status.
"""

from __future__ import annotations

import functools
from http import HTTPStatus
from typing import Any, NamedTuple

from gateway import __version__
from gateway.api.idempotency import MAX_KEY
from gateway.api.problems import PROBLEM_TYPE
from gateway.api.v1 import DEFAULT_LIMIT, MAX_LIMIT
from gateway.destinations import FIELDS as POLICY_FIELDS
from gateway.destinations import MAX_LIMIT as MAX_POLICY_LIMIT
from gateway.destinations import MAX_PREFIXES, MAX_WINDOW_SECONDS
from gateway.forwarding import FORWARDABLE, MAX_EMAIL, MAX_SMS
from gateway.models import Channel, Direction, Status
from gateway.outbound import MAX_ATTACHMENTS, MAX_TEXT

JSON = "application/json"
BEARER = "bearerAuth"

# Same pattern as ``gateway.quota.check_period``.
PERIOD_PATTERN = r"^(\d{4})-(0[1-9]|1[0-2])$"
# Amounts in EUR as decimal strings with at least two decimals (``gateway.quota.euros``).
EUROS_PATTERN = r"^\d+\.\d{2,}$"

# What each problem ``code`` means (title as served, explanation); the response
# descriptions and examples are built from this.
CODES: dict[str, tuple[str, str]] = {
    "unauthorized": (
        "Unauthorized",
        "the Authorization header is missing, not `Bearer <api key>`, or names an unknown key",
    ),
    "validation_error": (
        "Invalid request",
        "the request is not acceptable (the `field` member names the offending field where "
        "there is one)",
    ),
    "malformed_request": (
        "Malformed request",
        "the request cannot be parsed: the body is not JSON, or a header is malformed",
    ),
    "unsupported_media_type": (
        "Unsupported media type",
        "the body is not in the format the route accepts",
    ),
    "invalid_number": ("Invalid request", "a phone number cannot be parsed or is not valid"),
    "channel_unavailable": (
        "Channel unavailable",
        "no configured connector serves this channel and sender; nothing was queued",
    ),
    "whatsapp_window_closed": (
        "WhatsApp window closed",
        "a free-form WhatsApp message outside the contact's 24-hour window (the contact has "
        "not written to this number on WhatsApp in the last 24 hours); send a `template`, "
        'or repeat with `"fallback": "sms"` to send it by SMS (`fallback` names it when an '
        "SMS connector serves the sender); nothing was charged or queued",
    ),
    "sender_not_owned": (
        "Forbidden",
        "`from` is not a number of the calling member (member key) or of a member of the "
        "team (team key) on this channel",
    ),
    "member_inactive": ("Forbidden", "the sending member is deactivated"),
    "addon_missing": ("Forbidden", "the sending member has not booked the channel's add-on"),
    "forbidden": ("Forbidden", "the API key may not act on this object"),
    "smtp_not_configured": (
        "Invalid request",
        "the gateway has no SMTP relay configured (`[smtp]`), so it cannot send email",
    ),
    "quota_credit_limit": (
        "Credit limit reached",
        "the send would take the team's overage past its credit limit",
    ),
    "destination_blocked": (
        "Destination blocked",
        "the team's outbound policy refuses the destination: its country is not in the "
        "allowlist, or it matches a blocked prefix (`rule` says which; see "
        "`GET /v1/policy`); nothing was charged or queued",
    ),
    "rate_limited": (
        "Rate limited",
        "a send limit of the team's outbound policy is reached (`limit`: `destination`, "
        "messages to one number, or `member`, messages by one member); retry after "
        "`retry_after` seconds (also the `Retry-After` header); nothing was charged or queued",
    ),
    "not_found": ("Not found", "the object does not exist or belongs to another team"),
    "payload_too_large": (
        "Payload too large",
        "the upload is larger than the configured limit (`gateway.max_attachment_bytes`)",
    ),
    "idempotency_key_reused": (
        "Idempotency key reused",
        "this Idempotency-Key was used with a different request",
    ),
    "idempotency_in_progress": (
        "Request in progress",
        "a request with this Idempotency-Key is still being processed",
    ),
    "internal_error": ("Internal error", "an unexpected error; the request may be retried"),
    "store_unavailable": (
        "Service unavailable",
        "the gateway's store cannot be reached right now; nothing was done: retry after "
        "`Retry-After` seconds (a send with the same Idempotency-Key is stored at most once)",
    ),
}


class Case(NamedTuple):
    """One way an operation can fail: the problem ``code``, and what it means here and the
    title served when they differ from ``CODES``."""

    code: str
    text: str | None = None
    title: str | None = None

    def explanation(self) -> str:
        """What the code means for this operation."""
        return self.text or CODES[self.code][1]


# Problem cases by HTTP status.
Codes = dict[int, list[Case]]

AUTH: Codes = {401: [Case("unauthorized")]}
INTERNAL: Codes = {500: [Case("internal_error")], 503: [Case("store_unavailable")]}
NOT_FOUND: Codes = {404: [Case("not_found")]}
IDEMPOTENCY: Codes = {
    400: [
        Case(
            "malformed_request",
            f"the Idempotency-Key header is empty or longer than {MAX_KEY} characters",
        )
    ],
    409: [Case("idempotency_in_progress")],
    422: [Case("idempotency_key_reused")],
}
JSON_BODY: Codes = {400: [Case("malformed_request", "the body is not valid JSON")]}
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


def _schema(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], **extra}


def _timestamp(description: str) -> dict[str, Any]:
    return {
        "type": "string",
        "format": "date-time",
        "description": f"{description} (RFC 3339, UTC, milliseconds).",
        "examples": ["2026-03-15T12:00:00.000Z"],
    }


def _id(prefix: str, what: str) -> dict[str, Any]:
    return {
        "type": "string",
        "description": f"The {what}'s id.",
        "examples": [f"{prefix}_01KKQ2Y7V0B8D6X9M3T5R4N2PZ"],
    }


def _json_response(description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}, **extra}


def _problem_response(
    status: int, cases: list[Case], extension: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A problem response whose ``code`` is one of ``cases``; ``extension`` documents
    further members."""
    names = list(dict.fromkeys(case.code for case in cases))
    lines = [f"- `{case.code}`: {case.explanation()}" for case in cases]
    examples: dict[str, Any] = {}
    for case in cases:
        name = case.code
        while name in examples:
            name += "_"
        examples[name] = {
            "summary": case.explanation(),
            "value": {
                "type": f"https://docs.gateway.example/problems/{case.code}",
                "title": case.title or CODES[case.code][0],
                "status": status,
                "code": case.code,
                "detail": case.explanation(),
            },
        }
    constraint: dict[str, Any] = {
        "properties": {
            "status": {"const": status},
            "code": {"enum": names},
            **(extension or {}),
        }
    }
    response: dict[str, Any] = {
        "description": f"{HTTPStatus(status).phrase}. The problem's `code` is one of:\n\n"
        + "\n".join(lines),
        "content": {
            PROBLEM_TYPE: {
                "schema": {"allOf": [_schema("Problem"), constraint]},
                "examples": examples,
            }
        },
    }
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"$ref": "#/components/headers/WWWAuthenticate"}}
    if status in (429, 503):
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return response


def _errors(*groups: Codes) -> dict[str, Any]:
    """Problem responses merged from ``{status: [case, ...]}`` groups."""
    merged: Codes = {}
    for group in groups:
        for status, codes in group.items():
            merged.setdefault(status, []).extend(codes)
    extension: dict[int, dict[str, Any]] = {
        402: {
            "overage_micros": {
                "type": "integer",
                "description": "The team's overage this period before the send, in micro-euros.",
            },
            "cost_micros": {
                "type": "integer",
                "description": "The overage cost the send would add, in micro-euros.",
            },
            "credit_limit_micros": {
                "type": "integer",
                "description": "The team's credit limit, in micro-euros.",
            },
        }
    }
    extension.update(_policy_problem_members(merged))
    for status, members in _window_problem_members(merged).items():
        extension[status] = {**extension.get(status, {}), **members}
    return {
        str(status): _problem_response(status, merged[status], extension.get(status))
        for status in sorted(merged)
    }


def _message_properties() -> dict[str, Any]:
    return {
        "id": _id("msg", "message"),
        "channel": _schema("Channel"),
        "direction": {"type": "string", "enum": [d.value for d in Direction]},
        "from": {
            "type": "string",
            "description": "The sender: E.164 for members' numbers (the carrier's sender id "
            "on inbound messages).",
        },
        "to": {"type": "string", "description": "The recipient (E.164)."},
        "text": _nullable("string", description="The text; null for attachment-only messages."),
        "attachments": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Attachment ids (see `GET /v1/attachments/{id}`).",
        },
        "status": _schema("MessageStatus"),
        "units": {
            "type": "integer",
            "minimum": 0,
            "description": "Quota units charged (outbound) to the member's monthly allowance.",
        },
        "segments": {
            "type": "integer",
            "minimum": 0,
            "description": "Carrier segments (SMS parts); 1 on other channels.",
        },
        "encoding": {
            "type": ["string", "null"],
            "enum": ["gsm7", "ucs2", None],
            "description": "The SMS encoding; null on other channels.",
        },
        "conversation_id": _id("conv", "conversation"),
        "member_id": _id("mem", "member"),
        "created_at": _timestamp("When the gateway accepted or received the message"),
        "updated_at": _timestamp("The last status change"),
        "fallback": {
            "type": "string",
            "enum": ["sms"],
            "description": "As requested: a WhatsApp message that falls back to SMS.",
        },
        **_window_message_properties(),
        "error": _schema("MessageError"),
    }


_MESSAGE_REQUIRED = [
    "id", "channel", "direction", "from", "to", "text", "attachments", "status", "units",
    "segments", "encoding", "conversation_id", "member_id", "created_at", "updated_at",
]  # fmt: skip


def _schemas() -> dict[str, Any]:
    usage = {
        "type": "object",
        "required": ["included", "used", "remaining", "overage", "overage_price", "overage_cost"],
        "properties": {
            "included": {"type": "integer", "minimum": 0, "description": "Units included."},
            "used": {"type": "integer", "minimum": 0, "description": "Units used."},
            "remaining": {"type": "integer", "minimum": 0, "description": "Included units left."},
            "overage": {
                "type": "integer",
                "minimum": 0,
                "description": "Units over the allowance.",
            },
            "overage_price": {
                "type": "string",
                "pattern": EUROS_PATTERN,
                "description": "EUR per unit over the allowance.",
            },
            "overage_cost": {
                "type": "string",
                "pattern": EUROS_PATTERN,
                "description": "EUR owed for this member and channel's overage.",
            },
        },
    }
    check = {
        "type": "object",
        "required": ["ok"],
        "properties": {
            "ok": {"type": "boolean"},
            "detail": {
                "type": "string",
                "description": "Why it is not ok, or the connector's view.",
            },
        },
    }
    max_text = max(MAX_TEXT.values())
    max_attachments = max(MAX_ATTACHMENTS.values())
    return {
        "Channel": {"type": "string", "enum": [c.value for c in Channel]},
        "MessageStatus": {
            "type": "string",
            "enum": [s.value for s in Status],
            "description": "One status model for every channel: outbound messages move "
            "accepted → queued/sending → sent → delivered → read, or to failed; inbound "
            "messages are received.",
        },
        "SendRequest": {
            "type": "object",
            "additionalProperties": False,
            "required": ["channel", "from", "to"],
            "description": "An outbound message. It needs `text` or `attachments` (or both); "
            "a null field counts as absent.",
            "properties": {
                "channel": _schema("Channel"),
                "from": {
                    "type": "string",
                    "description": "A number of the sending member: the mobile number for sms "
                    "and whatsapp, the fax number for fax. E.164, or national format of the "
                    "team's region.",
                    "examples": ["+4915112345671"],
                },
                "to": {
                    "type": "string",
                    "description": "The recipient; E.164, or national format of the team's region.",
                    "examples": ["+4917612345678"],
                },
                "text": _nullable(
                    "string",
                    maxLength=max_text,
                    description="The text; at most "
                    + ", ".join(f"{n} characters on {c.value}" for c, n in MAX_TEXT.items())
                    + ".",
                ),
                "attachments": _nullable(
                    "array",
                    items={"type": "string"},
                    maxItems=max_attachments,
                    description="Ids of uploaded attachments (`POST /v1/attachments`); at most "
                    + ", ".join(f"{n} on {c.value}" for c, n in MAX_ATTACHMENTS.items())
                    + ".",
                ),
                "fallback": {
                    "type": ["string", "null"],
                    "enum": ["sms", None],
                    "description": 'Only on whatsapp: "sms" sends the message as SMS when '
                    "WhatsApp refuses it for the 24-hour window: at once when the window is "
                    "closed (the answer then has `channel` sms, `requested_channel` whatsapp "
                    "and `fallback_used` sms; SMS add-on, units and segments), or later if "
                    "WhatsApp refuses it all the same (error 131047): its WhatsApp units go "
                    "back and the SMS units are charged. The message must fit an SMS: text "
                    f"only, at most {MAX_TEXT[Channel.SMS]} characters.",
                },
                "template": _schema("WhatsAppTemplate"),
            },
        },
        "MessageError": {
            "type": "object",
            "required": ["code", "message"],
            "description": "Why a message failed: a normalized code and the carrier's own.",
            "properties": {
                "code": {"type": "string", "examples": ["unreachable", "whatsapp_window_closed"]},
                "message": {"type": "string"},
                "carrier_code": _nullable("string"),
                "retryable": {"type": "boolean"},
            },
        },
        "Message": {
            "type": "object",
            "required": _MESSAGE_REQUIRED,
            "properties": _message_properties(),
        },
        "MessageDetail": {
            "type": "object",
            "description": "A message with its status history (oldest first).",
            "required": [*_MESSAGE_REQUIRED, "history"],
            "properties": {
                **_message_properties(),
                "history": {
                    "type": "array",
                    "items": _schema("StatusChange"),
                },
            },
        },
        "StatusChange": {
            "type": "object",
            "required": ["status", "at"],
            "properties": {
                "status": _schema("MessageStatus"),
                "at": _timestamp("When the message reached the status"),
            },
        },
        "MessageList": {
            "type": "object",
            "required": ["data", "next_cursor"],
            "properties": {
                "data": {"type": "array", "items": _schema("Message")},
                "next_cursor": _schema("NextCursor"),
            },
        },
        "NextCursor": _nullable(
            "string",
            description="Pass as `cursor` to get the next page; null on the last page.",
        ),
        "Conversation": {
            "type": "object",
            "description": "A member's number and a remote number; SMS and WhatsApp with one "
            "contact share it.",
            "required": [
                "id",
                "member_id",
                "member_number",
                "remote_number",
                "created_at",
                "last_message_at",
                "whatsapp_window",
            ],
            "properties": {
                "id": _id("conv", "conversation"),
                "member_id": _id("mem", "member"),
                "member_number": {"type": "string", "description": "The member's number."},
                "remote_number": {"type": "string", "description": "The contact's number."},
                "created_at": _timestamp("When the conversation started"),
                "last_message_at": _timestamp("The latest message in either direction"),
                "whatsapp_window": _schema("WhatsAppWindow"),
            },
        },
        "ConversationList": {
            "type": "object",
            "required": ["data", "next_cursor"],
            "properties": {
                "data": {"type": "array", "items": _schema("Conversation")},
                "next_cursor": _schema("NextCursor"),
            },
        },
        "Attachment": {
            "type": "object",
            "required": ["id", "content_type", "size", "sha256", "filename", "created_at"],
            "properties": {
                "id": _id("att", "attachment"),
                "content_type": {"type": "string", "examples": ["application/pdf"]},
                "size": {"type": "integer", "minimum": 0, "description": "Bytes."},
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "filename": _nullable("string"),
                "created_at": _timestamp("When it was uploaded or received"),
            },
        },
        "Preview": {
            "type": "object",
            "required": ["channel", "encoding", "segments", "units"],
            "properties": {
                "channel": _schema("Channel"),
                "encoding": {
                    "type": ["string", "null"],
                    "enum": ["gsm7", "ucs2", None],
                    "description": "The SMS encoding; null on other channels.",
                },
                "segments": {"type": "integer", "minimum": 1},
                "units": {"type": "integer", "minimum": 1},
                **_window_message_properties(),
                "whatsapp_window": {
                    **_schema("WhatsAppWindow"),
                    "description": "On whatsapp: the contact's 24-hour window now.",
                },
            },
        },
        "Quota": {
            "type": "object",
            "required": [
                "period",
                "team_id",
                "currency",
                "credit_limit",
                "overage_cost",
                "members",
            ],
            "properties": {
                "period": {"type": "string", "pattern": PERIOD_PATTERN, "examples": ["2026-03"]},
                "team_id": _id("team", "team"),
                "currency": {"type": "string", "const": "EUR"},
                "credit_limit": {
                    "type": "string",
                    "pattern": EUROS_PATTERN,
                    "description": "How much overage the team may run up in one period (EUR).",
                },
                "overage_cost": {
                    "type": "string",
                    "pattern": EUROS_PATTERN,
                    "description": "The team's overage cost in the period (EUR).",
                },
                "members": {
                    "type": "array",
                    "description": "Every member the key sees (a member key: only itself).",
                    "items": {
                        "type": "object",
                        "required": ["member_id", "name", "channels"],
                        "properties": {
                            "member_id": _id("mem", "member"),
                            "name": {"type": "string"},
                            "channels": {
                                "type": "object",
                                "required": [c.value for c in Channel],
                                "properties": {c.value: usage for c in Channel},
                            },
                        },
                    },
                },
            },
        },
        **_forwarding_schemas(),
        **_policy_schemas(),
        **_window_schemas(),
        "Problem": {
            "type": "object",
            "description": "An RFC 9457 problem document; further members may appear.",
            "required": ["type", "title", "status", "code", "detail"],
            "additionalProperties": True,
            "properties": {
                "type": {
                    "type": "string",
                    "format": "uri",
                    "examples": ["https://docs.gateway.example/problems/not_found"],
                },
                "title": {"type": "string"},
                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                "code": {"type": "string", "description": "A stable machine-readable code."},
                "detail": {"type": "string"},
                "instance": {
                    "type": "string",
                    "format": "uri-reference",
                    "description": "The request path.",
                },
                "field": {
                    "type": "string",
                    "description": "The offending request field (validation errors).",
                },
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"type": "string", "const": "ok"}},
        },
        "Ready": {
            "type": "object",
            "required": ["status", "checks"],
            "properties": {
                "status": {"type": "string", "enum": ["ok", "unavailable"]},
                "checks": {
                    "type": "object",
                    "required": ["store", "connectors"],
                    "properties": {
                        "store": check,
                        "connectors": {
                            "type": "object",
                            "description": "By connector id.",
                            "additionalProperties": {**check, "required": ["ok", "detail"]},
                        },
                    },
                },
            },
        },
    }


def _param(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/parameters/{name}"}


def _parameters() -> dict[str, Any]:
    return {
        "IdempotencyKey": {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "Run the request at most once per team and key: a retry with the "
            "same key and body replays the first answer (with `Idempotency-Replayed: true`), "
            "the same key with another request answers 422 `idempotency_key_reused`, and a "
            "key whose first request is still running answers 409 "
            "`idempotency_in_progress`. Server errors (5xx) release the key.",
            "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY},
        },
        "Limit": {
            "name": "limit",
            "in": "query",
            "description": "Page size.",
            "schema": {
                "type": "integer",
                "minimum": 1,
                "maximum": MAX_LIMIT,
                "default": DEFAULT_LIMIT,
            },
        },
        "Cursor": {
            "name": "cursor",
            "in": "query",
            "description": "The `next_cursor` of the previous page (opaque).",
            "schema": {"type": "string"},
        },
    }


def _path_id(what: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "id",
            "in": "path",
            "required": True,
            "description": f"The {what}'s id.",
            "schema": {"type": "string"},
        }
    ]


def _query_enum(name: str, values: list[str], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": "string", "enum": values},
    }


def _operation(
    operation_id: str,
    summary: str,
    tag: str,
    responses: dict[str, Any],
    *,
    description: str | None = None,
    parameters: list[dict[str, Any]] | None = None,
    request_body: dict[str, Any] | None = None,
    public: bool = False,
) -> dict[str, Any]:
    op: dict[str, Any] = {"operationId": operation_id, "summary": summary, "tags": [tag]}
    if description:
        op["description"] = description
    if parameters:
        op["parameters"] = parameters
    if request_body:
        op["requestBody"] = request_body
    op["responses"] = responses
    if public:
        op["security"] = []
    return op


def _replayed() -> dict[str, Any]:
    return {"Idempotency-Replayed": {"$ref": "#/components/headers/IdempotencyReplayed"}}


def _send_body(description: str) -> dict[str, Any]:
    return {
        "required": True,
        "description": description,
        "content": {JSON: {"schema": _schema("SendRequest")}},
    }


def _paths() -> dict[str, Any]:
    return {
        "/v1/messages": {
            "post": _operation(
                "createMessage",
                "Send a message",
                "Messages",
                {
                    "202": _json_response(
                        "Accepted: stored, charged to the member's quota and queued for "
                        "sending. Follow the status with `GET /v1/messages/{id}`.",
                        _schema("Message"),
                        headers=_replayed(),
                    ),
                    **_errors(
                        AUTH,
                        JSON_BODY,
                        IDEMPOTENCY,
                        SEND_ERRORS,
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
                "either the answer is 422 `whatsapp_window_closed`.",
                parameters=[_param("IdempotencyKey")],
                request_body=_send_body("The message to send."),
            ),
            "get": _operation(
                "listMessages",
                "List messages",
                "Messages",
                {
                    "200": _json_response(
                        "A page of messages, newest first.", _schema("MessageList")
                    ),
                    **_errors(
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
                    _param("Limit"),
                    _param("Cursor"),
                    {
                        "name": "conversation_id",
                        "in": "query",
                        "description": "Only messages of this conversation.",
                        "schema": {"type": "string"},
                    },
                    _query_enum("channel", [c.value for c in Channel], "Only this channel."),
                    _query_enum("direction", [d.value for d in Direction], "Only this direction."),
                    _query_enum("status", [s.value for s in Status], "Only this status."),
                ],
            ),
        },
        "/v1/messages/preview": {
            "post": _operation(
                "previewMessage",
                "Preview a message",
                "Messages",
                {
                    "200": _json_response(
                        "Encoding, segments and quota units the message would take.",
                        _schema("Preview"),
                        headers=_replayed(),
                    ),
                    **_errors(AUTH, JSON_BODY, IDEMPOTENCY, SEND_ERRORS, INTERNAL),
                },
                description="Runs every check of `POST /v1/messages` that needs no write "
                "and answers what the message would cost; nothing is stored or charged. On "
                "whatsapp it shows the window, and whether the message would go by SMS.",
                parameters=[_param("IdempotencyKey")],
                request_body=_send_body("The message to preview."),
            ),
        },
        "/v1/messages/{id}": {
            "parameters": _path_id("message"),
            "get": _operation(
                "getMessage",
                "Get a message",
                "Messages",
                {
                    "200": _json_response(
                        "The message with its status history.", _schema("MessageDetail")
                    ),
                    **_errors(AUTH, NOT_FOUND, INTERNAL),
                },
            ),
        },
        "/v1/conversations": {
            "get": _operation(
                "listConversations",
                "List conversations",
                "Conversations",
                {
                    "200": _json_response(
                        "A page of conversations, latest activity first.",
                        _schema("ConversationList"),
                    ),
                    **_errors(
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
                parameters=[_param("Limit"), _param("Cursor")],
            ),
        },
        "/v1/conversations/{id}": {
            "parameters": _path_id("conversation"),
            "get": _operation(
                "getConversation",
                "Get a conversation",
                "Conversations",
                {
                    "200": _json_response("The conversation.", _schema("Conversation")),
                    **_errors(AUTH, NOT_FOUND, INTERNAL),
                },
            ),
        },
        "/v1/attachments": {
            "post": _operation(
                "uploadAttachment",
                "Upload an attachment",
                "Attachments",
                {
                    "201": _json_response(
                        "Stored; use the id in a message's `attachments`.",
                        _schema("Attachment"),
                        headers=_replayed(),
                    ),
                    **_errors(
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
                parameters=[_param("IdempotencyKey")],
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
            "parameters": _path_id("attachment"),
            "get": _operation(
                "getAttachment",
                "Get an attachment's metadata",
                "Attachments",
                {
                    "200": _json_response("The attachment.", _schema("Attachment")),
                    **_errors(AUTH, NOT_FOUND, INTERNAL),
                },
            ),
        },
        "/v1/attachments/{id}/content": {
            "parameters": _path_id("attachment"),
            "get": _operation(
                "getAttachmentContent",
                "Download an attachment",
                "Attachments",
                {
                    "200": {
                        "description": "The bytes, with the attachment's stored content type.",
                        "headers": {
                            "ETag": {
                                "description": "The quoted SHA-256 of the bytes.",
                                "schema": {"type": "string"},
                            },
                            "Content-Disposition": {
                                "description": '`attachment; filename="…"` when the '
                                "attachment has a filename.",
                                "schema": {"type": "string"},
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
                    **_errors(AUTH, NOT_FOUND, INTERNAL),
                },
            ),
        },
        **_forwarding_paths(),
        **_policy_paths(),
        "/v1/quota": {
            "get": _operation(
                "getQuota",
                "Get quota usage",
                "Quota",
                {
                    "200": _json_response(
                        "Included, used and overage units per member and channel, and the "
                        "team's overage cost.",
                        _schema("Quota"),
                    ),
                    **_errors(
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
            "get": _operation(
                "getHealth",
                "Liveness",
                "Operations",
                {"200": _json_response("The process is alive.", _schema("Health"))},
                public=True,
            ),
        },
        "/readyz": {
            "get": _operation(
                "getReadiness",
                "Readiness",
                "Operations",
                {
                    "200": _json_response(
                        "The store answers and every connector can send.", _schema("Ready")
                    ),
                    "503": _json_response(
                        "The store or a connector is not ready; `checks` says which. (This "
                        "is a readiness report, not a problem document.)",
                        _schema("Ready"),
                    ),
                },
                public=True,
            ),
        },
        "/metrics": {
            "get": _operation(
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
            "get": _operation(
                "getOpenApiDocument",
                "This OpenAPI document",
                "Operations",
                {
                    "200": _json_response(
                        "The OpenAPI 3.1 document of this API.",
                        {"type": "object", "required": ["openapi", "info", "paths"]},
                    )
                },
                public=True,
            ),
        },
    }


# -- forwarding rules (GET/PUT /v1/members/{id}/forwarding) ------------------------------
def _forwarding_properties() -> dict[str, Any]:
    return {
        "enabled": {
            "type": "boolean",
            "description": "Off: nothing is forwarded (the lists are kept).",
            "default": True,
        },
        "channels": {
            "type": "array",
            "items": {"type": "string", "enum": list(FORWARDABLE)},
            "uniqueItems": True,
            "maxItems": len(FORWARDABLE),
            "description": "The inbound channels whose messages are forwarded.",
            "default": list(FORWARDABLE),
        },
        "email": {
            "type": "array",
            "items": {"type": "string", "format": "email"},
            "maxItems": MAX_EMAIL,
            "description": "Addresses that get each inbound message as an email (free): "
            "the text, the time and the channel, with WhatsApp media attached. Bare "
            "addresses only (no display names); needs the gateway's SMTP relay.",
            "examples": [["anna@acme.example"]],
        },
        "sms": {
            "type": "array",
            "items": {"type": "string"},
            "maxItems": MAX_SMS,
            "description": "Mobile numbers that get each inbound message as an SMS "
            "(`Fwd <sender>: <text>`) from the member's mobile number. Each forward is "
            "an outbound SMS charged to the member like any other (units x recipients); "
            "needs the sms add-on (WhatsApp includes it). A forward the credit limit "
            "refuses is not sent and not retried (a `forward.failed` event says so). "
            "E.164 or national format; answered in E.164.",
            "examples": [["+4917612345678"]],
        },
    }


def _forwarding_schemas() -> dict[str, Any]:
    return {
        "ForwardingRules": {
            "type": "object",
            "description": "A member's forwarding rules (the default forwards nothing).",
            "required": ["member_id", "enabled", "channels", "email", "sms", "updated_at"],
            "properties": {
                "member_id": _id("mem", "member"),
                **_forwarding_properties(),
                "updated_at": {
                    **_nullable("string", format="date-time"),
                    "description": "When the rules were last replaced; null if never.",
                },
            },
        },
        "ForwardingRulesUpdate": {
            "type": "object",
            "additionalProperties": False,
            "description": "The new rules; they replace the old ones whole, and a field "
            "left out takes its default. `member_id` and `updated_at` (as GET answers them) "
            "may be sent back: `member_id` must name the member, `updated_at` is ignored.",
            "properties": {
                **_forwarding_properties(),
                "member_id": {"type": "string", "description": "Must be the path's member."},
                "updated_at": {"description": "Ignored."},
            },
        },
    }


def _forwarding_paths() -> dict[str, Any]:
    access: Codes = {
        403: [Case("forbidden", "a member key asked about another member of its team")],
        404: [Case("not_found", "no such member in the API key's team")],
    }
    return {
        "/v1/members/{id}/forwarding": {
            "parameters": _path_id("member"),
            "get": _operation(
                "getForwarding",
                "Get a member's forwarding rules",
                "Forwarding",
                {
                    "200": _json_response("The rules.", _schema("ForwardingRules")),
                    **_errors(AUTH, access, INTERNAL),
                },
                description="A team key may read any member's rules, a member key only its own.",
            ),
            "put": _operation(
                "putForwarding",
                "Replace a member's forwarding rules",
                "Forwarding",
                {
                    "200": _json_response("The rules as stored.", _schema("ForwardingRules")),
                    **_errors(
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
                    "content": {JSON: {"schema": _schema("ForwardingRulesUpdate")}},
                },
            ),
        },
    }


# -- outbound policy (GET/PUT /v1/policy; destination_blocked, rate_limited) -------------
def _policy_problem_members(merged: Codes) -> dict[int, dict[str, Any]]:
    """The extension members of the policy's problems, for the statuses that answer them."""
    out: dict[int, dict[str, Any]] = {}
    if any(case.code == "destination_blocked" for case in merged.get(403, [])):
        out[403] = {
            "rule": {
                "type": "string",
                "enum": ["country", "blocked_prefix"],
                "description": "`destination_blocked`: the rule that refused the destination.",
            },
            "country": {
                "type": "string",
                "description": "`destination_blocked` by `country`: the destination's country "
                "(absent for international networks, which have none).",
            },
            "prefix": {
                "type": "string",
                "description": "`destination_blocked` by `blocked_prefix`: the matching prefix.",
            },
        }
    if 429 in merged:
        out[429] = {
            "limit": {"type": "string", "enum": ["destination", "member"]},
            "max": {"type": "integer", "description": "Sends allowed per window."},
            "window_seconds": {"type": "integer", "description": "The window's length."},
            "retry_after": {
                "type": "integer",
                "minimum": 1,
                "description": "Seconds until the limit has room again (as `Retry-After`).",
            },
        }
    return out


def _policy_properties(stored: bool) -> dict[str, Any]:
    """The policy's fields; ``stored``: as answered (normal form) rather than as sent."""
    prefix: dict[str, Any] = (
        {"type": "string", "pattern": r"^\+[0-9]{1,15}$"}
        if stored
        else {
            "type": "string",
            "description": "E.164 (`+49900`) or national notation in the team's region "
            "(`0900`, `118`).",
        }
    )
    limit = "null" if stored else "null to turn the limit off"
    window = {"type": "integer", "minimum": 1, "maximum": MAX_WINDOW_SECONDS}
    return {
        "countries": {
            "type": "array",
            "items": {"type": "string", "pattern": r"^([A-Za-z]{2}|\*)$"},
            "description": "ISO 3166-1 alpha-2 countries a screened destination may be in; "
            '`["*"]`: any. Default: the EU-27.',
        },
        "blocked_prefixes": {
            "type": "array",
            "items": prefix,
            "maxItems": MAX_PREFIXES,
            "description": "Number prefixes that refuse a screened destination. Default: "
            "the German premium and special ranges +49137, +49180, +49190, +49900, +49118.",
        },
        "allowed_prefixes": {
            "type": "array",
            "items": prefix,
            "maxItems": MAX_PREFIXES,
            "description": "Exceptions: the longest prefix of the number found in either "
            "list decides (an allowed `+491801234` re-opens part of a blocked `+49180`); "
            "an allowed prefix also admits a country not in `countries`.",
        },
        "destination_channels": {
            "type": "array",
            "items": _schema("Channel"),
            "uniqueItems": True,
            "description": "The channels whose destinations are screened. Default: sms, fax "
            "(WhatsApp is delivered by Meta, not a phone carrier; a WhatsApp message with "
            "the SMS `fallback` is screened as an SMS when sms is listed).",
        },
        "destination_limit": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": MAX_POLICY_LIMIT,
            "description": "Accepted sends (every channel) to one number per "
            f"`destination_window_seconds`; {limit}. Default: 20.",
        },
        "destination_window_seconds": {**window, "description": "Default: 3600."},
        "member_limit": {
            "type": ["integer", "null"],
            "minimum": 1,
            "maximum": MAX_POLICY_LIMIT,
            "description": "Accepted sends (every channel) by one member per "
            f"`member_window_seconds`; {limit}. Default: 60.",
        },
        "member_window_seconds": {**window, "description": "Default: 60."},
    }


def _policy_schemas() -> dict[str, Any]:
    return {
        "Policy": {
            "type": "object",
            "description": "The team's effective outbound policy: the provider's defaults "
            "with the team's override on top.",
            "required": [*POLICY_FIELDS, "team_fields", "updated_at"],
            "properties": {
                **_policy_properties(stored=True),
                "team_fields": {
                    "type": "array",
                    "items": {"type": "string", "enum": list(POLICY_FIELDS)},
                    "description": "The fields the team's override sets (the others are "
                    "the provider's defaults).",
                },
                "updated_at": {
                    **_nullable("string", format="date-time"),
                    "description": "When the team's override was stored; null if never.",
                },
                "locked_prefixes": {
                    "type": "array",
                    "items": {"type": "string", "pattern": r"^\+[0-9]{1,15}$"},
                    "description": "The provider's locked prefixes: refused on SMS and fax "
                    "whatever the team's override says (no allowed prefix may lie under "
                    "one; a team cannot set this field). Default: +49900, +49137.",
                },
            },
        },
        "PolicyUpdate": {
            "type": "object",
            "additionalProperties": False,
            "description": "The team's new override; it replaces the old one whole, and a "
            "field left out takes the provider's default (`{}` resets everything).",
            "properties": _policy_properties(stored=False),
        },
    }


def _policy_paths() -> dict[str, Any]:
    team_gone: Codes = {404: [Case("not_found", "the API key's team no longer exists")]}
    return {
        "/v1/policy": {
            "get": _operation(
                "getPolicy",
                "Get the outbound policy",
                "Policy",
                {
                    "200": _json_response("The effective policy.", _schema("Policy")),
                    **_errors(AUTH, team_gone, INTERNAL),
                },
                description="Destination screening (country allowlist, prefix rules) and "
                "send limits that every send of the team passes: API, portal, email-to-fax "
                "and forwards.",
            ),
            "put": _operation(
                "putPolicy",
                "Replace the team's outbound policy",
                "Policy",
                {
                    "200": _json_response("The effective policy as stored.", _schema("Policy")),
                    **_errors(
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
                    "content": {JSON: {"schema": _schema("PolicyUpdate")}},
                },
            ),
        },
    }


# -- end outbound policy -----------------------------------------------------------------
def _build(server_url: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Messaging gateway API",
            "version": __version__,
            "description": "SMS, WhatsApp Business and fax in one message store, with "
            "per-member monthly quotas.\n\n"
            "**Authentication**: every `/v1` operation but this document needs "
            "`Authorization: Bearer <api key>`. A team key acts for the whole team, a member "
            "key for one member.\n\n"
            "**Idempotency**: every POST takes an optional `Idempotency-Key` header.\n\n"
            "**Errors** are RFC 9457 problem documents (`application/problem+json`) with a "
            "stable `code`.\n\n"
            "**Pagination**: lists answer `{data, next_cursor}`; pass `next_cursor` as "
            "`cursor` for the next page.",
        },
        "servers": [{"url": server_url}],
        "tags": [
            {"name": "Messages", "description": "Send, preview, list and read messages."},
            {"name": "Conversations", "description": "A member's threads with one contact."},
            {"name": "Attachments", "description": "Files for WhatsApp media and faxes."},
            {"name": "Quota", "description": "Monthly units, overage and credit limit."},
            {
                "name": "Forwarding",
                "description": "Members' rules for forwarding inbound SMS and WhatsApp "
                "messages by email (free) and SMS (charged).",
            },
            {
                "name": "Policy",
                "description": "The team's outbound policy: destination countries and "
                "prefixes, and send limits.",
            },
            {"name": "Operations", "description": "Health, readiness, metrics, this document."},
        ],
        "security": [{BEARER: []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <api key>`.",
                }
            },
            "parameters": _parameters(),
            "headers": {
                "IdempotencyReplayed": {
                    "description": "`true` when the answer is the stored answer of an earlier "
                    "request with the same Idempotency-Key.",
                    "schema": {"type": "string", "const": "true"},
                },
                "WWWAuthenticate": {
                    "description": "`Bearer`.",
                    "schema": {"type": "string"},
                },
                "RetryAfter": {
                    "description": "Seconds to wait before trying again (429: until the send "
                    "limit has room again; 503: until the store may be back).",
                    "schema": {"type": "string", "pattern": "^[1-9][0-9]*$"},
                },
            },
            "schemas": _schemas(),
        },
    }


@functools.lru_cache(maxsize=8)
def _cached(server_url: str) -> dict[str, Any]:
    return _with_extensions(_build(server_url))


# -- extensions (gateway.extensions: webhooks/) document their own routes -------------
def _with_extensions(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with each extension's paths, schemas, tags and webhooks merged in."""
    from gateway.extensions import extensions

    for ext in extensions():
        part = ext.openapi()
        doc["paths"].update(part.get("paths", {}))
        doc["components"]["schemas"].update(part.get("schemas", {}))
        doc["tags"] += part.get("tags", [])
        if part.get("webhooks"):
            doc.setdefault("webhooks", {}).update(part["webhooks"])
    return doc


# -- end extensions ------------------------------------------------------------------------


def openapi_document(server_url: str) -> dict[str, Any]:
    """The OpenAPI 3.1.0 document of the API served at ``server_url``.

    Built once per ``server_url`` and cached: the returned dict is SHARED between callers
    and must not be mutated (``JSONResponse`` only serialises it); ``copy.deepcopy`` it to
    change anything.
    """
    return _cached(server_url)


# -- the WhatsApp window and its SMS fallback (gateway/window.py) -------------------------
def _window_message_properties() -> dict[str, Any]:
    """What messages and previews show about a template and a fallback that was used."""
    return {
        "template": _schema("WhatsAppTemplate"),
        "requested_channel": {
            "type": "string",
            "enum": [Channel.WHATSAPP.value],
            "description": "Only when the SMS fallback was used: the channel the message was "
            "sent for (`channel` is where it goes now).",
        },
        "fallback_used": {
            "type": "string",
            "enum": ["sms"],
            "description": "Only when the SMS fallback was used: the channel it went to.",
        },
        "fallback_reason": {
            "type": "string",
            "enum": ["whatsapp_window_closed"],
            "description": "Only when the SMS fallback was used: why.",
        },
    }


def _window_schemas() -> dict[str, Any]:
    return {
        "WhatsAppWindow": {
            "type": "object",
            "description": "The 24-hour customer service window of this member's number with "
            "this contact on WhatsApp: it opens (or restarts) with each WhatsApp message the "
            "contact sends (their message's own timestamp), and free-form WhatsApp messages "
            "go out only while it is open.",
            "required": ["open", "expires_at"],
            "properties": {
                "open": {"type": "boolean"},
                "expires_at": {
                    **_timestamp(
                        "When the window closes (in the past: when it closed); null when "
                        "the contact never wrote on WhatsApp"
                    ),
                    "type": ["string", "null"],
                },
            },
        },
        "WhatsAppTemplate": {
            "type": "object",
            "additionalProperties": False,
            "description": "Only on whatsapp: send this approved message template instead of "
            "`text` and `attachments`. Templates may be sent outside the 24-hour window, so "
            "they take no `fallback`. One unit per template message.",
            "required": ["name", "language"],
            "properties": {
                "name": {
                    "type": "string",
                    "pattern": "^[a-z0-9_]{1,512}$",
                    "examples": ["order_update"],
                },
                "language": {
                    "description": 'The template\'s language code (`"de"`, `"en_US"`); '
                    'answers show it as `{"code": …}`, the form WhatsApp takes.',
                    "oneOf": [
                        {"type": "string", "pattern": "^[a-z]{2,3}(_[A-Za-z]{2,4})?$"},
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["code"],
                            "properties": {
                                "code": {
                                    "type": "string",
                                    "pattern": "^[a-z]{2,3}(_[A-Za-z]{2,4})?$",
                                }
                            },
                        },
                    ],
                },
                "components": {
                    "type": "array",
                    "description": "The template's parameters, as WhatsApp's Cloud API takes "
                    "them (header, body, button …).",
                    "items": {
                        "type": "object",
                        "required": ["type"],
                        "additionalProperties": True,
                        "properties": {
                            "type": {
                                "type": "string",
                                "enum": [
                                    "header",
                                    "body",
                                    "footer",
                                    "button",
                                    "carousel",
                                    "limited_time_offer",
                                ],
                            }
                        },
                    },
                },
            },
        },
    }


def _window_problem_members(merged: Codes) -> dict[int, dict[str, Any]]:
    """The members of a ``whatsapp_window_closed`` problem, for the statuses that answer it."""
    if not any(case.code == "whatsapp_window_closed" for case in merged.get(422, [])):
        return {}
    return {
        422: {
            "whatsapp_window": {
                **_schema("WhatsAppWindow"),
                "description": "`whatsapp_window_closed`: the window as checked.",
            },
            "fallback": {
                "type": "string",
                "enum": ["sms"],
                "description": '`whatsapp_window_closed`: repeat with `"fallback": "sms"` to '
                "send the message by SMS (absent when no connector serves sms from the sender).",
            },
        }
    }
