"""Every refusal of a webhook endpoint request answers exactly as recorded.

``refusals.json`` holds the answers (status, content type, the whole problem document)
of the hand-written validators that the typed commands (``webhooks/commands.py``)
replaced: creation, changes, rotation, retry, replay and the delivery list's parameters.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.clock import FrozenClock
from gateway.runtime import Runtime
from tests.gateway.conftest import Seed, auth
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.anyio

RECORDED = Path(__file__).with_name("refusals.json")
BASE = "/v1/webhook-endpoints"
URL = "http://127.0.0.1:9/hook"
VARYING = {"id", "secret", "created_at", "updated_at", "previous_secret_expires_at"}


@pytest.fixture
def clock() -> FrozenClock:
    """The day after the recorded replay times: within a replay's reach (30 days), and
    none of them in the future."""
    return FrozenClock(datetime(2026, 3, 16, tzinfo=UTC))


@pytest.fixture
def backend() -> str:
    """SQLite: the answers do not depend on the store."""
    return "sqlite"


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


CREATE: list[tuple[str, bytes]] = [
    ("broken", b"{nope"),
    ("empty", b""),
    ("array", _json([URL])),
    ("null", b"null"),
    ("no url", b"{}"),
    ("url number", _json({"url": 5})),
    ("url null", _json({"url": None})),
    ("url ftp", _json({"url": "ftp://example.com/"})),
    ("url user", _json({"url": "https://u:p@example.com/"})),
    ("url fragment", _json({"url": "https://example.com/#x"})),
    ("url long", _json({"url": "https://example.com/" + "x" * 3000})),
    ("unknown", _json({"url": URL, "secret": "whsec_mine", "colour": 1})),
    ("unknown first", _json({"colour": 1, "url": 5})),
    ("events string", _json({"url": URL, "events": "message.received"})),
    ("events null", _json({"url": URL, "events": None})),
    ("events number", _json({"url": URL, "events": [5]})),
    ("events unknown", _json({"url": URL, "events": ["message.received", "message.sent"]})),
    ("enabled string", _json({"url": URL, "enabled": "yes"})),
    ("enabled null", _json({"url": URL, "enabled": None})),
    ("description number", _json({"url": URL, "description": 5})),
    ("description long", _json({"url": URL, "description": "x" * 257})),
    ("two wrong", _json({"enabled": "x", "url": 5})),
    ("events and enabled", _json({"url": URL, "enabled": 1, "events": 5})),
    ("all", _json({"url": URL, "events": ["*"], "enabled": False, "description": ""})),
    ("filtered", _json({"url": URL, "events": ["message.status", "message.status", "*"]})),
    ("described", _json({"url": URL, "events": [], "description": "x" * 256})),
]
UPDATE: list[tuple[str, bytes]] = [
    ("broken", b"{"),
    ("array", b"[]"),
    ("nothing", b"{}"),
    ("url null", _json({"url": None})),
    ("url gopher", _json({"url": "gopher://x/"})),
    ("unknown", _json({"colour": "red"})),
    ("events null", _json({"events": None})),
    ("events", _json({"events": ["quota.threshold"]})),
    ("enabled null", _json({"enabled": None})),
    ("description null", _json({"description": None})),
    ("description", _json({"description": "hello"})),
    ("description empty", _json({"description": ""})),
    ("too large", b'{"description": "' + b"x" * 70_000 + b'"}'),
]
ROTATE: list[tuple[str, bytes]] = [
    ("body", _json({"a": 1})),
    ("array", b"[]"),
    ("broken", b"{"),
    ("empty object", b" {} "),
    ("empty", b""),
]
REPLAY: list[tuple[str, bytes]] = [
    ("", b""),
    ("?since=yesterday", b""),
    ("?since=2026-03-15T12:00:00", b""),
    ("?since=2026-03-15", b""),
    ("?since=2026-03-15T12:00:00Z&until=2026-03-14T12:00:00Z", b""),
    ("?since=2026-03-15T12:00:00Z&until=x", b""),
    ("?since=2026-03-15T12:00:00Z", _json({"a": 1})),
    ("?since=2026-03-15T12:00:00%2B01:00&until=2026-03-15T13:00:00Z", b"{}"),
]
DELIVERIES = [
    "?status=lost",
    "?limit=0",
    "?limit=abc",
    "?limit=201",
    "?cursor=abc",
    "?cursor=1234567890123456789",
    "?status=failed&limit=1&cursor=5",
]


def _normal(resp: httpx.Response, ids: dict[str, str]) -> dict[str, Any]:
    text = resp.text
    for value, name in ids.items():
        text = text.replace(value, f"{{{name}}}")
    body = json.loads(text) if text else None
    if resp.status_code < 300 and isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in VARYING}
    return {
        "status": resp.status_code,
        "content_type": resp.headers.get("content-type"),
        "body": body,
    }


async def answers(client: httpx.AsyncClient, seed: Seed) -> dict[str, Any]:
    """Every case's answer, ids replaced by their names."""
    team = auth(seed.team_key)
    out: dict[str, Any] = {}
    made = await client.post(BASE, json={"url": URL}, headers=team)
    endpoint = made.json()["id"]
    ids = {endpoint: "endpoint"}
    for name, body in CREATE:
        resp = await client.post(BASE, content=body, headers=team)
        if resp.status_code == 201:
            await client.delete(f"{BASE}/{resp.json()['id']}", headers=team)
        out[f"POST {name}"] = _normal(resp, ids)
    for name, body in UPDATE:
        resp = await client.patch(f"{BASE}/{endpoint}", content=body, headers=team)
        out[f"PATCH {name}"] = _normal(resp, ids)
    resp = await client.patch(f"{BASE}/whep_nope", content=b'{"url": 5}', headers=team)
    out["PATCH unknown endpoint"] = _normal(resp, ids)
    for name, body in ROTATE:
        resp = await client.post(f"{BASE}/{endpoint}/rotate-secret", content=body, headers=team)
        out[f"POST rotate {name}"] = _normal(resp, ids)
    for query, body in REPLAY:
        resp = await client.post(f"{BASE}/{endpoint}/replay{query}", content=body, headers=team)
        out[f"POST replay {query} {body!r}"] = _normal(resp, ids)
    for query in DELIVERIES:
        resp = await client.get(f"{BASE}/{endpoint}/deliveries{query}", headers=team)
        out[f"GET deliveries {query}"] = _normal(resp, ids)
    resp = await client.post(BASE, json={"url": URL}, headers=auth(seed.anna_key))
    out["POST member key"] = _normal(resp, ids)
    return out


async def test_answers_are_as_recorded(
    client: httpx.AsyncClient, seed: Seed, rt: Runtime, receiver: Receiver
) -> None:
    recorded = json.loads(RECORDED.read_text())
    got = await answers(client, seed)
    assert list(got) == list(recorded)
    differ = {k: (v, recorded[k]) for k, v in got.items() if v != recorded[k]}
    assert not differ, json.dumps(differ, indent=1)
