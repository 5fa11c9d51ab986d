"""The ``sip_t38`` connector (channel ``fax``): the gateway as a SIP user agent on the
provider's trunk, sending and receiving faxes over T.38 with a G.711 fallback.

Options: see ``connectors.sip_t38.options.SipT38Options``. A send holds its call for the
whole fax (the worker renews the job's lease meanwhile); retries follow
``connectors.sip_t38.outcomes``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from connectors.base import (
    AuthError,
    ConnectorContext,
    Health,
    NotReadyError,
    OutboundMessage,
    SendResult,
    register,
)
from connectors.sip_t38.options import SipT38Options, parse_options
from connectors.sip_t38.receiving import Receiver
from connectors.sip_t38.sending import Sender
from fax.t38.sip.config import UserAgentConfig
from fax.t38.sip.errors import RequestFailed, SipError
from fax.t38.sip.ua import UserAgent
from fax.t38.ticker import Ticker
from gateway.config import ConnectorConfig

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from gateway.models import JobHandler

log = logging.getLogger("connectors.sip_t38")


class SipT38Connector:
    """Fax over SIP: T.38 (UDPTL) or G.711, T.30 by spandsp."""

    kind = "sip_t38"

    def __init__(self, config: ConnectorConfig, context: ConnectorContext, *,
                 ticker: Ticker | None = None) -> None:
        self.id = config.id
        self.channels = frozenset({"fax"})
        self.numbers = config.numbers
        self.context = context
        self.options: SipT38Options = parse_options(config.id, dict(config.options))
        opts = self.options
        self.ticker = ticker
        self.receiver = Receiver(config.id, opts, context, ticker)
        self.ua = self._user_agent()
        self.sender = Sender(self.ua, opts, context, ticker, lambda: len(self.ua.calls))
        self.receiver.on_line_free = self.sender.release  # a send may wait for that line
        self._started = False
        self._error: str | None = None
        self._auth_failed = False

    def _user_agent(self) -> UserAgent:
        opts = self.options
        return UserAgent(UserAgentConfig(
            proxy=opts.proxy, listen=opts.listen, username=opts.username,
            password=opts.password, register=opts.register, max_calls=opts.max_calls,
            tls_cert=opts.tls_cert, tls_key=opts.tls_key, ring_timeout=opts.ring_timeout,
            from_user=opts.username or "fax",
        ), on_incoming=self.receiver)

    async def start(self) -> None:
        """Listen for INVITEs (and REGISTER when configured); a trunk that refuses our
        credentials is an ``AuthError``, anything else ``NotReadyError`` (retried)."""
        if self._started:
            return
        try:
            await self.ua.start()
        except (OSError, SipError) as exc:
            self._error = str(exc)
            # The gateway calls start() again: a fresh user agent, the sockets freed.
            await self.ua.aclose()
            self.ua = self.sender.ua = self._user_agent()
            refused = exc.status if isinstance(exc, RequestFailed) else None
            self._auth_failed = refused in (401, 403, 407)
            if self._auth_failed:
                raise AuthError(f"the trunk refused our registration: {exc}",
                                carrier_code=f"sip:{refused}") from exc
            raise NotReadyError(f"SIP user agent cannot start: {exc}") from exc
        self._started = True
        self._error = None

    async def send(self, message: OutboundMessage) -> SendResult:
        """Fax the message's TIFF to ``message.to``."""
        return await self.sender.send(message)

    def routes(self) -> Sequence[BaseRoute]:
        """No webhooks: the carrier talks SIP."""
        return ()

    def health(self) -> Health:
        """Healthy once the UA listens (and registered, when it registers)."""
        if not self._started:
            # Refused credentials wait for an operator (no retry hint).
            return Health(False, self._error or "not started",
                          retry_after=None if self._auth_failed else 5.0)
        reg = self.ua.registration
        if reg is not None and not reg.registered:
            return Health(False, "not registered", retry_after=30.0)
        return Health(True)

    def job_handlers(self) -> Mapping[str, JobHandler]:
        """No job kinds of its own: sends run in the core's ``send`` job."""
        return {}

    def listen_address(self) -> tuple[str, int]:
        """Where the UA listens (UDP)."""
        return self.ua.listen_address("udp")

    async def aclose(self) -> None:
        """Hang up, unregister, close."""
        await self.receiver.aclose()
        if self._started:
            await self.ua.aclose()
        self._started = False


register("sip_t38", SipT38Connector)
