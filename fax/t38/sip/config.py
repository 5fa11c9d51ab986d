"""The user agent's settings (the ``sip_t38`` connector fills them from its options)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fax.t38.sip.session_timer import SessionTimerSettings
from fax.t38.sip.timers import TimerValues
from fax.t38.sip.uri import SipUri


def split_hostport(text: str, default_port: int = 5060) -> tuple[str, int]:
    """``host:port`` / ``[v6]:port`` / ``host`` as host and port."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, ""
    if not host:
        raise ValueError(f"no host in {text!r}")
    if port and (not port.isdigit() or int(port) > 65535):
        raise ValueError(f"bad port in {text!r}")
    return host, int(port) if port else default_port


@dataclass(frozen=True)
class UserAgentConfig:
    """How the UA reaches its trunk and how it behaves.

    ``proxy``: the SIP URI outbound requests go to, e.g. ``sip:127.0.0.1:5070;transport=tcp``
    (None: the UA only receives calls). ``listen``: host:port for UDP and TCP (port 0 picks
    a free one). TLS listens on ``tls_listen`` (default: the listen port + 1) when
    ``tls_cert``/``tls_key`` are given; ``tls_ca`` verifies the proxy's certificate.
    ``register``: REGISTER and refresh (off for IP-authenticated trunks).
    """

    proxy: str | None = None
    listen: str = "127.0.0.1:5060"
    username: str | None = None
    password: str | None = None
    register: bool = False
    register_expires: int = 3600
    from_user: str = "fax"
    display_name: str | None = None
    domain: str | None = None
    contact_host: str | None = None
    max_calls: int = 2
    ring_timeout: float = 60.0
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_listen: str | None = None
    tls_ca: str | None = None
    tls_verify: bool = True
    session_timers: SessionTimerSettings = field(default_factory=SessionTimerSettings)
    timer_values: TimerValues = field(default_factory=TimerValues)
    user_agent: str = "messaging-gateway-fax/0.1"

    def __post_init__(self) -> None:
        if self.proxy is not None:
            SipUri.parse(self.proxy)  # raises on a malformed URI
        split_hostport(self.listen)
        if self.register and (self.proxy is None or self.username is None):
            raise ValueError("register needs proxy and username")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        if self.max_calls < 1:
            raise ValueError("max_calls must be at least 1")

    @property
    def proxy_uri(self) -> SipUri | None:
        """The parsed proxy URI."""
        return SipUri.parse(self.proxy) if self.proxy is not None else None

    @property
    def domain_part(self) -> str:
        """The host[:port] our URIs (From, To, Request-URI) carry."""
        if self.domain:
            return self.domain
        uri = self.proxy_uri
        if uri is None:
            return self.contact_host or split_hostport(self.listen)[0]
        return f"{uri.host}:{uri.port}" if uri.port else uri.host
