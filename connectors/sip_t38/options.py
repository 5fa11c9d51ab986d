"""The options of a ``sip_t38`` connector: defaults, validation, errors that name the key."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from fax.t38.endpoint import parse_port_range
from fax.t38.sip.config import split_hostport
from fax.t38.sip.errors import SipParseError
from fax.t38.sip.uri import SipUri
from gateway.errors import ConfigError


@dataclass(frozen=True, slots=True)
class SipT38Options:
    """Validated options.

    ``proxy``: SIP URI outbound calls go to (``;transport=udp|tcp|tls``); ``listen``:
    host:port for inbound INVITEs (UDP and TCP; TLS with ``tls_cert``/``tls_key``);
    ``username``/``password``: digest credentials; ``register``: REGISTER and refresh;
    ``max_calls``: the trunk's lines (both directions); ``station_id``: TSI/CSI (default:
    the sender's number); ``header``: the line atop each sent page; ``ecm``; ``t38_only``:
    never fall back to G.711; ``media_ports`` (``40000-40999``) and ``media_ip``;
    ``region``: how national numbers are read. Retry schedule (HylaFAX's defaults):
    ``retry_busy`` 180 s, ``retry_no_answer`` 300 s, ``retry_protocol`` 60 s,
    ``max_tries`` 3 (answered calls that failed), ``max_dials`` 12, ``max_age`` 3 h;
    ``ring_timeout`` (s) before an unanswered call counts as no answer; ``line_wait`` (s) a
    send waits for a free line or for the destination's earlier fax.
    """

    proxy: str | None = None
    listen: str = "127.0.0.1:5060"
    username: str | None = None
    password: str | None = None
    register: bool = False
    max_calls: int = 2
    station_id: str | None = None
    header: str = ""
    ecm: bool = True
    t38_only: bool = False
    media_ports: str | None = None
    media_ip: str = "127.0.0.1"
    tls_cert: str | None = None
    tls_key: str | None = None
    region: str = "DE"
    retry_busy: float = 180.0
    retry_no_answer: float = 300.0
    retry_protocol: float = 60.0
    max_tries: int = 3
    max_dials: int = 12
    max_age: float = 3 * 3600.0
    ring_timeout: float = 60.0
    line_wait: float = 60.0


_STR = {"proxy", "listen", "username", "password", "station_id", "header", "media_ports",
        "media_ip", "tls_cert", "tls_key", "region"}  # fmt: skip
_BOOL = {"register", "ecm", "t38_only"}
_INT = {"max_calls", "max_tries", "max_dials"}
_FLOAT = {"retry_busy", "retry_no_answer", "retry_protocol", "max_age", "ring_timeout",
          "line_wait"}  # fmt: skip
_KNOWN = {f.name for f in fields(SipT38Options)}


def parse_options(connector_id: str, raw: dict[str, Any]) -> SipT38Options:
    """Check ``raw`` (the connector table's own keys) and fill in defaults."""

    def fail(key: str, why: str) -> ConfigError:
        return ConfigError(f"connectors[{connector_id}].{key}: {why}")

    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise fail(unknown[0], f"unknown option (known: {', '.join(sorted(_KNOWN))})")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _STR and not isinstance(value, str):
            raise fail(key, f"expected a string, got {value!r}")
        if key in _BOOL and not isinstance(value, bool):
            raise fail(key, f"expected true or false, got {value!r}")
        if key in _INT:
            if isinstance(value, bool) or not isinstance(value, int):
                raise fail(key, f"expected an integer, got {value!r}")
            if value < 1:
                raise fail(key, "must be at least 1")
        if key in _FLOAT:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise fail(key, f"expected a number of seconds, got {value!r}")
            if value <= 0:
                raise fail(key, "must be greater than 0")
            value = float(value)
        values[key] = value
    opts = SipT38Options(**values)
    if opts.proxy is not None:
        try:
            uri = SipUri.parse(opts.proxy)
        except (SipParseError, ValueError) as exc:
            raise fail("proxy", f"not a SIP URI ({exc}), e.g. sip:127.0.0.1:5070") from None
        if uri.params.get("transport", "udp") not in ("udp", "tcp", "tls"):
            raise fail("proxy", "transport must be udp, tcp or tls")
    try:
        split_hostport(opts.listen)
    except ValueError as exc:
        raise fail("listen", f"expected host:port ({exc})") from None
    if opts.media_ports is not None:
        try:
            parse_port_range(opts.media_ports)
        except ValueError as exc:
            raise fail("media_ports", str(exc)) from None
    if opts.register and (opts.proxy is None or opts.username is None):
        raise fail("register", "needs proxy and username")
    if (opts.username is None) != (opts.password is None):
        raise fail("password" if opts.username else "username", "username and password go together")
    if (opts.tls_cert is None) != (opts.tls_key is None):
        raise fail("tls_key" if opts.tls_cert else "tls_cert", "tls_cert and tls_key go together")
    if opts.station_id is not None and (len(opts.station_id) > 20 or not opts.station_id.isascii()):
        raise fail("station_id", "at most 20 ASCII characters")
    if len(opts.header) > 50 or not opts.header.isascii():
        raise fail("header", "at most 50 ASCII characters")
    return opts
