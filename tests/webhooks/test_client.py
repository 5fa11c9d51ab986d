"""The delivery client against real sockets: framing, keep-alive, limits, timeouts, TLS
with SNI to a pinned address, and the address check on every new connection."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
import trustme

from webhooks.client import MAX_DRAIN, AttemptError, Client
from webhooks.targets import TargetRefused, parse_target

pytestmark = pytest.mark.anyio
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[int]:
    """An asyncio server on a free loopback port running ``handler`` per connection; at the
    end, handlers still running are cancelled and their connections closed."""
    tasks: set[asyncio.Task[None]] = set()

    async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        tasks.add(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await handler(reader, writer)
        finally:
            writer.close()

    srv = await asyncio.start_server(run, "127.0.0.1", 0, ssl=tls)
    try:
        yield srv.sockets[0].getsockname()[1]
    finally:
        srv.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await srv.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


def answering(*answers: bytes, connections: list[int] | None = None) -> Handler:
    """A handler that answers the requests of a connection with ``answers`` in turn, then
    closes it."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if connections is not None:
            connections.append(1)
        try:
            for answer in answers:
                await read_request(reader)
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return handle


async def post(client: Client, port: int, body: bytes = b"{}", timeout: float = 5.0) -> object:
    target = parse_target(f"http://127.0.0.1:{port}/hook")
    return await client.post(target, body, [("webhook-id", "whd_1")], timeout)


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    c = Client(allow_private=True, body_limit=16)
    yield c
    await c.aclose()


async def test_keep_alive_and_framings(client: Client) -> None:
    connections: list[int] = []
    answers = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\nabcd\r\n14\r\n01234567890123456789\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\nX-A: 1\r\nX-A: 2\r\n\r\n",
        b"HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno",
    )
    async with server(answering(*answers, connections=connections)) as port:
        first = await post(client, port)
        second = await post(client, port)
        third = await post(client, port)
        fourth = await post(client, port)
    assert (first.status, first.body, first.truncated) == (200, b"hello", False)  # type: ignore[attr-defined]
    assert second.status == 201 and second.body == b"abcd012345678901"  # type: ignore[attr-defined]
    assert second.truncated  # type: ignore[attr-defined]
    assert third.status == 204 and third.headers["x-a"] == "1, 2"  # type: ignore[attr-defined]
    assert fourth.status == 500 and fourth.body == b"no"  # type: ignore[attr-defined]
    assert len(connections) == 1  # one kept-alive connection for all four
    assert client._idle[("http", "127.0.0.1", port)] == []  # closed after "Connection: close"


async def test_close_delimited_body_and_http_1_0(client: Client) -> None:
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        await read_request(reader)
        writer.write(b"HTTP/1.0 200 OK\r\n\r\nthe body ends with the connection")
        writer.close()

    async with server(handle) as port:
        first = await post(client, port)
        second = await post(client, port)
    assert first.body == b"the body ends wi" and first.truncated  # type: ignore[attr-defined]
    assert second.status == 200  # type: ignore[attr-defined]
    assert len(connections) == 2


