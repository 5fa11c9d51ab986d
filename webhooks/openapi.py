"""The webhooks' part of the OpenAPI document: the ``/v1/webhook-endpoints`` routes, their
schemas, and the deliveries themselves as OpenAPI 3.1 ``webhooks`` (what a receiver gets).

Built with the core document's building blocks (``gateway/api/openapi_kit.py``) so the
problem responses, idempotency and security look like every other operation's; the
request bodies' schemas are made from this package's commands (``webhooks/commands.py``),
the limits and enumerations come from its code.
"""

from __future__ import annotations

from typing import Any

from gateway.api.helpers import DEFAULT_LIMIT, MAX_LIMIT
from gateway.api.openapi_kit import (
    AUTH,
    IDEMPOTENCY,
    INTERNAL,
    JSON,
    JSON_BODY,
    Case,
    Codes,
    errors,
    id_schema,
    json_response,
    nullable,
    operation,
    param,
    ref,
    replayed,
    timestamp,
)
from gateway.commands import schemas
from gateway.events import (
    FAX_PAGE,
    MESSAGE_CREATED,
    MESSAGE_RECEIVED,
    MESSAGE_STATUS,
    QUOTA_THRESHOLD,
)
from webhooks.api import DELIVERY_STATUSES, REPLAY_MAX
from webhooks.commands import WebhookEndpointCreate, WebhookEndpointUpdate
from webhooks.endpoints import KNOWN_EVENTS, MAX_DESCRIPTION, MAX_ENDPOINTS_PER_TEAM
from webhooks.signing import ROTATION_OVERLAP
from webhooks.targets import MAX_URL

TAG = "Webhooks"
TEAM_ONLY: Codes = {
    403: [Case("forbidden", "a member key: webhook endpoints are managed with a team key")]
}
ENDPOINT_GONE: Codes = {404: [Case("not_found", "no such webhook endpoint in the key's team")]}
TOO_LARGE: Codes = {413: [Case("payload_too_large", "the body is larger than 64 KiB")]}
URL_CASES = [
    Case(
        "validation_error",
        "a field is wrong (`field` names it): an unknown field, a `url` that is not http(s), "
        "has user info or a fragment, an unknown event type (`known_events` lists them)",
    ),
    Case(
        "url_not_allowed",
        "the `url`'s host resolves to an address webhooks may not go to: private, loopback, "
        "link-local, unique local, CGNAT, multicast, reserved or a cloud metadata service",
        "Invalid request",
    ),
]
CHANGED: Codes = {
    409: [
        Case(
            "conflict",
            "the endpoint was changed by another request at the same time; read it again",
            "Conflict",
        )
    ]
}
DISABLED = Case(
    "endpoint_disabled",
    'the endpoint is disabled; enable it first (PATCH with `"enabled": true`)',
    "Conflict",
)


def document() -> dict[str, Any]:
    """The paths, schemas, tags and webhooks to merge into the API's document."""
    return {
        "tags": [
            {
                "name": TAG,
                "description": "Endpoints that receive the team's events as signed HTTP POSTs "
                "(Standard Webhooks), their delivery log, retries and replays. Team keys "
                "only.",
            }
        ],
        "paths": _paths(),
        "schemas": _schemas(),
        "webhooks": _webhooks(),
    }


# -- schemas -----------------------------------------------------------------------------
def _endpoint_properties() -> dict[str, Any]:
    return {
        "id": id_schema("whep", "endpoint"),
        "url": {"type": "string", "maxLength": MAX_URL, "description": "As registered."},
        "description": nullable("string", maxLength=MAX_DESCRIPTION),
        "events": {
            "type": "array",
            "items": ref("WebhookEventType"),
            "description": "The event types sent; empty: every type.",
        },
        "enabled": {"type": "boolean"},
        "disabled_reason": {
            **nullable("string"),
            "description": "Why the gateway disabled the endpoint (deliveries failed for 5 "
            "days); null when it did not. Enabling the endpoint clears it.",
        },
        "failing_since": {
            **nullable("string", format="date-time"),
            "description": "The first failed attempt since the last successful one; null "
            "while deliveries succeed.",
        },
        "previous_secret_expires_at": {
            **nullable("string", format="date-time"),
            "description": "After a rotation: until when the previous secret also signs "
            "(a second `v1,` signature in `webhook-signature`).",
        },
        "created_at": timestamp("When the endpoint was created"),
        "updated_at": timestamp("The last change"),
    }


