"""Building blocks of the OpenAPI document (public to extensions).

The core's operations (``openapi_paths.py``) and an extension's (``webhooks/openapi.py``)
are written with these, so that every operation documents authentication, idempotency
and its problem answers alike: each lists, per HTTP status, the problem ``code``s it can
answer (:class:`Case`), and :func:`errors` turns those lists into problem responses with
their descriptions, schemas and examples.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, NamedTuple

from gateway.api.idempotency import MAX_KEY
from gateway.api.problems import PROBLEM_TYPE

JSON = "application/json"
BEARER = "bearerAuth"

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
        "no configured connector serves this channel and sender, or an SMS fallback has no "
        "number to go from (it goes from the member's mobile number, which a member whose "
        "WhatsApp number is a landline may not have); nothing was queued",
    ),
    "whatsapp_window_closed": (
        "WhatsApp window closed",
        "a free-form WhatsApp message outside the contact's 24-hour window (the contact has "
        "not written to this number on WhatsApp in the last 24 hours); send a `template`, "
        'or repeat with `"fallback": "sms"` to send it by SMS from the member\'s mobile '
        "number (`fallback` names it when the member has one and an SMS connector serves it; "
        "otherwise `detail` says why there is no SMS fallback); nothing was charged or queued",
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


def ref(name: str) -> dict[str, Any]:
    """A reference to the component schema ``name``."""
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str, **extra: Any) -> dict[str, Any]:
    """A schema of JSON type ``kind`` or null."""
    return {"type": [kind, "null"], **extra}


def timestamp(description: str) -> dict[str, Any]:
    """An RFC 3339 time as the API writes them."""
    return {
        "type": "string",
        "format": "date-time",
        "description": f"{description} (RFC 3339, UTC, milliseconds).",
        "examples": ["2026-03-15T12:00:00.000Z"],
    }


def id_schema(prefix: str, what: str) -> dict[str, Any]:
    """An object id (``prefix_`` + a ULID)."""
    return {
        "type": "string",
        "description": f"The {what}'s id.",
        "examples": [f"{prefix}_01KKQ2Y7V0B8D6X9M3T5R4N2PZ"],
    }


def json_response(description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """An ``application/json`` response."""
    return {"description": description, "content": {JSON: {"schema": schema}}, **extra}


def problem_response(
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
                "schema": {"allOf": [ref("Problem"), constraint]},
                "examples": examples,
            }
        },
    }
    if status == 401:
        response["headers"] = {"WWW-Authenticate": {"$ref": "#/components/headers/WWWAuthenticate"}}
    if status in (429, 503):
        response["headers"] = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}
    return response


def errors(*groups: Codes) -> dict[str, Any]:
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
    extension.update(_policy_members(merged))
    for status, members in _window_members(merged).items():
        extension[status] = {**extension.get(status, {}), **members}
    return {
        str(status): problem_response(status, merged[status], extension.get(status))
        for status in sorted(merged)
    }


def param(name: str) -> dict[str, Any]:
    """A reference to the shared parameter ``name`` (``IdempotencyKey``, ``Cursor`` …)."""
    return {"$ref": f"#/components/parameters/{name}"}


def path_id(what: str) -> list[dict[str, Any]]:
    """The ``{id}`` path parameter of ``what``."""
    return [
        {
            "name": "id",
            "in": "path",
            "required": True,
            "description": f"The {what}'s id.",
            "schema": {"type": "string"},
        }
    ]


def query_enum(name: str, values: list[str], description: str) -> dict[str, Any]:
    """A query parameter that takes one of ``values``."""
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": "string", "enum": values},
    }


def operation(
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
    """An operation; ``public`` ones need no API key."""
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


def replayed() -> dict[str, Any]:
    """The header of an answer replayed for an ``Idempotency-Key``."""
    return {"Idempotency-Replayed": {"$ref": "#/components/headers/IdempotencyReplayed"}}


def _policy_members(merged: Codes) -> dict[int, dict[str, Any]]:
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


def _window_members(merged: Codes) -> dict[int, dict[str, Any]]:
    """The members of a ``whatsapp_window_closed`` problem, for the statuses that answer it."""
    if not any(case.code == "whatsapp_window_closed" for case in merged.get(422, [])):
        return {}
    return {
        422: {
            "whatsapp_window": {
                **ref("WhatsAppWindow"),
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
