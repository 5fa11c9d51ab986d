"""The OpenAPI document's components: schemas and shared parameters.

The request bodies' schemas are made from the typed commands (``gateway.commands``:
``SendRequest``, ``ForwardingRules``, ``PolicyUpdate``), so a rule is written once, as the
command's type; the answers' schemas are written here, from the views the handlers build.
"""

from __future__ import annotations

from typing import Any

from gateway.api.helpers import DEFAULT_LIMIT, MAX_LIMIT
from gateway.api.idempotency import MAX_KEY
from gateway.api.openapi_kit import id_schema, nullable, ref, timestamp
from gateway.commands import ForwardingRules, PolicyUpdate, SendRequest
from gateway.commands import schemas as schemas_of
from gateway.destinations import FIELDS as POLICY_FIELDS
from gateway.models import Channel, Direction, Status

# Same pattern as ``gateway.quota.check_period``.
PERIOD_PATTERN = r"^(\d{4})-(0[1-9]|1[0-2])$"
# Amounts in EUR as decimal strings with at least two decimals (``gateway.quota.euros``).
EUROS_PATTERN = r"^\d+\.\d{2,}$"


def schemas() -> dict[str, Any]:
    """Every component schema of the core's operations."""
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
    requests = _requests()
    return {
        **requests,
        "MessageStatus": {
            "type": "string",
            "enum": [s.value for s in Status],
            "description": "One status model for every channel: outbound messages move "
            "accepted → queued/sending → sent → delivered → read, or to failed; inbound "
            "messages are received.",
        },
        "MessageError": {
            "type": "object",
            "required": ["code", "message"],
            "description": "Why a message failed: a normalized code and the carrier's own.",
            "properties": {
                "code": {"type": "string", "examples": ["unreachable", "whatsapp_window_closed"]},
                "message": {"type": "string"},
                "carrier_code": nullable("string"),
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
                    "items": ref("StatusChange"),
                },
            },
        },
        "StatusChange": {
            "type": "object",
            "required": ["status", "at"],
            "properties": {
                "status": ref("MessageStatus"),
                "at": timestamp("When the message reached the status"),
            },
        },
        "MessageList": {
            "type": "object",
            "required": ["data", "next_cursor"],
            "properties": {
                "data": {"type": "array", "items": ref("Message")},
                "next_cursor": ref("NextCursor"),
            },
        },
        "NextCursor": nullable(
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
                "id": id_schema("conv", "conversation"),
                "member_id": id_schema("mem", "member"),
                "member_number": {"type": "string", "description": "The member's number."},
                "remote_number": {"type": "string", "description": "The contact's number."},
                "created_at": timestamp("When the conversation started"),
                "last_message_at": timestamp("The latest message in either direction"),
                "whatsapp_window": ref("WhatsAppWindow"),
            },
        },
        "ConversationList": {
            "type": "object",
            "required": ["data", "next_cursor"],
            "properties": {
                "data": {"type": "array", "items": ref("Conversation")},
                "next_cursor": ref("NextCursor"),
            },
        },
        "Attachment": {
            "type": "object",
            "required": ["id", "content_type", "size", "sha256", "filename", "created_at"],
            "properties": {
                "id": id_schema("att", "attachment"),
                "content_type": {"type": "string", "examples": ["application/pdf"]},
                "size": {"type": "integer", "minimum": 0, "description": "Bytes."},
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "filename": nullable("string"),
                "created_at": timestamp("When it was uploaded or received"),
            },
        },
        "Preview": {
            "type": "object",
            "required": ["channel", "encoding", "segments", "units"],
            "properties": {
                "channel": ref("Channel"),
                "encoding": {
                    "type": ["string", "null"],
                    "enum": ["gsm7", "ucs2", None],
                    "description": "The SMS encoding; null on other channels.",
                },
                "segments": {"type": "integer", "minimum": 1},
                "units": {"type": "integer", "minimum": 1},
                **_window_message_properties(),
                "whatsapp_window": {
                    **ref("WhatsAppWindow"),
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
                "team_id": id_schema("team", "team"),
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
                            "member_id": id_schema("mem", "member"),
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
        **_rules(requests),
        **_window(),
        **_fax(),
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
            "required": ["status"],
            "properties": {"status": {"type": "string", "enum": ["ok", "unavailable"]}},
        },
        "HealthReport": {
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


def _message_properties() -> dict[str, Any]:
    return {
        "id": id_schema("msg", "message"),
        "channel": ref("Channel"),
        "direction": {"type": "string", "enum": [d.value for d in Direction]},
        "from": {
            "type": "string",
            "description": "The sender: E.164 for members' numbers (the carrier's sender id "
            "on inbound messages).",
        },
        "to": {"type": "string", "description": "The recipient (E.164)."},
        "text": nullable("string", description="The text; null for attachment-only messages."),
        "attachments": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Attachment ids (see `GET /v1/attachments/{id}`).",
        },
        "status": ref("MessageStatus"),
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
        "conversation_id": id_schema("conv", "conversation"),
        "member_id": id_schema("mem", "member"),
        "created_at": timestamp("When the gateway accepted or received the message"),
        "updated_at": timestamp("The last status change"),
        "fallback": {
            "type": "string",
            "enum": ["sms"],
            "description": "As requested: a WhatsApp message that falls back to SMS.",
        },
        **_window_message_properties(),
        "fax": ref("FaxProgress"),
        "error": ref("MessageError"),
    }


_MESSAGE_REQUIRED = [
    "id", "channel", "direction", "from", "to", "text", "attachments", "status", "units",
    "segments", "encoding", "conversation_id", "member_id", "created_at", "updated_at",
]  # fmt: skip


# -- the WhatsApp window and its SMS fallback (gateway/window.py) -------------------------
def _window_message_properties() -> dict[str, Any]:
    """What messages and previews show about a template and a fallback that was used."""
    return {
        "template": ref("WhatsAppTemplate"),
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


def _fax() -> dict[str, Any]:
    """A fax message's pages, progress, documents, report and retry schedule."""
    count = {"type": "integer", "minimum": 0}
    return {
        "FaxProgress": {
            "type": "object",
            "description": "Fax messages only: what the fax channel knows of this fax. A "
            "send that failed for now (busy, no answer, a broken-off transmission) goes "
            "back to `queued` with `next_try` and `retry_reason`: its `message.status` "
            "event (status `queued`) says when the fax will be tried again and why.",
            "properties": {
                "pages": {**count, "description": "Pages of the fax."},
                "pages_sent": {**count, "description": "Pages the far end confirmed."},
                "phase": {"type": "string", "enum": ["converting", "dialling", "sending"]},
                "tiff": {"type": "string", "description": "Attachment id: the TIFF-F pages."},
                "pdf": {"type": "string", "description": "Attachment id: the fax as PDF."},
                "thumbnail": {"type": "string", "description": "Attachment id: page 1 (PNG)."},
                "report": {
                    "type": "object",
                    "description": "The transmission report (both directions).",
                    "properties": {
                        "pages": count,
                        "bit_rate": {"type": "integer"},
                        "ecm": {"type": "boolean"},
                        "resolution": {"type": "string", "enum": ["fine", "standard"]},
                        "remote_csi": {"type": "string"},
                        "duration_s": {"type": "number"},
                        "result": {"type": "string", "description": "The T.30 result in words."},
                        "t30_code": {"type": "integer"},
                    },
                },
                "tries": {**count, "description": "Answered calls that failed so far."},
                "dials": {**count, "description": "Calls made so far."},
                "next_try": timestamp("When a fax that failed for now is tried again"),
                "retry_reason": {
                    "type": "string",
                    "description": "Why the last attempt failed, in words (e.g. `the line "
                    "was busy`); with `next_try`.",
                },
                "cover": {"type": "object", "description": "The cover page as requested."},
            },
        },
    }


def _window() -> dict[str, Any]:
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
                    **timestamp(
                        "When the window closes (in the past: when it closed); null when "
                        "the contact never wrote on WhatsApp"
                    ),
                    "type": ["string", "null"],
                },
            },
        },
    }


