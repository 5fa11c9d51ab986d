"""SIP over UDP, TCP and TLS (RFC 3261 §18) on asyncio protocols.

One `TransportLayer` owns the listening sockets and every stream connection. Sending is
synchronous (``send``) so transactions can retransmit from timer callbacks; a stream
connection to a new target is opened first with ``await connect(target)``. Stream
connections are keyed by the peer's address, so responses and in-dialog requests go back
over the connection a request came on (§18.2.2).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from fax.t38.sip.errors import MessageTooLarge, SipParseError, TransportError
from fax.t38.sip.message import (
    MAX_MESSAGE_SIZE,
    SipRequest,
    SipResponse,
    StreamParser,
    make_response,
    parse_head_only,
    parse_message,
)

log = logging.getLogger(__name__)
STREAM_TRANSPORTS = ("tcp", "tls")
CONNECT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Target:
    """Where a message goes: transport and the peer's host and port."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        """TCP and TLS: no retransmissions, timers that only wait."""
        return self.transport in STREAM_TRANSPORTS


@dataclass(frozen=True)
class Received:
    """A parsed message and where it came from."""

    message: SipRequest | SipResponse
    source: Target

    @property
    def transport(self) -> str:
        """udp, tcp or tls."""
        return self.source.transport


Handler = Callable[[Received], None]


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, layer: TransportLayer) -> None:
        self.layer = layer
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        src = Target("udp", str(addr[0]), int(addr[1]))
        if data.strip(b"\r\n") == b"":
            return  # keep-alive
        try:
            msg = parse_message(data)
        except SipParseError as exc:
            self.layer.reject_malformed(data, src, exc)
            return
        self.layer.deliver(Received(msg, src))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the transaction's timers handle the loss.
        log.debug("udp error: %s", exc)


class _Stream(asyncio.Protocol):
    def __init__(self, layer: TransportLayer, kind: str) -> None:
        self.layer = layer
        self.kind = kind
        self.parser = StreamParser()
        self.transport: asyncio.Transport | None = None
        self.peer: Target | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = Target(self.kind, str(host), int(port))
        self.layer.streams[self.peer] = self

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        try:
            messages = self.parser.feed(data)
        except SipParseError as exc:
            # A stream cannot be resynchronised after a bad message: drop the connection.
            log.info("closing %s connection from %s: %s", self.kind, self.peer, exc)
            assert self.transport is not None
            self.transport.close()
            return
        for msg in messages:
            self.layer.deliver(Received(msg, self.peer))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.layer.streams.get(self.peer) is self:
            del self.layer.streams[self.peer]
        if not self.closed.done():
            self.closed.set_result(None)

    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise TransportError(f"{self.kind} connection to {self.peer} is closed")
        self.transport.write(data)