_ENDPOINT_REQUIRED = list(_endpoint_properties())


def _attempt() -> dict[str, Any]:
    return {
        "type": "object",
        "description": "One attempt of a delivery.",
        "required": ["at", "attempt", "error"],
        "properties": {
            "at": timestamp("When the attempt started"),
            "attempt": {"type": "integer", "minimum": 0, "description": "Its number."},
            "status_code": nullable("integer", description="The answer's status, if any."),
            "error": nullable("string", description="Why it failed; null on success."),
            "duration_ms": {"type": "number", "minimum": 0},
            "remote_address": nullable("string", description="The address connected to."),
            "response_body": {
                "type": "string",
                "description": "The answer's body, at most its first 4 KiB.",
            },
            "response_truncated": {"type": "boolean"},
            "location": nullable("string", description="A redirect's Location (not followed)."),
            "retry_after": {
                "type": "number",
                "description": "The answer's Retry-After, in seconds.",
            },
            "next_attempt_at": timestamp("When the next attempt is due"),
        },
    }


def _delivery_properties() -> dict[str, Any]:
    return {
        "id": {
            "type": "string",
            "description": "The `webhook-id`: the same on every attempt, retry and replay of "
            "this event to this endpoint.",
            "examples": ["whd_3KQ2Y7V0B8D6X9M3T5R4N2PZ1A"],
        },
        "endpoint_id": id_schema("whep", "endpoint"),
        "event_id": id_schema("evt", "event"),
        "event_type": ref("WebhookEventType"),
        "status": {"type": "string", "enum": list(DELIVERY_STATUSES)},
        "attempts": {
            "type": "integer",
            "minimum": 0,
            "description": "Attempts in the current series (a retry or replay starts one).",
        },
        "in_flight": {"type": "boolean", "description": "An attempt is running now."},
        "next_attempt_at": {
            **nullable("string", format="date-time"),
            "description": "Pending: when the next attempt is due.",
        },
        "held_back": {
            "type": "boolean",
            "description": "Pending behind an earlier event of the same conversation (or "
            "member, for quota.threshold) to this endpoint.",
        },
        "last_attempt": {"oneOf": [ref("WebhookAttempt"), {"type": "null"}]},
        "created_at": timestamp("When the delivery was created"),
        "updated_at": timestamp("The last change"),
    }


def _payload(data: dict[str, Any], kinds: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "timestamp", "data"],
        "properties": {
            "type": {"type": "string", "enum": kinds},
            "timestamp": timestamp("When the event happened"),
            "data": data,
        },
    }


