"""The delivery client's HTTP/1.1 response parser under fuzz, against a real loopback
server that answers with any bytes (status lines, headers, 1xx answers, chunked and
Content-Length bodies, cut anywhere, written in any pieces): ``post`` returns a
:class:`Response` or raises :class:`AttemptError` (or ``TimeoutError``), nothing else."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzzing import fuzz
from webhooks.client import AttemptError, Client, Response, _parse_head
from webhooks.targets import parse_target

pytestmark = pytest.mark.anyio
LIMIT = 16

latin1 = st.text(st.characters(max_codepoint=0xFF), max_size=12)
versions = st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/2", "http/1.1", "HTTP/1.1 ", ""])
codes = st.sampled_from(
    ["200", "204", "304", "100", "103", "301", "500", "999", "²00", "2OO", "20", "2000", "-20"]
) | st.text("0123456789", min_size=0, max_size=4)
numbers = st.sampled_from(
    ["0", "5", " 5 ", "16", "17", "-1", "+5", "5, 5", "0x10", "²", "1_0", "1" * 5000, "9" * 20]
)
header_lines = st.one_of(
    st.builds(lambda v: f"Content-Length: {v}", numbers | latin1),
    st.builds(
        lambda v: f"Transfer-Encoding: {v}",
        st.sampled_from(["chunked", "gzip, chunked", "chunked, gzip", "identity", "CHUNKED", ""]),
    ),
    st.sampled_from(["Connection: close", "Connection: keep-alive", "X-A: 1", "X-A: 2"]),
    st.sampled_from(["no colon", " X-Folded: 1", "\tX: y", ": empty", "X :1", "X-Ü: ü"]),
    st.builds(lambda n, v: f"{n}: {v}", latin1, latin1),
)
chunk_sizes = st.sampled_from(
    ["-1", "+5", "0x5", " 5 ", "5;ext=1", "1_0", "²", "f" * 20, "", "zz"]
) | st.integers(0, 40).map(lambda n: f"{n:x}")


@st.composite
def chunked_bodies(draw: st.DrawFn) -> bytes:
    """Chunks with honest or lying sizes, then maybe the last chunk and trailers."""
    out = b""
    for _ in range(draw(st.integers(0, 4))):
        data = draw(st.binary(max_size=30))
        size = f"{len(data):x}" if draw(st.booleans()) else draw(chunk_sizes)
        out += size.encode("latin-1") + b"\r\n" + data + b"\r\n"
    if draw(st.integers(0, 3)):
        out += b"0\r\n" + b"".join(draw(st.lists(st.sampled_from([b"T: 1\r\n", b"x\r\n"]))))
        out += b"\r\n"
    return out


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    """One whole answer (maybe after 1xx ones), or bytes, maybe cut short."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=300))
    out = b""
    for _ in range(draw(st.integers(0, 2))):
        out += b"HTTP/1.1 100 Continue\r\n\r\n"
    version, code = draw(versions), draw(codes)
    lines = [f"{version} {code} {draw(latin1)}", *draw(st.lists(header_lines, max_size=5))]
    body = draw(chunked_bodies() | st.binary(max_size=60))
    out += ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    if draw(st.integers(0, 3)) == 0:
        out = out[: draw(st.integers(0, len(out)))]
    return out


async def _answer(data: bytes, cuts: list[int]) -> tuple[asyncio.Server, int]:
    """A loopback server that reads a request, writes ``data`` in pieces, and closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            await reader.readuntil(b"\r\n\r\n")
            pos = 0
            for n in [*cuts, len(data)]:
                writer.write(data[pos : pos + n])
                await writer.drain()
                pos += n
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def check(resp: Response) -> None:
    """A response the engine can record."""
    assert 100 <= resp.status <= 999
    assert all(name == name.lower() for name in resp.headers)
    assert len(resp.body) <= LIMIT


@fuzz(300)
@given(answers(), st.lists(st.integers(1, 64), max_size=6))
async def test_any_answer_is_a_response_or_an_attempt_error(data: bytes, cuts: list[int]) -> None:
    server, port = await _answer(data, cuts)
    client = Client(allow_private=True, body_limit=LIMIT)
    target = parse_target(f"http://127.0.0.1:{port}/hook")
    try:
        for _ in range(2):  # the second may reuse the first's connection
            with contextlib.suppress(AttemptError, TimeoutError):
                check(await client.post(target, b"{}", [("webhook-id", "whd_1")], 5.0))
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


@fuzz(600)
@given(
    st.lists(header_lines | latin1, max_size=6).map("\r\n".join)
    | st.text(st.characters(max_codepoint=0xFF), max_size=80),
    versions,
    codes,
)
def test_parse_head_raises_only_attempt_error(lines: str, version: str, code: str) -> None:
    raw = f"{version} {code} OK\r\n{lines}\r\n\r\n".encode("latin-1")
    for head in (raw, lines.encode("latin-1") + b"\r\n\r\n"):
        try:
            got_version, status, headers = _parse_head(head, "127.0.0.1")
        except AttemptError:
            continue
        assert got_version in ("HTTP/1.1", "HTTP/1.0") and 100 <= status <= 999
        assert all(name == name.lower() for name in headers)


REGRESSIONS = [
    # "²".isdigit() holds, int("²") raises ValueError.
    b"HTTP/1.1 \xb200 OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n",
    # More digits than int() converts (4300).
    b"HTTP/1.1 200 OK\r\nContent-Length: " + b"1" * 5000 + b"\r\n\r\n",
    # int(x, 16) takes a sign: readexactly(-1) raised ValueError.
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nabc\r\n0\r\n\r\n",
    # and "0x" prefixes and underscores, which are not HTTP either.
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n",
]


@pytest.mark.parametrize("data", REGRESSIONS)
async def test_answers_that_raised_value_error(data: bytes) -> None:
    server, port = await _answer(data, [])
    client = Client(allow_private=True, body_limit=LIMIT)
    try:
        with pytest.raises(AttemptError):
            await client.post(parse_target(f"http://127.0.0.1:{port}/hook"), b"{}", [], 5.0)
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()