class TransportLayer:
    """The UA's sockets: one UDP socket, TCP and TLS listeners, stream connections."""

    def __init__(
        self,
        handler: Handler,
        *,
        tls_server: ssl.SSLContext | None = None,
        tls_client: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.tls_server = tls_server
        self.tls_client = tls_client
        self.streams: dict[Target, _Stream] = {}
        self._udp: _Udp | None = None
        self._servers: dict[str, asyncio.Server] = {}
        self.addresses: dict[str, tuple[str, int]] = {}
        self._connecting: dict[Target, asyncio.Task[_Stream]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def listen(self, transport: str, host: str, port: int) -> tuple[str, int]:
        """Start listening on ``transport``; port 0 picks a free one. Returns host, port."""
        loop = asyncio.get_running_loop()
        try:
            if transport == "udp":
                _, proto = await loop.create_datagram_endpoint(
                    lambda: _Udp(self), local_addr=(host, port)
                )
                self._udp = proto
                assert proto.transport is not None
                bound = proto.transport.get_extra_info("sockname")
            else:
                if transport == "tls" and self.tls_server is None:
                    raise TransportError("TLS listening needs a certificate and key")
                ctx = self.tls_server if transport == "tls" else None
                server = await loop.create_server(
                    lambda: _Stream(self, transport), host, port, ssl=ctx
                )
                self._servers[transport] = server
                bound = server.sockets[0].getsockname()
        except OSError as exc:
            raise TransportError(f"cannot listen on {transport} {host}:{port}: {exc}") from exc
        self.addresses[transport] = (str(bound[0]), int(bound[1]))
        return self.addresses[transport]

    async def listen_udp_tcp(self, host: str, port: int) -> int:
        """UDP and TCP on one port (port 0: a port free for both). Returns the port."""
        for _ in range(20):
            _, bound = await self.listen("udp", host, port)
            try:
                await self.listen("tcp", host, bound)
                return bound
            except TransportError:
                if port:
                    raise
                assert self._udp is not None and self._udp.transport is not None
                self._udp.transport.close()
                self._udp = None
        raise TransportError(f"no port on {host} free for both UDP and TCP")

    def reliable(self, transport: str) -> bool:
        """Whether ``transport`` is a stream."""
        return transport in STREAM_TRANSPORTS

    def is_open(self, target: Target) -> bool:
        """A stream connection to ``target`` exists (UDP is always 'open')."""
        return target.transport == "udp" or target in self.streams

    async def connect(self, target: Target) -> None:
        """Make sure a message to ``target`` can be sent (opens a TCP/TLS connection)."""
        if target.transport == "udp":
            if self._udp is None:
                raise TransportError("no UDP socket: listen on udp first")
            return
        if target in self.streams:
            return
        task = self._connecting.get(target)
        if task is None:
            task = asyncio.ensure_future(self._open(target))
            self._connecting[target] = task
            task.add_done_callback(lambda _t: self._connecting.pop(target, None))
        await asyncio.shield(task)

    async def _open(self, target: Target) -> _Stream:
        loop = asyncio.get_running_loop()
        ctx: ssl.SSLContext | None = None
        if target.transport == "tls":
            ctx = self.tls_client or ssl.create_default_context()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                _, proto = await loop.create_connection(
                    lambda: _Stream(self, target.transport), target.host, target.port,
                    ssl=ctx, server_hostname=target.host if ctx else None,
                )
        except (OSError, TimeoutError, ssl.SSLError) as exc:
            raise TransportError(f"cannot connect {target.transport} to "
                                 f"{target.host}:{target.port}: {exc}") from exc
        # Keyed by the address we dialled (the peer name may be written differently).
        assert proto.peer is not None
        self.streams.pop(proto.peer, None)
        proto.peer = target
        self.streams[target] = proto
        return proto

    def send(self, message: SipRequest | SipResponse, target: Target) -> None:
        """Send now; raises `TransportError` when there is no way to ``target``."""
        data = message.encode()
        if target.transport == "udp":
            if self._udp is None or self._udp.transport is None:
                raise TransportError("no UDP socket")
            if len(data) > MAX_MESSAGE_SIZE:
                raise TransportError(f"message of {len(data)} bytes too large for UDP")
            self._udp.transport.sendto(data, (target.host, target.port))
            return
        stream = self.streams.get(target)
        if stream is None:
            raise TransportError(f"no {target.transport} connection to "
                                 f"{target.host}:{target.port}")
        stream.write(data)

    def send_soon(self, message: SipRequest | SipResponse, target: Target) -> None:
        """Send, opening a stream connection first if needed (errors are only logged)."""
        if self.is_open(target):
            try:
                self.send(message, target)
            except TransportError as exc:
                log.info("send to %s failed: %s", target, exc)
            return

        async def later() -> None:
            try:
                await self.connect(target)
                self.send(message, target)
            except TransportError as exc:
                log.info("send to %s failed: %s", target, exc)

        task = asyncio.ensure_future(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def deliver(self, received: Received) -> None:
        """Hand a parsed message to the user agent (exceptions there must not kill I/O)."""
        try:
            self.handler(received)
        except Exception:
            log.exception("error handling %s from %s", type(received.message).__name__,
                          received.source)

    def reject_malformed(self, data: bytes, source: Target, exc: SipParseError) -> None:
        """Answer a malformed request with 400/513 when its headers allow it, else drop."""
        log.info("malformed SIP message from %s: %s", source, exc)
        try:
            msg = parse_head_only(data)
        except SipParseError:
            return
        if isinstance(msg, SipRequest) and msg.method != "ACK":
            status = 513 if isinstance(exc, MessageTooLarge) else 400
            reason = " ".join(str(exc).split())[:80]
            self.send_soon(make_response(msg, status, reason), source)

    async def aclose(self) -> None:
        """Close every socket and connection."""
        for task in list(self._tasks):
            task.cancel()
        if self._udp is not None and self._udp.transport is not None:
            self._udp.transport.close()
        for server in self._servers.values():
            server.close()
        streams = list(self.streams.values())
        for s in streams:
            if s.transport is not None:
                s.transport.close()
        for s in streams:
            try:
                async with asyncio.timeout(2):
                    await s.closed
            except TimeoutError:
                if s.transport is not None:
                    s.transport.abort()
        for server in self._servers.values():
            try:
                async with asyncio.timeout(2):
                    await server.wait_closed()
            except TimeoutError:
                log.debug("listener did not close in time")
        self.streams.clear()
