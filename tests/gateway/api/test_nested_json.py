"""Deeply nested JSON posted to every route with a JSON body is refused with 400 or 422
problem+json, never 500: as the whole body, and inside an otherwise valid one — past the
standard library's recursion limit (~1,000), past orjson's parser (1,024) and between
orjson's encoder (254) and its parser."""

from __future__ import annotations

import httpx
import pytest

from tests.gateway.conftest import CONTACT, MOBILE_B, Seed, auth

pytestmark = pytest.mark.anyio
PROBLEM = "application/problem+json"
DEPTHS = [300, 1_000, 1_100, 30_000]  # 30,000 levels: 60 KB, under every body limit


def nested(depth: int) -> str:
    return "[" * depth + '"x"' + "]" * depth


def bodies(depth: int) -> list[str]:
    """The document itself, and valid-looking fields of each route holding it."""
    deep = nested(depth)
    return [
        deep,
        '{"a":' * min(depth, 10_000) + "1" + "}" * min(depth, 10_000),
        f'{{"channel":"sms","from":"{MOBILE_B}","to":"{CONTACT}","text":{deep}}}',
        f'{{"channel":"sms","from":"{MOBILE_B}","to":{deep},"text":"hi"}}',
        f'{{"url":"http://127.0.0.1:9/hook","events":{deep}}}',
        f'{{"blocked_prefixes":{deep}}}',
        f'{{"rules":[{{"channel":"email","to":{deep}}}]}}',
    ]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("depth", DEPTHS)
async def test_nested_json_is_refused_on_every_json_route(
    client: httpx.AsyncClient, seed: Seed, depth: int
) -> None:
    routes = [
        ("POST", "/v1/messages"),
        ("POST", "/v1/messages/preview"),
        ("PUT", "/v1/policy"),
        ("PUT", f"/v1/members/{seed.ben.id}/forwarding"),
        ("POST", "/v1/webhook-endpoints"),
    ]
    headers = {**auth(seed.team_key), "Content-Type": "application/json"}
    for method, path in routes:
        for body in bodies(depth):
            resp = await client.request(method, path, content=body, headers=headers)
            assert resp.status_code in (400, 422), (path, body[:60], resp.text[:200])
            assert resp.headers["content-type"].startswith(PROBLEM)
            assert resp.json()["status"] == resp.status_code
    listed = await client.get("/v1/messages", headers=auth(seed.team_key))
    assert listed.json()["data"] == []
