"""SIP messages (RFC 3261 §7, §20): parse and serialize, compact forms, folding, framing.

`parse_message` reads one datagram; `StreamParser` cuts a TCP/TLS byte stream into
messages by Content-Length. Both refuse, with `SipParseError`, anything malformed or over
the limits (`MAX_MESSAGE_SIZE`, `MAX_HEADERS`).
"""

from __future__ import annotations

import builtins
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from fax.t38.sip.errors import MessageTooLarge, SipParseError
from fax.t38.sip.uri import Address, SipUri, Via, split_outside_quotes

MAX_MESSAGE_SIZE = 65535
MAX_HEADERS = 200
MAX_VIAS = 32
METHODS = frozenset(
    {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "UPDATE", "INFO", "PRACK",
     "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH"}
)
_COMPACT = {
    "i": "Call-ID", "m": "Contact", "e": "Content-Encoding", "l": "Content-Length",
    "c": "Content-Type", "f": "From", "s": "Subject", "k": "Supported", "t": "To",
    "v": "Via", "o": "Event", "r": "Refer-To", "u": "Allow-Events", "x": "Session-Expires",
    "a": "Accept-Contact", "b": "Referred-By", "j": "Reject-Contact", "d": "Request-Disposition",
    "y": "Identity",
}
_CANONICAL = {
    name.lower(): name
    for name in (
        "Call-ID", "CSeq", "WWW-Authenticate", "Proxy-Authenticate", "Proxy-Authorization",
        "Authorization", "Min-SE", "Session-Expires", "Max-Forwards", "Record-Route",
        "Content-Length", "Content-Type", "Retry-After", "User-Agent", "MIME-Version",
        "Authentication-Info", "Proxy-Require", "Min-Expires", "RSeq", "RAck",
        *_COMPACT.values(),
    )
}
# Headers whose values may be joined by commas on one line (RFC 3261 §7.3.1).
_LIST_HEADERS = frozenset(
    {"via", "route", "record-route", "contact", "allow", "supported", "require",
     "proxy-require", "unsupported", "accept"}
)
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_STATUS = re.compile(r"SIP/2\.0 ([1-6][0-9][0-9]) ?(.*)")


def canonical_name(name: str) -> str:
    """The long, conventionally capitalised header name (compact forms expanded)."""
    low = name.strip().lower()
    if low in _COMPACT:
        return _COMPACT[low]
    if low in _CANONICAL:
        return _CANONICAL[low]
    return "-".join(p.capitalize() for p in low.split("-"))