async def test_a_huge_body_is_not_drained(client: Client) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (10 * MAX_DRAIN))
        try:
            for _ in range(10 * MAX_DRAIN // 65536):
                writer.write(b"z" * 65536)
                await writer.drain()
        except ConnectionError:
            pass  # the client hung up: what it should do
        finally:
            writer.close()

    async with server(handle) as port:
        response = await post(client, port)
    assert response.status == 200 and response.body == b"z" * 16  # type: ignore[attr-defined]
    assert response.truncated  # type: ignore[attr-defined]
    assert client._idle[("http", "127.0.0.1", port)] == []  # not kept


async def test_a_stale_keep_alive_connection_is_retried_once(client: Client) -> None:
    connections: list[int] = []
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    # Each connection answers once, then the server drops it without saying so.
    async with server(answering(ok, connections=connections)) as port:
        await post(client, port)
        await asyncio.sleep(0.05)  # the server's close arrives (the client may not see it)
        again = await post(client, port)
    assert again.status == 200  # type: ignore[attr-defined]
    assert len(connections) == 2


async def test_errors(client: Client) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()  # until the client gives up

    async with server(silent) as port:
        with pytest.raises(TimeoutError):
            await post(client, port, timeout=0.2)
    async with server(answering(b"SMTP/1.0 220 hello\r\n\r\n")) as port:
        with pytest.raises(AttemptError, match=r"not an HTTP/1\.x answer"):
            await post(client, port)
    async with server(answering(b"HTTP/1.1 200 OK\r\nBad header\r\n\r\n")) as port:
        with pytest.raises(AttemptError, match="malformed header"):
            await post(client, port)
    huge = b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * 70_000 + b"\r\n\r\n"
    async with server(answering(huge)) as port:
        with pytest.raises(AttemptError, match="longer than"):
            await post(client, port)
    async with server(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")) as port:
        with pytest.raises(AttemptError, match="ended inside its body"):
            await post(client, port)
    async with server(answering(b"HTTP/1.1 200 OK\r\nContent-Le")) as port:
        with pytest.raises(AttemptError, match="inside its headers"):
            await post(client, port)
    async with server(answering(b"")) as port:  # accepted, then closed without a word
        with pytest.raises(AttemptError, match="closed before an answer"):
            await post(client, port)
    async with server(answering()) as port:
        pass
    with pytest.raises(AttemptError, match="cannot connect"):
        await post(client, port)


async def test_addresses_are_checked_on_every_new_connection() -> None:
    seen: list[str] = []
    answers = {"hooks.test": ["127.0.0.1"], "mixed.test": ["93.184.215.14", "10.0.0.7"]}

    async def resolver(host: str, port: int) -> list[str]:
        seen.append(host)
        return answers[host]

    strict = Client(allow_private=False, resolver=resolver)
    try:
        with pytest.raises(TargetRefused, match=r"resolves to 127\.0\.0\.1, a loopback address"):
            await strict.post(parse_target("http://hooks.test/"), b"{}", [], 5)
        with pytest.raises(TargetRefused, match=r"10\.0\.0\.7, a private address"):
            await strict.post(parse_target("https://mixed.test/"), b"{}", [], 5)
        with pytest.raises(TargetRefused, match=r"169\.254\.169\.254 is a cloud metadata"):
            await strict.post(parse_target("http://169.254.169.254/latest/"), b"{}", [], 5)
    finally:
        await strict.aclose()
    assert seen == ["hooks.test", "mixed.test"]
    # Numbers that are addresses in disguise go through the system resolver like names.
    system = Client(allow_private=False)
    try:
        for url in ("http://2130706433/", "http://0x7f.1/", "http://127.1/", "http://localhost/"):
            with pytest.raises(TargetRefused, match=r"resolves to (127\.0\.0\.1|::1), a loopback"):
                await system.post(parse_target(url), b"{}", [], 5)
    finally:
        await system.aclose()


async def test_tls_goes_to_the_checked_address_with_sni_for_the_name() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("hooks.test")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    names: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: names.append(name)  # type: ignore[assignment,misc,return-value]
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    async def resolver(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with server(answering(ok, ok), tls=server_ctx) as port:
        client = Client(allow_private=True, resolver=resolver, ssl_context=client_ctx)
        try:
            response = await client.post(parse_target(f"https://hooks.test:{port}/"), b"{}", [], 5)
            assert response.status == 200 and response.remote == "127.0.0.1"
            # The certificate is checked against the name, not the address.
            with pytest.raises(AttemptError, match=r"TLS with other\.test failed"):
                await client.post(parse_target(f"https://other.test:{port}/"), b"{}", [], 5)
        finally:
            await client.aclose()
    assert names[0] == "hooks.test"