def parameters() -> dict[str, Any]:
    """The parameters operations share (``openapi_kit.param``)."""
    return {
        "IdempotencyKey": {
            "name": "Idempotency-Key",
            "in": "header",
            "required": False,
            "description": "Run the request at most once per key and caller (a member key's "
            "keys are its own; a team key's are shared by the team's team keys): a retry with the "
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


def _requests() -> dict[str, Any]:
    """The request bodies' schemas, made from the commands, and what they use."""
    return schemas_of(
        [SendRequest, ForwardingRules, PolicyUpdate],
        {ForwardingRules: "ForwardingRulesUpdate"},
    )


def _rules(asked: dict[str, Any]) -> dict[str, Any]:
    """The forwarding rules and the policy as answered: the fields the commands take
    (``asked``: their schemas), in their stored form."""
    rules = {
        k: v
        for k, v in asked["ForwardingRulesUpdate"]["properties"].items()
        if k in ("enabled", "channels", "email", "sms")
    }
    stored_prefix = {"type": "string", "pattern": r"^\+[0-9]{1,15}$"}
    policy = {}
    for name, schema in asked["PolicyUpdate"]["properties"].items():
        if name.endswith("_prefixes"):
            schema = {**schema, "items": stored_prefix}
        policy[name] = schema
    return {
        "ForwardingRules": {
            "type": "object",
            "description": "A member's forwarding rules (the default forwards nothing).",
            "required": ["member_id", "enabled", "channels", "email", "sms", "updated_at"],
            "properties": {
                "member_id": id_schema("mem", "member"),
                **rules,
                "updated_at": {
                    **nullable("string", format="date-time"),
                    "description": "When the rules were last replaced; null if never.",
                },
            },
        },
        "Policy": {
            "type": "object",
            "description": "The team's effective outbound policy: the provider's defaults "
            "with the team's override on top.",
            "required": [*POLICY_FIELDS, "team_fields", "updated_at"],
            "properties": {
                **policy,
                "team_fields": {
                    "type": "array",
                    "items": {"type": "string", "enum": list(POLICY_FIELDS)},
                    "description": "The fields the team's override sets (the others are "
                    "the provider's defaults).",
                },
                "updated_at": {
                    **nullable("string", format="date-time"),
                    "description": "When the team's override was stored; null if never.",
                },
                "locked_prefixes": {
                    "type": "array",
                    "items": stored_prefix,
                    "description": "The provider's locked prefixes: refused on SMS and fax "
                    "whatever the team's override says (no allowed prefix may lie under "
                    "one; a team cannot set this field). Default: +49900, +49137.",
                },
            },
        },
    }