class Headers:
    """Ordered, case-insensitive SIP headers; repeated names are kept in order."""

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._items: list[tuple[str, str]] = []
        for k, v in items or []:
            self.add(k, v)

    def add(self, name: str, value: str) -> None:
        """Append a header line."""
        self._items.append((canonical_name(name), value.strip()))

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` line by one line (at the first one's place)."""
        name = canonical_name(name)
        low = name.lower()
        idx = next((i for i, (k, _) in enumerate(self._items) if k.lower() == low), None)
        self._items = [(k, v) for k, v in self._items if k.lower() != low]
        self._items.insert(len(self._items) if idx is None else idx, (name, value.strip()))

    def remove(self, name: str) -> None:
        """Drop every ``name`` line."""
        low = canonical_name(name).lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != low]

    def get(self, name: str) -> str | None:
        """The first ``name`` value, or None."""
        low = canonical_name(name).lower()
        return next((v for k, v in self._items if k.lower() == low), None)

    def get_all(self, name: str) -> list[str]:
        """Every ``name`` value; comma-joined list headers split into their elements."""
        low = canonical_name(name).lower()
        out: list[str] = []
        for k, v in self._items:
            if k.lower() != low:
                continue
            if low in _LIST_HEADERS:
                out += [p.strip() for p in split_outside_quotes(v, ",") if p.strip()]
            else:
                out.append(v)
        return out

    def tokens(self, name: str) -> builtins.set[str]:
        """The lower-cased option tags of Supported / Require / Allow style headers."""
        return {t.strip().lower() for v in self.get_all(name) for t in v.split(",") if t.strip()}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._items))

    def copy(self) -> Headers:
        """An independent copy."""
        h = Headers()
        h._items = list(self._items)
        return h


@dataclass
class SipMessage:
    """What requests and responses share: headers and a body."""

    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    @property
    def call_id(self) -> str:
        """Call-ID."""
        return self._required("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        """CSeq number and method."""
        value = self._required("CSeq")
        num, _, method = value.partition(" ")
        if not num.isdigit() or int(num) >= 2**31 or not method.strip():
            raise SipParseError(f"malformed CSeq {value[:40]!r}")
        return int(num), method.strip().upper()

    @property
    def vias(self) -> list[Via]:
        """Every Via, topmost first."""
        return [Via.parse(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        """The topmost Via."""
        vias = self.headers.get_all("Via")
        if not vias:
            raise SipParseError("message has no Via")
        return Via.parse(vias[0])

    @property
    def from_(self) -> Address:
        """From."""
        return Address.parse(self._required("From"))

    @property
    def to(self) -> Address:
        """To."""
        return Address.parse(self._required("To"))

    @property
    def contact(self) -> Address | None:
        """The first Contact, if any (``*`` is not an address and gives None)."""
        values = self.headers.get_all("Contact")
        if not values or values[0].strip() == "*":
            return None
        return Address.parse(values[0])

    @property
    def content_type(self) -> str:
        """The media type of the body, lower-cased, without parameters."""
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"message has no {name}")
        return value

    def _head_lines(self) -> list[str]:
        return [f"{k}: {v}" for k, v in self.headers if k != "Content-Length"]

    def _encode(self, start: str) -> bytes:
        lines = [start, *self._head_lines(), f"Content-Length: {len(self.body)}"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass
class SipRequest(SipMessage):
    """A SIP request."""

    method: str = "OPTIONS"
    uri: SipUri = field(default_factory=lambda: SipUri("invalid"))

    def encode(self) -> bytes:
        """The wire form."""
        return self._encode(f"{self.method} {self.uri} SIP/2.0")


@dataclass
class SipResponse(SipMessage):
    """A SIP response."""

    status: int = 200
    reason: str = "OK"

    def encode(self) -> bytes:
        """The wire form."""
        return self._encode(f"SIP/2.0 {self.status} {self.reason}")


def _unfold(head: str) -> list[str]:
    lines: list[str] = []
    for raw in head.split("\n"):
        line = raw.rstrip("\r")
        if line[:1] in (" ", "\t") and lines:
            lines[-1] = lines[-1].rstrip() + " " + line.strip()
        else:
            lines.append(line)
    return lines


def _parse_head(head: bytes, *, validate: bool = True) -> SipRequest | SipResponse:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError("SIP header is not UTF-8") from exc
    lines = _unfold(text)
    start, header_lines = lines[0], [ln for ln in lines[1:] if ln]
    if len(header_lines) > MAX_HEADERS:
        raise SipParseError(f"more than {MAX_HEADERS} header lines")
    headers = Headers()
    for line in header_lines:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name.strip()):
            raise SipParseError(f"malformed header line {line[:60]!r}")
        headers.add(name, value)
    msg: SipRequest | SipResponse
    if start.startswith("SIP/"):
        m = _STATUS.fullmatch(start)
        if m is None:
            raise SipParseError(f"malformed status line {start[:60]!r}")
        msg = SipResponse(headers=headers, status=int(m.group(1)), reason=m.group(2))
    else:
        parts = start.split(" ")
        if len(parts) != 3 or parts[2] != "SIP/2.0" or not _TOKEN.fullmatch(parts[0]):
            raise SipParseError(f"malformed request line {start[:60]!r}")
        msg = SipRequest(headers=headers, method=parts[0].upper(), uri=SipUri.parse(parts[1]))
    if validate:
        _validate(msg)
    return msg


def _validate(msg: SipRequest | SipResponse) -> None:
    for name in ("Call-ID", "From", "To", "CSeq"):
        if name not in msg.headers:
            raise SipParseError(f"message has no {name}")
    vias = msg.vias
    if not vias:
        raise SipParseError("message has no Via")
    if len(vias) > MAX_VIAS:
        raise SipParseError(f"more than {MAX_VIAS} Via values")
    msg.from_  # noqa: B018 -- parsed for validation
    msg.to  # noqa: B018
    _, method = msg.cseq
    if isinstance(msg, SipRequest):
        if method != msg.method and not (msg.method == "ACK" and method == "ACK"):
            raise SipParseError(f"CSeq method {method} does not match {msg.method}")
        mf = msg.headers.get("Max-Forwards")
        if mf is not None and (not mf.isdigit() or int(mf) > 255):
            raise SipParseError(f"malformed Max-Forwards {mf[:20]!r}")


def _content_length(msg: SipMessage, required: bool) -> int:
    value = msg.headers.get("Content-Length")
    if value is None:
        if required:
            raise SipParseError("stream message has no Content-Length")
        return -1
    if not value.isdigit():
        raise SipParseError(f"malformed Content-Length {value[:20]!r}")
    n = int(value)
    if n > MAX_MESSAGE_SIZE:
        raise MessageTooLarge(f"Content-Length {n} over {MAX_MESSAGE_SIZE}")
    return n


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one datagram's message; a shorter body than Content-Length is an error."""
    if len(data) > MAX_MESSAGE_SIZE:
        raise MessageTooLarge(f"message of {len(data)} bytes over {MAX_MESSAGE_SIZE}")
    data = data.lstrip(b"\r\n")
    sep = data.find(b"\r\n\r\n")
    skip = 4
    if sep < 0:
        sep, skip = data.find(b"\n\n"), 2
    if sep < 0:
        raise SipParseError("message has no end of headers")
    msg = _parse_head(data[:sep])
    body = data[sep + skip :]
    n = _content_length(msg, required=False)
    if n >= 0:
        if len(body) < n:
            raise SipParseError(f"body shorter than Content-Length {n}")
        body = body[:n]
    msg.body = body
    return msg


def parse_head_only(data: bytes) -> SipRequest | SipResponse:
    """The start line and headers of ``data``, unvalidated and without body: enough to
    answer a malformed request (its Via and Call-ID must still be readable)."""
    data = data[:MAX_MESSAGE_SIZE].lstrip(b"\r\n")
    sep = data.find(b"\r\n\r\n")
    msg = _parse_head(data if sep < 0 else data[:sep], validate=False)
    msg.top_via  # noqa: B018 -- raises if there is no usable Via
    msg.call_id  # noqa: B018
    for name in ("From", "To", "CSeq"):
        if name not in msg.headers:
            raise SipParseError(f"message has no {name}")
    return msg


class StreamParser:
    """Cuts a TCP/TLS byte stream into SIP messages by Content-Length (RFC 3261 §18.3)."""

    def __init__(self, max_size: int = MAX_MESSAGE_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_size

    def feed(self, data: bytes) -> list[SipRequest | SipResponse]:
        """Add received bytes; return the messages now complete.

        Raises `SipParseError` on a malformed message: the stream cannot be resynchronised
        and the caller should close the connection.
        """
        self._buf += data
        out: list[SipRequest | SipResponse] = []
        while True:
            # CRLF keep-alives (RFC 5626) between messages are skipped.
            while self._buf[:2] == b"\r\n":
                del self._buf[:2]
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > self._max:
                    raise MessageTooLarge(f"header over {self._max} bytes")
                return out
            msg = _parse_head(bytes(self._buf[:end]))
            n = _content_length(msg, required=True)
            total = end + 4 + n
            if total > self._max:
                raise MessageTooLarge(f"message of {total} bytes over {self._max}")
            if len(self._buf) < total:
                return out
            msg.body = bytes(self._buf[end + 4 : total])
            del self._buf[:total]
            out.append(msg)


REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 183: "Session Progress",
    200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 407: "Proxy Authentication Required",
    408: "Request Timeout", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
    420: "Bad Extension", 422: "Session Interval Too Small", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 504: "Server Time-out",
    513: "Message Too Large", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}


def reason_phrase(status: int) -> str:
    """The RFC 3261 reason phrase of ``status``."""
    return REASONS.get(status, "Unknown")


def make_response(
    request: SipRequest, status: int, reason: str | None = None, *, to_tag: str | None = None
) -> SipResponse:
    """A response to ``request`` (RFC 3261 §8.2.6): Vias, From, To (+tag), Call-ID, CSeq."""
    h = Headers()
    for v in request.headers.get_all("Via"):
        h.add("Via", v)
    h.add("From", request.headers.get("From") or "")
    to = request.headers.get("To") or ""
    if to_tag is not None and status != 100 and request.to.tag is None:
        to = str(request.to.with_tag(to_tag))
    h.add("To", to)
    h.add("Call-ID", request.call_id)
    h.add("CSeq", request.headers.get("CSeq") or "")
    return SipResponse(headers=h, status=status, reason=reason or reason_phrase(status))
