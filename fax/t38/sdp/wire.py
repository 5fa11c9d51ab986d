"""SDP text (RFC 8866): parse and serialize, keeping every line it does not interpret.

Every malformed input raises `SdpError`: a line that is not ``x=value``, a missing
``v=``/``o=``/``s=``, a number out of range, an address that is neither IPv4, IPv6 nor a
host name, a live stream without a ``c=`` address.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from fax.t38.sip.errors import SdpError

MAX_SDP_SIZE = 16384
_LINE = re.compile(r"([a-z])=(.*)")
_TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9.\-]*")


@dataclass(frozen=True)
class Attribute:
    """An ``a=`` line: a property (``value`` None) or ``name:value``."""

    name: str
    value: str | None = None

    def serialize(self) -> str:
        """The text after ``a=``."""
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True)
class Origin:
    """The ``o=`` line."""

    username: str
    session_id: int
    version: int
    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    def serialize(self) -> str:
        """The text after ``o=``."""
        return (
            f"{self.username} {self.session_id} {self.version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True)
class Connection:
    """A ``c=`` line (unicast; a multicast TTL/count suffix is kept in ``address``)."""

    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    @classmethod
    def for_address(cls, address: str) -> Connection:
        """IP4 or IP6 chosen from the address."""
        return cls(address, addrtype="IP6" if ":" in address else "IP4")

    def serialize(self) -> str:
        """The text after ``c=``."""
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass
class Media:
    """One media description: the ``m=`` line and the lines under it."""

    kind: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    connection: Connection | None = None
    attributes: list[Attribute] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)

    def attr(self, name: str) -> Attribute | None:
        """The first attribute called ``name`` (case-insensitive, T.38 names vary)."""
        low = name.lower()
        return next((a for a in self.attributes if a.name.lower() == low), None)

    def attrs(self, name: str) -> list[Attribute]:
        """Every attribute called ``name`` (case-insensitive)."""
        low = name.lower()
        return [a for a in self.attributes if a.name.lower() == low]

    @property
    def rejected(self) -> bool:
        """Port 0: the stream is refused or removed."""
        return self.port == 0


@dataclass
class SessionDescription:
    """A whole SDP body."""

    origin: Origin
    name: str = "-"
    connection: Connection | None = None
    times: list[str] = field(default_factory=lambda: ["0 0"])
    attributes: list[Attribute] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)
    other: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, data: str | bytes) -> SessionDescription:
        """Parse an SDP body; raises `SdpError` on anything malformed."""
        return _parse(data)

    def serialize(self) -> str:
        """The SDP text, CRLF line ends."""
        lines = ["v=0", f"o={self.origin.serialize()}", f"s={self.name}"]
        lines += [f"{k}={v}" for k, v in self.other if k in "iuep"]
        if self.connection:
            lines.append(f"c={self.connection.serialize()}")
        lines += [f"{k}={v}" for k, v in self.other if k == "b"]
        lines += [f"t={t}" for t in self.times]
        lines += [f"{k}={v}" for k, v in self.other if k in "rzk"]
        lines += [f"a={a.serialize()}" for a in self.attributes]
        for m in self.media:
            port = f"{m.port}/{m.port_count}" if m.port_count else str(m.port)
            lines.append(f"m={m.kind} {port} {m.proto} {' '.join(m.formats)}")
            lines += [f"{k}={v}" for k, v in m.other if k == "i"]
            if m.connection:
                lines.append(f"c={m.connection.serialize()}")
            lines += [f"{k}={v}" for k, v in m.other if k in "bk"]
            lines += [f"a={a.serialize()}" for a in m.attributes]
        return "\r\n".join(lines) + "\r\n"

    def encode(self) -> bytes:
        """The SDP as bytes for a SIP body."""
        return self.serialize().encode()

    def connection_for(self, media: Media) -> Connection | None:
        """The media's own ``c=`` or the session's."""
        return media.connection or self.connection


def _parse(data: str | bytes) -> SessionDescription:
    if isinstance(data, bytes):
        if len(data) > MAX_SDP_SIZE:
            raise SdpError(f"SDP larger than {MAX_SDP_SIZE} bytes")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SdpError("SDP is not UTF-8") from exc
    if len(data) > MAX_SDP_SIZE:
        raise SdpError(f"SDP larger than {MAX_SDP_SIZE} characters")
    lines = [ln for ln in data.replace("\r\n", "\n").split("\n") if ln != ""]
    if not lines:
        raise SdpError("empty SDP")
    pairs: list[tuple[str, str]] = []
    for ln in lines:
        match = _LINE.fullmatch(ln)
        if match is None:
            raise SdpError(f"malformed SDP line {ln[:60]!r}")
        pairs.append((match.group(1), match.group(2)))
    if pairs[0] != ("v", "0"):
        raise SdpError("SDP must start with v=0")
    origin: Origin | None = None
    name: str | None = None
    sd_conn: Connection | None = None
    times: list[str] = []
    s_attrs: list[Attribute] = []
    other: list[tuple[str, str]] = []
    media: list[Media] = []
    for kind, value in pairs[1:]:
        if kind == "m":
            media.append(_parse_m(value))
            continue
        if media:
            cur = media[-1]
            if kind == "c":
                if cur.connection is not None:
                    raise SdpError("more than one c= line in a media description")
                cur.connection = _parse_c(value)
            elif kind == "a":
                cur.attributes.append(_parse_a(value))
            elif kind in "ibk":
                cur.other.append((kind, value))
            else:
                raise SdpError(f"{kind}= line not allowed in a media description")
            continue
        if kind == "o":
            if origin is not None:
                raise SdpError("more than one o= line")
            origin = _parse_o(value)
        elif kind == "s":
            if name is not None:
                raise SdpError("more than one s= line")
            name = value
        elif kind == "c":
            if sd_conn is not None:
                raise SdpError("more than one session c= line")
            sd_conn = _parse_c(value)
        elif kind == "t":
            parts = value.split()
            if len(parts) != 2 or not all(p.isdigit() for p in parts):
                raise SdpError(f"malformed t= line {value[:60]!r}")
            times.append(value)
        elif kind == "a":
            s_attrs.append(_parse_a(value))
        elif kind in "iuepbrzk":
            other.append((kind, value))
        else:
            raise SdpError(f"unknown SDP line type {kind}=")
    if origin is None:
        raise SdpError("SDP has no o= line")
    if name is None:
        raise SdpError("SDP has no s= line")
    for m in media:
        if m.port != 0 and m.connection is None and sd_conn is None:
            raise SdpError(f"m={m.kind} stream has no c= address")
    return SessionDescription(
        origin=origin,
        name=name,
        connection=sd_conn,
        times=times or ["0 0"],
        attributes=s_attrs,
        media=media,
        other=other,
    )


def parse_int(text: str, what: str, hi: int = 2**63 - 1) -> int:
    """A decimal number in 0..hi, else `SdpError` naming ``what``."""
    if not text.isdigit() or int(text) > hi:
        raise SdpError(f"{what} is not a number in range: {text[:30]!r}")
    return int(text)


def _address(nettype: str, addrtype: str, address: str) -> None:
    if nettype != "IN":
        raise SdpError(f"unsupported network type {nettype!r}")
    host = address.split("/", 1)[0]
    if addrtype == "IP4":
        try:
            ipaddress.IPv4Address(host)
            return
        except ValueError:
            pass
    elif addrtype == "IP6":
        try:
            ipaddress.IPv6Address(host)
            return
        except ValueError:
            pass
    else:
        raise SdpError(f"unsupported address type {addrtype!r}")
    if not _HOST.fullmatch(host):
        raise SdpError(f"malformed {addrtype} address {address[:60]!r}")


def _parse_o(value: str) -> Origin:
    parts = value.split(" ")
    if len(parts) != 6 or not all(parts):
        raise SdpError(f"malformed o= line {value[:80]!r}")
    user, sid, ver, nettype, addrtype, addr = parts
    _address(nettype, addrtype, addr)
    sid_num, ver_num = parse_int(sid, "o= session id"), parse_int(ver, "o= version")
    return Origin(user, sid_num, ver_num, addr, nettype, addrtype)


def _parse_c(value: str) -> Connection:
    parts = value.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SdpError(f"malformed c= line {value[:80]!r}")
    _address(*parts)
    return Connection(parts[2], parts[0], parts[1])


def _parse_m(value: str) -> Media:
    parts = value.split(" ")
    if len(parts) < 4 or not all(parts):
        raise SdpError(f"malformed m= line {value[:80]!r}")
    kind, port_text, proto, *formats = parts
    if not _TOKEN.fullmatch(kind):
        raise SdpError(f"malformed media type {kind[:30]!r}")
    count: int | None = None
    if "/" in port_text:
        port_text, count_text = port_text.split("/", 1)
        count = parse_int(count_text, "m= port count", 65535)
    port = parse_int(port_text, "m= port", 65535)
    if not all(_TOKEN.fullmatch(p) for p in proto.split("/")):
        raise SdpError(f"malformed transport protocol {proto[:30]!r}")
    return Media(kind, port, proto, formats, count)


def _parse_a(value: str) -> Attribute:
    name, sep, rest = value.partition(":")
    if not _TOKEN.fullmatch(name):
        raise SdpError(f"malformed attribute name {name[:30]!r}")
    return Attribute(name, rest if sep else None)
