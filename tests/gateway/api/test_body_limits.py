"""Bodies are bounded on every route: a declared oversize is refused 413 problem+json before
any of it is read, a chunked body is cut off just past the limit (a 64 MiB stream is never
read whole), and a client hanging up mid-body is counted as 499 and logged in one line."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from gateway.api.app import create_app
from gateway.api.v1 import MESSAGE_BODY_LIMIT
from gateway.runtime import Runtime
from tests.gateway.conftest import Seed, auth

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]
PROBLEM = "application/problem+json"
CHUNK = 64 * 1024
STREAM = 64 * 1024 * 1024


class Flood:
    """A request body of ``total`` bytes that counts how much of it was read."""

    def __init__(self, total: int = STREAM) -> None:
        self.total = total
        self.read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.read < self.total:
            self.read += CHUNK
            yield b"x" * CHUNK


def routes(seed: Seed) -> list[tuple[str, str, dict[str, str], int]]:
    """(method, path, extra headers, the route's limit) of every route that takes a body."""
    json = {"Content-Type": "application/json"}
    upload = {"Content-Type": "multipart/form-data; boundary=x"}
    attachment_limit = 20 * 1024 * 1024 + 64 * 1024
    return [
        ("POST", "/v1/messages", json, MESSAGE_BODY_LIMIT),  # the fast path
        ("POST", "/v1/messages", {**json, "Idempotency-Key": "k1"}, MESSAGE_BODY_LIMIT),
        ("POST", "/v1/messages/preview", json, MESSAGE_BODY_LIMIT),
        ("POST", "/v1/attachments", upload, attachment_limit),
        ("PUT", "/v1/policy", json, 1024 * 1024),
        ("PUT", f"/v1/members/{seed.ben.id}/forwarding", json, 64 * 1024),
        ("POST", "/v1/webhook-endpoints", json, 64 * 1024),
    ]


async def test_a_declared_oversize_is_refused_before_reading(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    ceiling = 20 * 1024 * 1024 + 64 * 1024  # any /v1 path, even one no route takes
    unrouted = ("POST", "/v1/messages/msg_x", {}, ceiling)
    for method, path, headers, limit in [*routes(seed), unrouted]:
        body = Flood(limit + CHUNK)
        declared = {**headers, "Content-Length": str(limit + CHUNK)}
        resp = await client.request(
            method, path, content=body, headers={**auth(seed.team_key), **declared}
        )
        assert resp.status_code == 413, (path, resp.text)
        assert resp.headers["content-type"] == PROBLEM
        assert resp.json()["code"] == "payload_too_large"
        assert body.read == 0, path


async def test_a_chunked_flood_is_cut_off_past_the_limit(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    for method, path, headers, limit in routes(seed):
        body = Flood()
        resp = await client.request(
            method, path, content=body, headers={**auth(seed.team_key), **headers}
        )
        assert resp.status_code == 413, (path, resp.text)
        assert resp.headers["content-type"] == PROBLEM
        assert limit < body.read <= limit + CHUNK, (path, body.read)
    listed = await client.get("/v1/messages", headers=auth(seed.team_key))
    assert listed.json()["data"] == []


@pytest.mark.parametrize("idempotent", [False, True])
async def test_a_hang_up_mid_body_is_499_in_one_line(
    rt: Runtime, seed: Seed, caplog: pytest.LogCaptureFixture, idempotent: bool
) -> None:
    app = create_app(rt, workers=False)
    headers = [
        (b"authorization", f"Bearer {seed.team_key}".encode()),
        (b"content-type", b"application/json"),
    ]
    if idempotent:  # the regular route, not the fast path
        headers.append((b"idempotency-key", b"hang-up"))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/messages",
        "raw_path": b"/v1/messages",
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    incoming = [
        {"type": "http.request", "body": b'{"channel":', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    with caplog.at_level(logging.INFO):
        await app(scope, receive, send)
    assert not [m for m in sent if m.get("status") == 500]
    lines = [r for r in caplog.records if "hung up" in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    rendered = rt.metrics.render()
    assert 'status="499"' in rendered
    assert 'status="500"' not in rendered
