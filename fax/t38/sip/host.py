"""What a call and a registration need from their user agent, as protocols.

`Call` (call.py), the INVITE runners (invite.py) and `Registration` (register.py) are
typed against `SipHost`, not against `UserAgent`, so the user agent can import them
without a circle.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from fax.t38.sip.auth import DigestAuth
from fax.t38.sip.config import UserAgentConfig
from fax.t38.sip.message import SipRequest, SipResponse
from fax.t38.sip.timers import Timers, TimerValues
from fax.t38.sip.transaction import ClientEvent, ClientTransaction, ServerTransaction
from fax.t38.sip.transport import Target, TransportLayer
from fax.t38.sip.uri import Address, SipUri


class CallRef(Protocol):
    """How the user agent indexes a call and hands it a CANCEL."""

    @property
    def call_id(self) -> str:
        """The Call-ID."""
        ...

    @property
    def local_tag(self) -> str:
        """Our tag."""
        ...

    def on_cancel(self, invite: ServerTransaction) -> None:
        """The caller cancelled an INVITE of this call."""
        ...


class SipHost(Protocol):
    """The user agent's services: sockets, transactions, credentials, clocks, addresses."""

    config: UserAgentConfig
    timers: Timers
    values: TimerValues
    rng: random.Random
    auth: DigestAuth | None
    transports: TransportLayer
    host: str

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run a coroutine in a task the user agent keeps."""
        ...

    def target_for(self, uri: SipUri, transport: str | None = None) -> Target:
        """Where a URI points to."""
        ...

    def proxy_target(self) -> Target:
        """The proxy's address."""
        ...

    def local_uri(self, user: str | None = None) -> Address:
        """Our From address."""
        ...

    def contact(self, transport: str, user: str | None = None) -> str:
        """Our Contact."""
        ...

    def contact_port(self, transport: str) -> int:
        """The port of our Via and Contact."""
        ...

    def prepare(self, request: SipRequest, transport: str) -> SipRequest:
        """A fresh top Via and the User-Agent."""
        ...

    async def start_transaction(
        self, request: SipRequest, target: Target, on_event: Callable[[ClientEvent], None]
    ) -> ClientTransaction:
        """Connect if needed and start a client transaction."""
        ...

    async def transact(self, request: SipRequest, target: Target) -> SipResponse:
        """One non-INVITE transaction to its final response."""
        ...

    async def request_with_auth(
        self, build: Callable[[], SipRequest], target: Target
    ) -> SipResponse:
        """A request, resent with credentials on 401/407."""
        ...

    def watch_invite(self, st: ServerTransaction, call: CallRef) -> None:
        """Route a CANCEL of ``st`` to ``call``."""
        ...

    def forget_call(self, call: CallRef) -> None:
        """Drop an ended call."""
        ...
