"""Body limits and hang-ups through a real uvicorn server on a loopback port: a chunked
64 MiB send is answered 413 long before it is all sent, and a client that closes the
connection mid-body is counted as 499 in /metrics with one log line and no traceback."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from urllib.parse import urlsplit

import httpx
import pytest

from gateway.api.app import create_app
from gateway.runtime import Runtime
from gateway.serving import serving
from tests.gateway.conftest import Seed

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]
STREAM = 64 * 1024 * 1024
CHUNK = 64 * 1024


def head(key: str, extra: str) -> bytes:
    return (
        "POST /v1/messages HTTP/1.1\r\nHost: gw.test\r\n"
        f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n{extra}\r\n"
    ).encode()


async def test_a_chunked_flood_is_refused_early(rt: Runtime, seed: Seed) -> None:
    async with serving(create_app(rt, workers=False)) as base:
        url = urlsplit(base)
        reader, writer = await asyncio.open_connection(url.hostname, url.port)
        writer.write(head(seed.team_key, "Transfer-Encoding: chunked\r\n"))
        sent, answer = 0, b""
        chunk = f"{CHUNK:x}\r\n".encode() + b"x" * CHUNK + b"\r\n"
        with contextlib.suppress(ConnectionError):
            while sent < STREAM:
                writer.write(chunk)
                await writer.drain()
                sent += CHUNK
                with contextlib.suppress(TimeoutError):
                    answer = await asyncio.wait_for(reader.read(65536), 0.001)
                if answer:
                    break
        if not answer:
            answer = await asyncio.wait_for(reader.read(65536), 10)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
        assert b"application/problem+json" in answer
        assert sent < STREAM // 4, sent  # refused after the limit plus socket buffers


async def test_a_hang_up_is_499_without_a_traceback(
    rt: Runtime, seed: Seed, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        async with serving(create_app(rt, workers=False)) as base:
            url = urlsplit(base)
            for extra in ("", "Idempotency-Key: hang-up\r\n"):  # the fast path, the route
                _, writer = await asyncio.open_connection(url.hostname, url.port)
                writer.write(head(seed.team_key, f"Content-Length: 1000\r\n{extra}"))
                writer.write(b'{"channel": "sms", "fr')
                await writer.drain()
                writer.close()
                await writer.wait_closed()
            async with httpx.AsyncClient(base_url=base) as client:
                for _ in range(500):  # bounded: the server notices the hang-ups at once
                    hung = [r for r in caplog.records if "hung up" in r.getMessage()]
                    if len(hung) == 2:
                        break
                    await asyncio.sleep(0.01)
                metrics = (await client.get("/metrics")).text
    hung = [r for r in caplog.records if "hung up" in r.getMessage()]
    assert len(hung) == 2 and all(r.exc_info is None for r in hung)
    assert 'handler="create_message",method="POST",status="499"} 2' in metrics
    assert 'status="500"' not in metrics
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