def _schemas() -> dict[str, Any]:
    return {
        **schemas([WebhookEndpointCreate, WebhookEndpointUpdate]),
        "WebhookEventType": {"type": "string", "enum": list(KNOWN_EVENTS)},
        "WebhookEndpoint": {
            "type": "object",
            "required": _ENDPOINT_REQUIRED,
            "properties": _endpoint_properties(),
        },
        "WebhookEndpointWithSecret": {
            "type": "object",
            "description": "The endpoint with its new signing secret: shown this once.",
            "required": [*_ENDPOINT_REQUIRED, "secret"],
            "properties": {
                **_endpoint_properties(),
                "secret": {
                    "type": "string",
                    "pattern": "^whsec_[A-Za-z0-9+/]+=*$",
                    "description": "`whsec_` + base64 of 32 random bytes; verify deliveries "
                    "with it (e.g. the `standardwebhooks` libraries).",
                },
            },
        },
        "WebhookEndpointList": {
            "type": "object",
            "required": ["data"],
            "properties": {"data": {"type": "array", "items": ref("WebhookEndpoint")}},
        },
        "WebhookAttempt": _attempt(),
        "WebhookDelivery": {
            "type": "object",
            "required": list(_delivery_properties()),
            "properties": _delivery_properties(),
        },
        "WebhookDeliveryDetail": {
            "type": "object",
            "required": [*_delivery_properties(), "attempt_log", "payload"],
            "properties": {
                **_delivery_properties(),
                "attempt_log": {
                    "type": "array",
                    "items": ref("WebhookAttempt"),
                    "description": "The attempts, oldest first (the newest 50).",
                },
                "payload": {
                    "oneOf": [ref("WebhookPayload"), {"type": "null"}],
                    "description": "The body every attempt sends.",
                },
            },
        },
        "WebhookDeliveryList": {
            "type": "object",
            "required": ["data", "next_cursor"],
            "properties": {
                "data": {"type": "array", "items": ref("WebhookDelivery")},
                "next_cursor": ref("NextCursor"),
            },
        },
        "WebhookReplay": {
            "type": "object",
            "required": ["endpoint_id", "since", "until", "deliveries", "next_since"],
            "properties": {
                "endpoint_id": id_schema("whep", "endpoint"),
                "since": timestamp("The start of the replayed time"),
                "until": timestamp("Its end"),
                "deliveries": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "Events of that time that will be sent again.",
                },
                "next_since": {
                    **nullable("string", format="date-time"),
                    "description": f"Set when more than {REPLAY_MAX} events matched: replay "
                    "again from here.",
                },
            },
        },
        "WebhookPayload": _payload({"type": "object"}, list(KNOWN_EVENTS)),
        "QuotaThreshold": {
            "type": "object",
            "required": ["member_id", "channel", "period", "threshold", "included", "used"],
            "properties": {
                "member_id": id_schema("mem", "member"),
                "channel": ref("Channel"),
                "period": {"type": "string", "examples": ["2026-03"]},
                "threshold": {"type": "integer", "description": "Percent of `included`."},
                "included": {"type": "integer"},
                "used": {"type": "integer"},
            },
        },
    }


# -- paths -------------------------------------------------------------------------------
def _body(schema: str) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": ref(schema)}}}


def _path(what: str, name: str = "id") -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"The {what}'s id.",
        "schema": {"type": "string"},
    }


