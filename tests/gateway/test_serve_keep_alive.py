"""``gateway serve`` keeps idle HTTP/1.1 connections for ``keep_alive_seconds``: by
default longer than its clients' own idle limits (a client that reuses a connection the
server is closing at that moment gets a reset), and exactly as configured."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.conftest import store_url
from tests.gateway.test_serve_no_workers import start_serve, stop

pytestmark = pytest.mark.anyio
REQUEST = b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n"


async def ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    """One request on the open connection; the status line of its answer."""
    writer.write(REQUEST)
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return head.split(b"\r\n", 1)[0]


async def closed_after(reader: asyncio.StreamReader, within: float) -> float | None:
    """Seconds until the server closed the idle connection, or None if it stayed open
    for ``within`` seconds."""
    t0 = time.monotonic()
    try:
        data = await asyncio.wait_for(reader.read(1), within)
    except TimeoutError:
        return None
    assert data == b"", data  # nothing but the close may come on an idle connection
    return time.monotonic() - t0


async def test_idle_connection_outlives_a_clients_five_seconds(tmp_path: Path) -> None:
    proc, port = start_serve(tmp_path, store_url("sqlite", "", tmp_path), 0)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await ask(reader, writer) == b"HTTP/1.1 200 OK"
        # uvicorn's own default would close it after 5 s, as httpx's pool expires it.
        assert await closed_after(reader, 6.5) is None
        assert await ask(reader, writer) == b"HTTP/1.1 200 OK"  # the same connection
        writer.close()
    finally:
        assert stop(proc) == 0


async def test_idle_connection_closed_as_configured(tmp_path: Path) -> None:
    url = store_url("sqlite", "", tmp_path)
    proc, port = start_serve(tmp_path, url, 0, gateway="keep_alive_seconds = 1\n")
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        assert await ask(reader, writer) == b"HTTP/1.1 200 OK"
        after = await closed_after(reader, 5)
        assert after is not None and 0.5 < after < 3, after
        writer.close()
    finally:
        assert stop(proc) == 0
