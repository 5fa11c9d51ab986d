"""Coverage-guided fuzzing (atheris) of the webhook client's HTTP/1.1 response parser.

The input is an answer built by its bytes (status line, header lines, 1xx answers,
chunked or Content-Length body, cut short or not) or raw bytes; it is fed to the client's
exchange through a stream reader, as a receiver's socket would. Nothing may raise but
:class:`AttemptError`::

    .venv/bin/python tests/fuzz/fuzz_http_response.py -seed=1 -runs=200000
"""

from __future__ import annotations

import asyncio
import sys

import atheris

with atheris.instrument_imports(include=["webhooks.client"]):
    from webhooks.client import MAX_HEAD, AttemptError, Client, _Conn
    from webhooks.targets import parse_target

LOOP = asyncio.new_event_loop()
CLIENT = Client(allow_private=True, body_limit=16)
TARGET = parse_target("http://127.0.0.1:9/hook")
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2", b"http/1.1", b""]
CODES = [b"200", b"204", b"304", b"100", b"101", b"301", b"500", b"999"]
NAMES = [b"Content-Length", b"Transfer-Encoding", b"Connection", b"X-A", b"", b" X"]
VALUES = [b"chunked", b"gzip, chunked", b"close", b"keep-alive", b"5"]


class Writer:
    """The request side of the connection: written and forgotten."""

    def write(self, data: bytes) -> None:
        """Drop the request."""

    async def drain(self) -> None:
        """Nothing to wait for."""

    def close(self) -> None:
        """Nothing to close."""


def answer(fdp: atheris.FuzzedDataProvider) -> bytes:
    """A response head and body from the input."""
    out = b""
    for _ in range(fdp.ConsumeIntInRange(0, 2)):
        out += b"HTTP/1.1 100 Continue\r\n\r\n"
    code = fdp.PickValueInList(CODES) if fdp.ConsumeBool() else fdp.ConsumeBytes(3)
    out += fdp.PickValueInList(VERSIONS) + b" " + code + b" " + fdp.ConsumeBytes(6) + b"\r\n"
    for _ in range(fdp.ConsumeIntInRange(0, 5)):
        name = fdp.PickValueInList(NAMES) if fdp.ConsumeBool() else fdp.ConsumeBytes(6)
        value = fdp.PickValueInList(VALUES) if fdp.ConsumeBool() else fdp.ConsumeBytes(8)
        out += name + b":" + value + b"\r\n"
    out += b"\r\n"
    if fdp.ConsumeBool():  # chunks whose sizes come from the input
        for _ in range(fdp.ConsumeIntInRange(0, 4)):
            data = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 24))
            size = b"%x" % len(data) if fdp.ConsumeBool() else fdp.ConsumeBytes(4)
            out += size + b"\r\n" + data + b"\r\n"
        out += b"0\r\n" if fdp.ConsumeBool() else b""
    return out + fdp.ConsumeBytes(fdp.remaining_bytes())


async def exchange(data: bytes) -> None:
    reader = asyncio.StreamReader(limit=MAX_HEAD)
    reader.feed_data(data)
    reader.feed_eof()
    conn = _Conn(reader, Writer(), "127.0.0.1")  # type: ignore[arg-type]
    try:
        resp = await CLIENT._exchange(TARGET, conn, b"POST / HTTP/1.1\r\n\r\n")
    except AttemptError:
        return
    except Exception as exc:  # the client's _Stale: an empty answer on a reused connection
        if type(exc).__name__ != "_Stale":
            raise
        return
    finally:
        CLIENT._idle.clear()
    assert 100 <= resp.status <= 999 and len(resp.body) <= 16


def one_input(data: bytes) -> None:
    """Parse ``data`` (or an answer built from it) as a receiver's answer."""
    fdp = atheris.FuzzedDataProvider(data)
    raw = fdp.ConsumeBytes(len(data)) if fdp.ConsumeIntInRange(0, 3) == 0 else answer(fdp)
    LOOP.run_until_complete(exchange(raw))


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