def _paths() -> dict[str, Any]:
    endpoint = [_path("webhook endpoint")]
    delivery = [*endpoint, _path("delivery (its webhook-id)", "delivery_id")]
    validation: Codes = {422: URL_CASES}
    return {
        "/v1/webhook-endpoints": {
            "post": operation(
                "createWebhookEndpoint",
                "Create a webhook endpoint",
                TAG,
                {
                    "201": json_response(
                        "Created; `secret` is shown only now.",
                        ref("WebhookEndpointWithSecret"),
                        headers=replayed(),
                    ),
                    **errors(
                        AUTH,
                        JSON_BODY,
                        IDEMPOTENCY,
                        TEAM_ONLY,
                        {
                            409: [
                                Case(
                                    "webhook_endpoint_limit",
                                    f"the team has {MAX_ENDPOINTS_PER_TEAM} endpoints already",
                                    "Conflict",
                                )
                            ]
                        },
                        TOO_LARGE,
                        validation,
                        INTERNAL,
                    ),
                },
                description="The endpoint receives the team's events from now on as signed "
                "POSTs (see `webhooks` in this document). URLs whose host resolves to a "
                "private, loopback, link-local or metadata address are refused, now and at "
                "every delivery.",
                parameters=[param("IdempotencyKey")],
                request_body=_body("WebhookEndpointCreate"),
            ),
            "get": operation(
                "listWebhookEndpoints",
                "List webhook endpoints",
                TAG,
                {
                    "200": json_response("Oldest first.", ref("WebhookEndpointList")),
                    **errors(AUTH, TEAM_ONLY, INTERNAL),
                },
            ),
        },
        "/v1/webhook-endpoints/{id}": {
            "parameters": endpoint,
            "get": operation(
                "getWebhookEndpoint",
                "Get a webhook endpoint",
                TAG,
                {
                    "200": json_response("The endpoint.", ref("WebhookEndpoint")),
                    **errors(AUTH, TEAM_ONLY, ENDPOINT_GONE, INTERNAL),
                },
            ),
            "patch": operation(
                "updateWebhookEndpoint",
                "Change a webhook endpoint",
                TAG,
                {
                    "200": json_response("The endpoint as stored.", ref("WebhookEndpoint")),
                    **errors(
                        AUTH,
                        JSON_BODY,
                        TEAM_ONLY,
                        ENDPOINT_GONE,
                        CHANGED,
                        TOO_LARGE,
                        validation,
                        INTERNAL,
                    ),
                },
                description="Changes the fields given. Pending deliveries go to the new URL "
                "at their next attempt. Disabling makes pending deliveries fail at their "
                "next attempt; enabling again clears `disabled_reason` and `failing_since` "
                "(replay what was missed).",
                request_body=_body("WebhookEndpointUpdate"),
            ),
            "delete": operation(
                "deleteWebhookEndpoint",
                "Delete a webhook endpoint",
                TAG,
                {
                    "204": {"description": "Deleted, with its delivery log."},
                    **errors(AUTH, TEAM_ONLY, ENDPOINT_GONE, INTERNAL),
                },
            ),
        },
        "/v1/webhook-endpoints/{id}/rotate-secret": {
            "parameters": endpoint,
            "post": operation(
                "rotateWebhookSecret",
                "Rotate the signing secret",
                TAG,
                {
                    "200": json_response(
                        "The new secret (shown only now).",
                        ref("WebhookEndpointWithSecret"),
                        headers=replayed(),
                    ),
                    **errors(
                        AUTH,
                        IDEMPOTENCY,
                        TEAM_ONLY,
                        ENDPOINT_GONE,
                        CHANGED,
                        TOO_LARGE,
                        {422: [Case("validation_error", "the request has a body")]},
                        INTERNAL,
                    ),
                },
                description="The previous secret keeps signing for "
                f"{int(ROTATION_OVERLAP.total_seconds() // 3600)} hours: meanwhile "
                "`webhook-signature` carries two `v1,` signatures (new secret first). A "
                "second rotation within that time drops the oldest secret.",
                parameters=[param("IdempotencyKey")],
            ),
        },
        "/v1/webhook-endpoints/{id}/deliveries": {
            "parameters": endpoint,
            "get": operation(
                "listWebhookDeliveries",
                "List an endpoint's deliveries",
                TAG,
                {
                    "200": json_response("Newest event first.", ref("WebhookDeliveryList")),
                    **errors(
                        AUTH,
                        TEAM_ONLY,
                        ENDPOINT_GONE,
                        {422: [Case("validation_error", "a query parameter is wrong")]},
                        INTERNAL,
                    ),
                },
                parameters=[
                    {
                        "name": "status",
                        "in": "query",
                        "description": "Only deliveries in this status.",
                        "schema": {"type": "string", "enum": list(DELIVERY_STATUSES)},
                    },
                    {
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
                    param("Cursor"),
                ],
            ),
        },
        "/v1/webhook-endpoints/{id}/deliveries/{delivery_id}": {
            "parameters": delivery,
            "get": operation(
                "getWebhookDelivery",
                "Get a delivery with its attempts",
                TAG,
                {
                    "200": json_response(
                        "The delivery, every attempt, and the payload.",
                        ref("WebhookDeliveryDetail"),
                    ),
                    **errors(
                        AUTH,
                        TEAM_ONLY,
                        {404: [Case("not_found", "no such endpoint or delivery")]},
                        INTERNAL,
                    ),
                },
            ),
        },
        "/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/retry": {
            "parameters": delivery,
            "post": operation(
                "retryWebhookDelivery",
                "Attempt a delivery again now",
                TAG,
                {
                    "202": json_response(
                        "Due now (or already in flight).",
                        ref("WebhookDelivery"),
                        headers=replayed(),
                    ),
                    **errors(
                        AUTH,
                        IDEMPOTENCY,
                        TEAM_ONLY,
                        {404: [Case("not_found", "no such endpoint or delivery")]},
                        {
                            409: [
                                DISABLED,
                                Case(
                                    "delivery_held_back",
                                    "the delivery waits behind an earlier event of the same "
                                    "conversation; retry that one",
                                    "Conflict",
                                ),
                            ]
                        },
                        TOO_LARGE,
                        INTERNAL,
                    ),
                },
                description="Same `webhook-id`. A succeeded or failed delivery starts a new "
                "series of attempts (the retry schedule again), outside the conversation's "
                "order; a pending one waiting for its next retry is due at once.",
                parameters=[param("IdempotencyKey")],
            ),
        },
        "/v1/webhook-endpoints/{id}/replay": {
            "parameters": endpoint,
            "post": operation(
                "replayWebhookEvents",
                "Send an endpoint's events of a time span again",
                TAG,
                {
                    "202": json_response(
                        "The events are due now.", ref("WebhookReplay"), headers=replayed()
                    ),
                    **errors(
                        AUTH,
                        IDEMPOTENCY,
                        TEAM_ONLY,
                        ENDPOINT_GONE,
                        {409: [DISABLED]},
                        TOO_LARGE,
                        {
                            422: [
                                Case(
                                    "validation_error",
                                    "`since` is missing, or a time is not RFC 3339 with a "
                                    "time zone, or `since` is after `until`, or `since` is "
                                    "older than a replay reaches (30 days unless the "
                                    "operator set `webhooks.replay_max_age_seconds`), or "
                                    "`until` is in the future",
                                )
                            ]
                        },
                        INTERNAL,
                    ),
                },
                description="Every event of the team in [`since`, `until`] that the "
                "endpoint's `events` filter takes is sent again, with the same `webhook-id` "
                "as before (receivers that deduplicate skip what they have; a receiver that "
                "lost data gets it again). Events of that time the endpoint never got "
                "(it was disabled, or did not exist yet) are sent too. Deliveries still "
                f"pending are left as they are. At most {REPLAY_MAX} events per request: "
                "`next_since` says where to go on.",
                parameters=[
                    {
                        "name": "since",
                        "in": "query",
                        "required": True,
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    {
                        "name": "until",
                        "in": "query",
                        "description": "Default: now.",
                        "schema": {"type": "string", "format": "date-time"},
                    },
                    param("IdempotencyKey"),
                ],
            ),
        },
    }


# -- what receivers get ------------------------------------------------------------------
def _webhooks() -> dict[str, Any]:
    headers = [
        {
            "name": "webhook-id",
            "in": "header",
            "required": True,
            "description": "The delivery's id: the same on every attempt and replay "
            "(deduplicate on it).",
            "schema": {"type": "string"},
        },
        {
            "name": "webhook-timestamp",
            "in": "header",
            "required": True,
            "description": "The attempt's time, seconds since the epoch.",
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        },
        {
            "name": "webhook-signature",
            "in": "header",
            "required": True,
            "description": '`v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.'
            '{body}">`, keyed with the base64-decoded secret after `whsec_`; two of them, '
            "space-separated, for 24 hours after a secret rotation.",
            "schema": {"type": "string"},
        },
    ]
    message = ref("Message")
    kinds: list[tuple[str, str, dict[str, Any]]] = [
        (MESSAGE_CREATED, "An outbound message was accepted.", message),
        (MESSAGE_RECEIVED, "An inbound message arrived.", message),
        (
            MESSAGE_STATUS,
            "A message's status changed. A fax that failed for now (busy, no answer) comes "
            "back to `queued` with `fax.next_try` and `fax.retry_reason`: the next try "
            "and why.",
            message,
        ),
        (
            QUOTA_THRESHOLD,
            "A member's usage passed a threshold (80 %, 100 %) of an included amount.",
            ref("QuotaThreshold"),
        ),
        *(
            (kind, "A forward of an inbound message was sent or failed.", {"type": "object"})
            for kind in KNOWN_EVENTS
            if kind.startswith("forward.")
        ),
        (
            FAX_PAGE,
            "A page of an outbound fax was confirmed by the far end (`message_id`, `page`, "
            "`pages`).",
            {"type": "object"},
        ),
    ]
    out = {}
    for kind, summary, data in kinds:
        name = "".join(part.capitalize() for part in kind.replace(".", "_").split("_"))
        out[kind] = {
            "post": {
                "operationId": f"webhook{name}",
                "summary": summary,
                "tags": [TAG],
                "description": "Sent to every enabled endpoint whose `events` take it. "
                "Answer 2xx within 15 s; anything else is retried (immediately, then after "
                "5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), honouring `Retry-After`. Events "
                "of one conversation arrive in order.",
                "security": [],
                "parameters": headers,
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _payload(data, [kind])}},
                },
                "responses": {"2XX": {"description": "Received."}},
            }
        }
    return out
