"""The UDP socket a call's media runs on: bound on ``media_ip`` to a port from ``media_ports``.

The SIP layer binds an endpoint before it writes its SDP (the port goes into the
``m=`` line) and keeps it across a re-INVITE from audio to T.38: the audio session
detaches, the T.38 session attaches to the same socket.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
from collections.abc import Callable

from fax.t38.errors import FaxError

__all__ = ["MediaEndpoint", "MediaPortsExhaustedError", "parse_port_range"]

log = logging.getLogger("fax.t38.endpoint")

Address = tuple[str, int]
Receiver = Callable[[bytes, Address], None]


class MediaPortsExhaustedError(FaxError):
    """No port of the configured media range could be bound."""


def parse_port_range(value: str | range | tuple[int, int]) -> range:
    """``"40000-40999"``, ``(40000, 40999)`` (both inclusive) or a ``range`` → ``range``."""
    if isinstance(value, range):
        ports = value
    elif isinstance(value, tuple):
        ports = range(value[0], value[1] + 1)
    else:
        low, sep, high = value.partition("-")
        try:
            ports = range(int(low), int(high if sep else low) + 1)
        except ValueError:
            raise ValueError(f"media_ports must look like 40000-40999, not {value!r}") from None
    if not ports or ports.start < 1024 or ports.stop > 65536:
        raise ValueError(f"media_ports must lie within 1024-65535: {value!r}")
    return ports


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.endpoint: MediaEndpoint | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        receiver = self.endpoint.receiver if self.endpoint is not None else None
        if receiver is not None:
            receiver(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like: the far end's media is not there (yet).
        if self.endpoint is not None:
            self.endpoint.errors += 1
        log.debug("media socket error: %s", exc)


class MediaEndpoint:
    """One bound UDP socket; the attached session receives its datagrams."""

    def __init__(self, transport: asyncio.DatagramTransport, local_address: Address) -> None:
        self._transport = transport
        self.local_address = local_address
        self.receiver: Receiver | None = None
        self.errors = 0

    @classmethod
    async def bind(
        cls, media_ip: str = "127.0.0.1", media_ports: str | range | tuple[int, int] | None = None
    ) -> MediaEndpoint:
        """Bind on ``media_ip``, on a free even port of ``media_ports`` (any port if None)."""
        loop = asyncio.get_running_loop()
        if media_ports is None:
            candidates: list[int] = [0]
        else:
            ports = parse_port_range(media_ports)
            # RTP convention: even ports. Random order spreads calls over the range.
            candidates = [p for p in ports if p % 2 == 0] or list(ports)
            random.shuffle(candidates)
        family = socket.AF_INET6 if ":" in media_ip else socket.AF_INET
        for port in candidates:
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((media_ip, port))
            except OSError as exc:
                sock.close()
                if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                    continue
                raise
            sock.setblocking(False)
            transport, protocol = await loop.create_datagram_endpoint(_Protocol, sock=sock)
            name = sock.getsockname()
            endpoint = cls(transport, (str(name[0]), int(name[1])))
            protocol.endpoint = endpoint
            return endpoint
        raise MediaPortsExhaustedError(f"no free media port in {media_ports} on {media_ip}")

    @property
    def port(self) -> int:
        """The bound port (for the SDP ``m=`` line)."""
        return self.local_address[1]

    def attach(self, receiver: Receiver | None) -> None:
        """Send received datagrams to ``receiver`` from now on (None: drop them)."""
        self.receiver = receiver

    def sendto(self, data: bytes, addr: Address) -> None:
        """Send one datagram."""
        self._transport.sendto(data, addr)

    @property
    def closed(self) -> bool:
        """Whether the socket is closed."""
        return self._transport.is_closing()

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.receiver = None
        self._transport.close()
