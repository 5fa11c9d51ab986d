"""The HTTP/1.1 client of webhook deliveries: checked addresses, keep-alive, bounded reads.

Written for this one job instead of using httpx: a delivery is one POST whose answer
matters only up to its status, two headers and a short excerpt of the body, and the
connection must go to the address that passed the SSRF check (``targets.py``). Opening
the socket here does both: the host is resolved and checked for every new connection,
the socket connects to that checked address (TLS still verifies the certificate and
sends SNI for the host name), and nothing resolves the name a second time. On this
machine httpx's pool managed 80 to 270 POSTs a second to a local receiver where plain
asyncio streams managed 6,000 to 18,000, and the engine needs over a thousand.

Rules:

* one request per connection at a time; idle connections are kept per (scheme, host,
  port) for :data:`IDLE_SECONDS` and reused — a kept-alive connection always goes to the
  address checked when it was opened;
* redirects are not followed (a 3xx is an answer like any other);
* the response head may be at most :data:`MAX_HEAD` bytes; of the body the first
  ``body_limit`` bytes are kept, the rest is read and dropped up to :data:`MAX_DRAIN` (so
  the connection can be reused) and beyond that the connection is closed;
* a request on a reused connection that the server closed before answering is sent
  once more on a new connection (the usual keep-alive race);
* ``timeout`` bounds the whole attempt: connecting, sending, the status, the headers and
  reading the body;
* an answer that breaks HTTP/1.1 — a status that is not three ASCII digits from 100, a
  malformed header line, a Content-Length or chunk size that is not plain digits (hex
  for chunks: no sign, ``0x`` or ``_``) — ends the attempt with :class:`AttemptError`.

``post`` raises nothing but ``TargetRefused``, :class:`AttemptError` and ``TimeoutError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import defaultdict
from dataclasses import dataclass

from gateway import __version__
from webhooks.targets import Resolver, Target, resolve_checked, system_resolver

USER_AGENT = f"messaging-gateway-webhooks/{__version__}"
IDLE_SECONDS = 30.0
MAX_IDLE_PER_ORIGIN = 256  # above [webhooks] concurrency: a busy endpoint keeps its connections
MAX_HEAD = 64 * 1024
MAX_DRAIN = 1024 * 1024
_HEX = b"0123456789abcdefABCDEF"


class AttemptError(Exception):
    """The attempt ended without a complete answer (connection, protocol, timeout)."""

    def __init__(self, message: str, remote: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.remote = remote


class _Stale(Exception):
    """A reused connection was closed by the server before it answered."""


@dataclass(slots=True)
class Response:
    """What a receiver answered: status, headers (lower-case names), a body excerpt."""

    status: int
    headers: dict[str, str]
    body: bytes
    truncated: bool  # the body was longer than the excerpt
    remote: str  # the address the request went to


@dataclass(slots=True, eq=False)  # hashed by identity (kept in a set while busy)
class _Conn:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    remote: str
    idle_since: float = 0.0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Client:
    """Sends webhook POSTs; see the module docstring."""

    def __init__(
        self,
        *,
        allow_private: bool,
        resolver: Resolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
        body_limit: int = 4096,
    ) -> None:
        self.allow_private = allow_private
        self.resolver = resolver or system_resolver
        self.ssl_context = ssl_context
        self.body_limit = body_limit
        self._idle: dict[tuple[str, str, int], list[_Conn]] = defaultdict(list)
        self._busy: set[_Conn] = set()
        self._closed = False

    def _tls(self) -> ssl.SSLContext:
        if self.ssl_context is None:
            self.ssl_context = ssl.create_default_context()
            self.ssl_context.set_alpn_protocols(["http/1.1"])
        return self.ssl_context

    async def post(
        self, target: Target, body: bytes, headers: list[tuple[str, str]], timeout: float
    ) -> Response:
        """POST ``body`` to ``target``; raises ``TargetRefused`` (address policy),
        ``AttemptError`` (no complete answer) or ``TimeoutError``."""
        head = [
            f"POST {target.path} HTTP/1.1",
            f"Host: {target.host_header}",
            f"User-Agent: {USER_AGENT}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
            *(f"{name}: {value}" for name, value in headers),
        ]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        async with asyncio.timeout(timeout):
            conn = self._reuse(target)
            if conn is not None:
                try:
                    return await self._exchange(target, conn, request)
                except _Stale:
                    pass
            conn = await self._connect(target)
            try:
                return await self._exchange(target, conn, request)
            except _Stale:
                raise AttemptError(
                    "the connection was closed before an answer", conn.remote
                ) from None

    def _reuse(self, target: Target) -> _Conn | None:
        idle = self._idle.get((target.scheme, target.host, target.port))
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if now - conn.idle_since < IDLE_SECONDS and not conn.reader.at_eof():
                self._busy.add(conn)
                return conn
            conn.close()
        return None

    async def _connect(self, target: Target) -> _Conn:
        addresses = await resolve_checked(target, self.allow_private, self.resolver)
        tls = self._tls() if target.scheme == "https" else None
        errors = []
        for address in addresses:
            try:
                reader, writer = await asyncio.open_connection(
                    address,
                    target.port,
                    ssl=tls,
                    server_hostname=target.host if tls else None,
                    limit=MAX_HEAD,
                )
            except ssl.SSLError as exc:
                raise AttemptError(f"TLS with {target.host} failed: {exc}", address) from None
            except OSError as exc:
                errors.append(f"{address}: {exc.strerror or exc}")
                continue
            conn = _Conn(reader, writer, address)
            self._busy.add(conn)
            return conn
        raise AttemptError(f"cannot connect to {target.host} port {target.port} "
                           f"({'; '.join(errors)})")  # fmt: skip

    async def _exchange(self, target: Target, conn: _Conn, request: bytes) -> Response:
        reusable = False
        started = False  # any byte of an answer
        try:
            conn.writer.write(request)
            await conn.writer.drain()
            while True:
                try:
                    raw = await conn.reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError as exc:
                    if not exc.partial and not started:
                        raise _Stale from None
                    raise AttemptError("the answer ended inside its headers", conn.remote) from None
                except asyncio.LimitOverrunError:
                    raise AttemptError(
                        f"the answer's headers are longer than {MAX_HEAD} bytes", conn.remote
                    ) from None
                started = True
                version, status, headers = _parse_head(raw, conn.remote)
                if not 100 <= status < 200:
                    break
            body, truncated, framed = await self._read_body(conn, status, headers)
            reusable = (
                framed
                and version == "HTTP/1.1"
                and "close" not in headers.get("connection", "").lower()
            )
            return Response(status, headers, body, truncated, conn.remote)
        except (ConnectionError, BrokenPipeError) as exc:
            if not started:
                raise _Stale from None
            raise AttemptError(f"the connection broke: {exc}", conn.remote) from None
        except ssl.SSLError as exc:
            raise AttemptError(f"TLS error: {exc}", conn.remote) from None
        finally:
            self._busy.discard(conn)
            if reusable and not self._closed:
                self._release(target, conn)
            else:
                conn.close()

    def _release(self, target: Target, conn: _Conn) -> None:
        idle = self._idle[(target.scheme, target.host, target.port)]
        if len(idle) >= MAX_IDLE_PER_ORIGIN:
            conn.close()
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _read_body(
        self, conn: _Conn, status: int, headers: dict[str, str]
    ) -> tuple[bytes, bool, bool]:
        """The body excerpt, whether it was cut, and whether the connection is still
        framed (its end was found, so it can carry another request)."""
        kept = bytearray()
        seen = 0

        def take(chunk: bytes) -> None:
            nonlocal seen
            room = self.body_limit - len(kept)
            if room > 0:
                kept.extend(chunk[:room])
            seen += len(chunk)

        reader = conn.reader
        if status in (204, 304):
            return b"", False, True
        encoding = headers.get("transfer-encoding", "").lower()
        if encoding:
            if encoding.rsplit(",", 1)[-1].strip() != "chunked":
                return await self._until_eof(reader)
            while True:
                line = await _line(reader, conn.remote)
                digits = line.split(b";", 1)[0].strip()
                # Hex digits only: int(…, 16) would also take "-1", "+5", "0x5" and "1_0".
                if not digits or digits.strip(_HEX):
                    raise AttemptError("a malformed chunk size in the answer", conn.remote)
                size = int(digits, 16)
                if size == 0:
                    while await _line(reader, conn.remote):  # trailer fields
                        pass
                    return bytes(kept), seen > len(kept), True
                if seen + size > MAX_DRAIN:
                    return bytes(kept), True, False
                take(await _exactly(reader, size, conn.remote))
                await _exactly(reader, 2, conn.remote)
        length = headers.get("content-length")
        if length is not None:
            number = length.strip()
            if not (number.isascii() and number.isdigit()):  # "²".isdigit() holds
                raise AttemptError(f"a malformed Content-Length: {length[:80]!r}", conn.remote)
            # More than MAX_DRAIN is read in part either way; int() refuses 4300+ digits.
            remaining = int(number) if len(number) <= 18 else MAX_DRAIN + 1
            while remaining:
                if seen >= MAX_DRAIN:
                    return bytes(kept), True, False
                chunk = await reader.read(min(remaining, 65536))
                if not chunk:
                    raise AttemptError("the answer ended inside its body", conn.remote)
                take(chunk)
                remaining -= len(chunk)
            return bytes(kept), seen > len(kept), True
        return await self._until_eof(reader)

    async def _until_eof(self, reader: asyncio.StreamReader) -> tuple[bytes, bool, bool]:
        """A body that ends with the connection: read the excerpt, then stop."""
        kept = bytearray()
        while len(kept) < self.body_limit:
            chunk = await reader.read(self.body_limit - len(kept))
            if not chunk:
                return bytes(kept), False, False
            kept.extend(chunk)
        more = await reader.read(1)
        return bytes(kept), bool(more), False

    async def aclose(self) -> None:
        """Close every connection."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        for conn in list(self._busy):
            conn.close()
        await asyncio.sleep(0)  # let the transports finish closing


def _parse_head(raw: bytes, remote: str) -> tuple[str, int, dict[str, str]]:
    """The HTTP version, status and headers (lower-case names, repeats joined)."""
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if (
        len(parts) < 2
        or parts[0] not in ("HTTP/1.1", "HTTP/1.0")
        # three ASCII digits from 100 ("²".isdigit() holds; "000" is no status)
        or not (len(parts[1]) == 3 and parts[1].isascii() and parts[1].isdigit())
        or parts[1] < "100"
    ):
        raise AttemptError(f"not an HTTP/1.x answer: {lines[0][:80]!r}", remote)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or line[0] in " \t":
            raise AttemptError(f"a malformed header line: {line[:80]!r}", remote)
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return parts[0], int(parts[1]), headers


async def _line(reader: asyncio.StreamReader, remote: str) -> bytes:
    try:
        return (await reader.readuntil(b"\r\n"))[:-2]
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        raise AttemptError("the answer's chunked body is malformed", remote) from None


async def _exactly(reader: asyncio.StreamReader, n: int, remote: str) -> bytes:
    try:
        return await reader.readexactly(n)
    except asyncio.IncompleteReadError:
        raise AttemptError("the answer ended inside its body", remote) from None
