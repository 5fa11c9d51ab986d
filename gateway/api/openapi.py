"""The OpenAPI 3.1 document of the API as served (``GET /v1/openapi.json``).

Assembled here from the core's operations (``openapi_paths.py``), its components
(``openapi_components.py``: the request bodies' schemas are made from the typed commands in
``gateway.commands``) and each extension's part. ``tests/gateway/api/test_openapi.py``
keeps it honest: the documented (path, method) pairs must equal the served routes, and
real responses must validate against the documented schemas. Enumerations and limits are
taken from the code itself wherever the code names them, so they cannot drift.

Every error answer is an RFC 9457 problem document (``application/problem+json``) with a
stable machine ``code``; each operation lists the codes it can answer per status
(``openapi_kit.py``, the building blocks extensions use too).
"""

from __future__ import annotations

import functools
from typing import Any

from gateway import __version__
from gateway.api.openapi_components import parameters, schemas
from gateway.api.openapi_kit import BEARER
from gateway.api.openapi_paths import paths
from gateway.extensions import extensions


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
        "paths": paths(),
        "components": {
            "securitySchemes": {
                BEARER: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`Authorization: Bearer <api key>`.",
                }
            },
            "parameters": parameters(),
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
            "schemas": schemas(),
        },
    }


@functools.lru_cache(maxsize=8)
def _cached(server_url: str) -> dict[str, Any]:
    return _with_extensions(_build(server_url))


# -- extensions (gateway.extensions: webhooks/) document their own routes -----------------
def _with_extensions(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with each extension's paths, schemas, tags and webhooks merged in."""
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
