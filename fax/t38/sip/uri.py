"""SIP URIs, name-addr values (From, To, Contact, Route) and Via values (RFC 3261 §19, §20)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from fax.t38.sip.errors import SipParseError

_USER = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+")
_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9][A-Za-z0-9.\-]*")
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_VIA = re.compile(r"SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+(.*)", re.IGNORECASE | re.DOTALL)
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061}


def split_params(text: str) -> dict[str, str | None]:
    """``;a=1;b`` (leading ``;`` optional) as an ordered dict; names lower-cased."""
    out: dict[str, str | None] = {}
    for part in split_outside_quotes(text, ";"):
        part = part.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip().lower()
        if not _TOKEN.fullmatch(name):
            raise SipParseError(f"malformed parameter {part[:40]!r}")
        out[name] = value.strip() if sep else None
    return out


def join_params(params: dict[str, str | None]) -> str:
    """The ``;a=1;b`` text of a parameter dict."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def split_outside_quotes(text: str, sep: str) -> list[str]:
    """Split on ``sep`` except inside double quotes or angle brackets."""
    parts: list[str] = []
    cur: list[str] = []
    quoted = False
    angle = 0
    escaped = False
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
            continue
        if quoted and ch == "\\":
            escaped = True
            cur.append(ch)
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            angle += 1
        elif not quoted and ch == ">":
            angle = max(0, angle - 1)
        if ch == sep and not quoted and angle == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if quoted:
        raise SipParseError("unterminated quoted string")
    parts.append("".join(cur))
    return parts


@dataclass(frozen=True)
class SipUri:
    """A ``sip:`` or ``sips:`` URI."""

    host: str
    user: str | None = None
    port: int | None = None
    scheme: str = "sip"
    password: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str = ""

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a SIP URI; raises `SipParseError`."""
        text = text.strip()
        scheme, sep, rest = text.partition(":")
        scheme = scheme.lower()
        if not sep or scheme not in ("sip", "sips"):
            raise SipParseError(f"not a sip/sips URI: {text[:60]!r}")
        rest, _, headers = rest.partition("?")
        user: str | None = None
        password: str | None = None
        if "@" in rest:
            userinfo, _, rest = rest.rpartition("@")
            user, psep, pw = userinfo.partition(":")
            password = pw if psep else None
            if not user or not _USER.fullmatch(user):
                raise SipParseError(f"malformed user part in {text[:60]!r}")
        hostport, _, params = rest.partition(";")
        host, port = _split_hostport(hostport, text)
        return cls(host=host, user=user, port=port, scheme=scheme, password=password,
                   params=split_params(params), headers=headers)

    def __str__(self) -> str:
        user = ""
        if self.user is not None:
            pw = f":{self.password}" if self.password is not None else ""
            user = f"{self.user}{pw}@"
        port = f":{self.port}" if self.port is not None else ""
        hdrs = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{user}{self.host}{port}{join_params(self.params)}{hdrs}"

    @property
    def transport(self) -> str:
        """The transport this URI asks for: ``tls`` for sips, else its param or udp."""
        t = (self.params.get("transport") or "").lower()
        if self.scheme == "sips":
            return "tls"
        return t if t in ("udp", "tcp", "tls") else "udp"

    @property
    def effective_port(self) -> int:
        """The explicit port, else the transport's default."""
        return self.port if self.port is not None else DEFAULT_PORTS[self.transport]

    @property
    def bare_host(self) -> str:
        """The host without IPv6 brackets (for sockets)."""
        return self.host[1:-1] if self.host.startswith("[") else self.host

    def with_(self, **changes: object) -> SipUri:
        """A copy with some fields changed."""
        return replace(self, **changes)  # type: ignore[arg-type]


def _split_hostport(hostport: str, whole: str) -> tuple[str, int | None]:
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise SipParseError(f"malformed IPv6 host in {whole[:60]!r}")
        host, rest = hostport[: end + 1], hostport[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            raise SipParseError(f"malformed host in {whole[:60]!r}")
    else:
        host, sep, p = hostport.partition(":")
        port_text = p if sep else None
    if not _HOST.fullmatch(host):
        raise SipParseError(f"malformed host in {whole[:60]!r}")
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise SipParseError(f"malformed port in {whole[:60]!r}")
        port = int(port_text)
    return host, port


@dataclass(frozen=True)
class Address:
    """A name-addr or addr-spec with header parameters: From, To, Contact, Route."""

    uri: SipUri
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Address:
        """Parse ``"Name" <sip:…>;tag=x`` or ``sip:…;tag=x``."""
        text = text.strip()
        if "<" in text:
            lt = text.index("<")
            gt = text.find(">", lt)
            if gt < 0:
                raise SipParseError(f"unterminated <URI> in {text[:60]!r}")
            display = text[:lt].strip()
            if display.startswith('"') and display.endswith('"') and len(display) >= 2:
                display = display[1:-1].replace('\\"', '"').replace("\\\\", "\\")
            uri = SipUri.parse(text[lt + 1 : gt])
            params = split_params(text[gt + 1 :])
            return cls(uri, display or None, params)
        uri_text, _, params_text = text.partition(";")
        return cls(SipUri.parse(uri_text), None, split_params(params_text))

    def __str__(self) -> str:
        display = ""
        if self.display:
            escaped = self.display.replace("\\", "\\\\").replace('"', '\\"')
            display = f'"{escaped}" '
        return f"{display}<{self.uri}>{join_params(self.params)}"

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter."""
        return self.params.get("tag")

    def with_tag(self, tag: str) -> Address:
        """A copy with ``tag`` set."""
        return replace(self, params={**self.params, "tag": tag})


@dataclass(frozen=True)
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=…;rport;received=…``."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one Via value (not a comma-joined list)."""
        text = text.strip()
        m = _VIA.fullmatch(text)
        if m is None:
            raise SipParseError(f"malformed Via {text[:60]!r}")
        sent_by, _, params = m.group(2).partition(";")
        host, port = _split_hostport(sent_by.strip(), text)
        return cls(m.group(1).upper(), host, port, split_params(params))

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{join_params(self.params)}"

    @property
    def branch(self) -> str | None:
        """The ``branch`` parameter (the transaction id when it starts with z9hG4bK)."""
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int]:
        """host and port (default for the transport) as written by the sender."""
        default = DEFAULT_PORTS.get(self.transport.lower(), 5060)
        return self.host.lower(), self.port if self.port is not None else default

    def with_params(self, **params: str | None) -> Via:
        """A copy with parameters set or added."""
        return replace(self, params={**self.params, **params})
