"""Where a webhook may be sent: URL rules and the address policy against SSRF.

A webhook URL is ``http://`` or ``https://`` with a host, without user info, fragment,
spaces or control characters, at most :data:`MAX_URL` characters. Its host is resolved
and EVERY address it resolves to must be a public unicast address; otherwise the URL is
refused — when the endpoint is created or changed, and again whenever the delivery client
opens a connection (a name that later resolves to an internal address — DNS rebinding —
is refused then). The client connects to the very address it checked, never to a second
resolution (``webhooks/client.py``).

Refused (``refusal``), with the reason named:

* cloud metadata services: 169.254.169.254 (AWS, GCP, Azure, OpenStack …),
  fd00:ec2::254 (AWS over IPv6), 100.100.100.200 (Alibaba Cloud);
* loopback (127.0.0.0/8, ::1), private (10/8, 172.16/12, 192.168/16), link-local
  (169.254/16, fe80::/10), unique local (fc00::/7), shared address space / CGNAT
  (100.64/10), multicast, unspecified (0.0.0.0, ::), reserved (240/4 …);
* anything else ``ipaddress`` does not call globally reachable (documentation and
  benchmarking ranges, 0/8, IETF protocol assignments, site-local fec0::/10 …);
* IPv6 forms that embed an IPv4 address are judged by that address: IPv4-mapped
  (::ffff:a.b.c.d), 6to4 (2002::/16) and NAT64 (64:ff9b::/96).

Numeric tricks need no rule of their own: ``http://2130706433/``, ``http://0x7f.1/`` or
``http://127.1/`` are resolved by the system resolver like any name (to 127.0.0.1) and
refused by the same check. ``[webhooks] allow_private_targets = true`` turns the address
check off (tests and ``gateway demo`` deliver to loopback receivers); the URL rules stay.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_URL = 2048
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses it resolves to, in the resolver's order.
Resolver = Callable[[str, int], Awaitable[list[str]]]

_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200")
)
_SHARED = ipaddress.ip_network("100.64.0.0/10")
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetError(ValueError):
    """The URL itself is not acceptable (scheme, syntax, user info …)."""


class TargetRefused(Exception):
    """The URL's host resolves to an address webhooks may not be sent to (or to none)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A checked webhook URL, split for the client."""

    url: str
    scheme: str  # http | https
    host: str  # lower case, IDNA (ASCII), IPv6 without brackets
    port: int
    path: str  # the request target: path and query
    host_header: str  # the Host header: host, and the port unless it is the default


def parse_target(url: str) -> Target:
    """Check the URL's form (not its addresses) and split it; ``TargetError`` says why not."""
    if not isinstance(url, str) or not url:
        raise TargetError("must be a non-empty string")
    if len(url) > MAX_URL:
        raise TargetError(f"must be at most {MAX_URL} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise TargetError("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise TargetError(f"is not a valid URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise TargetError("must start with http:// or https://")
    if "@" in parts.netloc:
        raise TargetError("must not contain user info (user:password@); authenticate with "
                          "the webhook signature instead")  # fmt: skip
    if parts.fragment or url.endswith("#"):
        raise TargetError("must not contain a fragment (#…)")
    host = parts.hostname or ""
    if not host:
        raise TargetError("must name a host")
    if "%" in host:
        raise TargetError("must not name an IPv6 zone (%…)")
    literal = _literal(host)
    if literal is None:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError:
            raise TargetError(f"has a host name that is not valid: {host!r}") from None
    else:
        host = str(literal)
    if port == 0:
        raise TargetError("must not use port 0")
    default = 443 if scheme == "https" else 80
    port = port or default
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    shown = f"[{host}]" if ":" in host else host
    host_header = shown if port == default else f"{shown}:{port}"
    return Target(url, scheme, host, port, path, host_header)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def refusal(address: str | IPAddress) -> str | None:
    """Why webhooks may not go to ``address`` (None: a public unicast address)."""
    ip = address if not isinstance(address, str) else ipaddress.ip_address(address.split("%")[0])
    if ip in _METADATA:
        return "a cloud metadata service address"
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            inner = refusal(embedded)
            return f"{inner} (embedded in IPv6 as {embedded})" if inner else None
    checks: list[tuple[bool, str]] = [
        (ip.is_loopback, "a loopback address"),
        (ip.is_link_local, "a link-local address"),
        (ip.is_multicast, "a multicast address"),
        (ip.is_unspecified, "the unspecified address"),
        (ip in _SHARED, "a shared (CGNAT, RFC 6598) address"),
        (ip in _UNIQUE_LOCAL, "a unique local address (fc00::/7)"),
        (ip.is_reserved, "a reserved address"),
        (ip.is_private, "a private address"),
        (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local, "a site-local address"),
        (not ip.is_global, "not a globally reachable address"),
    ]
    return next((reason for hit, reason in checks if hit), None)


async def system_resolver(host: str, port: int) -> list[str]:
    """The host's addresses from the system resolver, in its order, without repeats."""
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve_checked(target: Target, allow_private: bool, resolver: Resolver) -> list[str]:
    """The addresses to connect to for ``target``; ``TargetRefused`` when the host does not
    resolve, or when any of its addresses is refused (unless ``allow_private``)."""
    literal = _literal(target.host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            addresses = await resolver(target.host, target.port)
        except OSError as exc:
            raise TargetRefused(f"{target.host} does not resolve ({exc})") from None
        if not addresses:
            raise TargetRefused(f"{target.host} does not resolve to any address")
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason and literal is not None:
                raise TargetRefused(f"{target.host} is {reason}")
            if reason:
                raise TargetRefused(f"{target.host} resolves to {address}, {reason}")
    return addresses
