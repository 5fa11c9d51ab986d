"""The SIP user agent: transports, transactions, calls, OPTIONS and REGISTER in one object.

    ua = UserAgent(UserAgentConfig(proxy="sip:127.0.0.1:5070", listen="127.0.0.1:0"),
                   on_incoming=decide)
    await ua.start()
    call = await ua.call("+4930123456", handler)   # INVITE sent
    media = await call.wait_answered()              # raises CallFailed
    await call.reinvite_to_t38()
    outcome = await call.wait_ended()
    await ua.aclose()
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

from fax.t38.sdp import MediaKind
from fax.t38.sip.auth import DigestAuth
from fax.t38.sip.call import Call
from fax.t38.sip.config import UserAgentConfig, split_hostport
from fax.t38.sip.dialog import new_call_id, new_tag
from fax.t38.sip.errors import SipError, SipParseError
from fax.t38.sip.host import CallRef
from fax.t38.sip.incoming import IncomingHandler
from fax.t38.sip.media import MediaHandler
from fax.t38.sip.message import SipRequest, SipResponse, make_response
from fax.t38.sip.outcome import CallOutcome, EndCause
from fax.t38.sip.register import Registration
from fax.t38.sip.timers import LoopTimers, Timers
from fax.t38.sip.transaction import (
    ClientEvent,
    ClientTransaction,
    ServerTransaction,
    TransactionLayer,
    new_branch,
)
from fax.t38.sip.transport import Received, Target, TransportLayer
from fax.t38.sip.uri import Address, SipUri

log = logging.getLogger(__name__)
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO"
SUPPORTED = "timer"
_KNOWN_OPTIONS = frozenset({"timer"})


class UserAgent:
    """A SIP user agent for fax calls on one trunk."""

    def __init__(
        self,
        config: UserAgentConfig,
        *,
        on_incoming: IncomingHandler | None = None,
        timers: Timers | None = None,
        tls_client: ssl.SSLContext | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.on_incoming = on_incoming
        self.timers: Timers = timers or LoopTimers()
        self.values = config.timer_values
        self.rng = rng or random.Random()
        self.auth = (
            DigestAuth(config.username, config.password or "")
            if config.username is not None
            else None
        )
        self.transports = TransportLayer(
            self._receive,
            tls_server=self._server_context(),
            tls_client=tls_client or self._client_context(),
        )
        self.transactions = TransactionLayer(
            self.transports, self.timers, self._on_request, self._on_stray_response,
            self.values,
        )
        self.host = ""
        self._calls: dict[tuple[str, str], Call] = {}
        self._invites: dict[ServerTransaction, CallRef] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self.registration: Registration | None = None
        self._started = False

    # --- life cycle -------------------------------------------------------------------

    def _server_context(self) -> ssl.SSLContext | None:
        c = self.config
        if c.tls_cert is None or c.tls_key is None:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(c.tls_cert, c.tls_key)
        return ctx

    def _client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.config.tls_ca)
        if not self.config.tls_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    async def start(self) -> None:
        """Listen (UDP, TCP, and TLS when configured) and register when asked to."""
        host, port = split_hostport(self.config.listen)
        bound = await self.transports.listen_udp_tcp(host, port)
        if self.transports.tls_server is not None:
            tls_host, tls_port = (
                split_hostport(self.config.tls_listen) if self.config.tls_listen
                else (host, bound + 1 if port else 0)
            )
            await self.transports.listen("tls", tls_host, tls_port)
        self.host = self._advertised_host(host)
        self._started = True
        if self.config.register:
            self.registration = Registration(self)
            await self.registration.start()

    def _advertised_host(self, listen_host: str) -> str:
        if self.config.contact_host:
            return self.config.contact_host
        if listen_host not in ("0.0.0.0", "::", ""):
            return listen_host
        proxy = self.config.proxy_uri
        if proxy is None:
            return "127.0.0.1"
        # The address the kernel would send from toward the proxy (no packet is sent).
        family = socket.AF_INET6 if ":" in proxy.bare_host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((proxy.bare_host, proxy.effective_port))
            return str(s.getsockname()[0])

    async def aclose(self) -> None:
        """Hang up every call, unregister, close the sockets."""
        for call in list(self._calls.values()):
            try:
                await asyncio.wait_for(call.hangup(), 5)
            except (SipError, TimeoutError):
                await call.finish(CallOutcome(EndCause.FAILED, 503, "user agent closed",
                                              answered=call.answered))
        if self.registration is not None:
            await self.registration.stop()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.transports.aclose()

    async def __aenter__(self) -> UserAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def listen_address(self, transport: str = "udp") -> tuple[str, int]:
        """Where we listen on ``transport``."""
        return self.transports.addresses[transport]

    @property
    def calls(self) -> list[Call]:
        """Calls not yet ended."""
        return list(self._calls.values())

    # --- building blocks for calls and registration -----------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` in a task the UA keeps (and cancels on close); errors are logged."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("SIP task failed", exc_info=t.exception())

        task.add_done_callback(done)
        return task

    def target_for(self, uri: SipUri, transport: str | None = None) -> Target:
        """The transport address a URI points to (``transport`` when the URI names none)."""
        t = uri.transport if ("transport" in uri.params or uri.scheme == "sips") else (
            transport or "udp")
        port = uri.port if uri.port is not None else (5061 if t == "tls" else 5060)
        return Target(t, uri.bare_host, port)

    def proxy_target(self) -> Target:
        """The proxy's address."""
        uri = self.config.proxy_uri
        if uri is None:
            raise SipError("no proxy configured: this UA only receives calls")
        return self.target_for(uri)

    def local_uri(self, user: str | None = None) -> Address:
        """Our From address (without tag); ``user`` overrides the configured from_user."""
        domain = SipUri.parse(f"sip:{self.config.domain_part}")
        return Address(domain.with_(user=user or self.config.from_user), self.config.display_name)

    def remote_uri(self, number: str) -> SipUri:
        """The Request-URI / To for dialling ``number`` through the proxy."""
        return SipUri.parse(f"sip:{self.config.domain_part}").with_(user=number)

    def via(self, transport: str) -> str:
        """A top Via value with a fresh branch."""
        port = self._local_port(transport)
        return f"SIP/2.0/{transport.upper()} {self._host_text()}:{port};branch={new_branch()};rport"

    def contact(self, transport: str, user: str | None = None) -> str:
        """Our Contact for ``transport``."""
        port = self._local_port(transport)
        param = "" if transport == "udp" else f";transport={transport}"
        return f"<sip:{user or self.config.from_user}@{self._host_text()}:{port}{param}>"

    def _host_text(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def contact_port(self, transport: str) -> int:
        """The port our Via and Contact name for ``transport``."""
        return self._local_port(transport)

    def _local_port(self, transport: str) -> int:
        addr = self.transports.addresses.get(transport) or self.transports.addresses["tcp"]
        return addr[1]

    def prepare(self, request: SipRequest, transport: str) -> SipRequest:
        """Put a fresh top Via and the User-Agent on a request we are about to send."""
        request.headers.remove("Via")
        items = list(request.headers)
        request.headers = type(request.headers)([("Via", self.via(transport)), *items])
        request.headers.set("User-Agent", self.config.user_agent)
        return request

    async def start_transaction(
        self, request: SipRequest, target: Target, on_event: Callable[[ClientEvent], None]
    ) -> ClientTransaction:
        """Connect if needed and start a client transaction."""
        await self.transports.connect(target)
        return self.transactions.send_request(request, target, on_event)

    async def transact(self, request: SipRequest, target: Target) -> SipResponse:
        """One non-INVITE transaction: its final response (or TransactionTimeout/TransportError)."""
        fut: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()

        def on_event(ev: ClientEvent) -> None:
            if fut.done():
                return
            if isinstance(ev, SipError):
                fut.set_exception(ev)
            elif ev.status >= 200:
                fut.set_result(ev)

        await self.start_transaction(request, target, on_event)
        return await fut

    async def request_with_auth(
        self, build: Callable[[], SipRequest], target: Target
    ) -> SipResponse:
        """Send what ``build`` makes; answer 401/407 challenges (a new request each time)."""
        tries = 0
        while True:
            req = build()
            if self.auth is not None:
                self.auth.authorize(req)
            resp = await self.transact(req, target)
            if (resp.status in (401, 407) and self.auth is not None and tries < 2
                    and self.auth.learn(resp)):
                tries += 1
                continue
            return resp

    async def ping(self, uri: str | None = None) -> SipResponse:
        """OPTIONS to the proxy (or ``uri``): a health check of the trunk."""
        target_uri = SipUri.parse(uri) if uri else self.config.proxy_uri
        if target_uri is None:
            raise SipError("no proxy configured")
        target = self.target_for(target_uri)
        call_id = new_call_id(self.host)
        tag = new_tag()
        cseq = iter(range(1, 10))

        def build() -> SipRequest:
            assert target_uri is not None
            req = SipRequest(method="OPTIONS", uri=target_uri)
            h = req.headers
            h.add("Max-Forwards", "70")
            h.add("From", str(self.local_uri().with_tag(tag)))
            h.add("To", f"<{target_uri}>")
            h.add("Call-ID", call_id)
            h.add("CSeq", f"{next(cseq)} OPTIONS")
            h.add("Contact", self.contact(target.transport))
            h.add("Accept", "application/sdp")
            return self.prepare(req, target.transport)

        return await self.request_with_auth(build, target)

    def register_call(self, call: Call) -> None:
        """Index a call by Call-ID and our tag."""
        self._calls[(call.call_id, call.local_tag)] = call

    def forget_call(self, call: CallRef) -> None:
        """Drop an ended call."""
        if self._calls.get((call.call_id, call.local_tag)) is call:
            del self._calls[(call.call_id, call.local_tag)]
        for st, c in list(self._invites.items()):
            if c is call:
                del self._invites[st]

    def watch_invite(self, st: ServerTransaction, call: CallRef) -> None:
        """Remember which call an INVITE server transaction belongs to (for CANCEL)."""
        self._invites[st] = call

        def gone(tx: ServerTransaction) -> None:
            self._invites.pop(tx, None)

        st.on_terminated = gone

    # --- outbound calls ---------------------------------------------------------------

    async def call(
        self,
        to_number: str,
        handler: MediaHandler,
        *,
        media: MediaKind = MediaKind.AUDIO,
        ring_timeout: float | None = None,
        from_user: str | None = None,
    ) -> Call:
        """Dial ``to_number`` through the proxy; returns once the INVITE is on its way.

        ``media`` is what the first offer holds (IMAGE: T.38 at once); ``from_user`` is the
        caller's number in From (default: the configured from_user).

        The call's fate: ``await call.wait_answered()`` (the agreed media, or `CallFailed`)
        and ``await call.wait_ended()`` (its `CallOutcome`).
        """
        if not self._started:
            raise SipError("the user agent is not started")
        target = self.proxy_target()
        call = Call.outbound_call(self, handler, self.remote_uri(to_number), target)
        call.local_user = from_user
        self.register_call(call)
        await call.dial(media, ring_timeout if ring_timeout is not None
                        else self.config.ring_timeout)
        return call

    # --- incoming messages ------------------------------------------------------------

    def _receive(self, received: Received) -> None:
        try:
            self.transactions.receive(received)
        except SipParseError as exc:
            # Parsed, but a header the matching needs (Via, CSeq) is broken.
            log.info("dropping message from %s: %s", received.source, exc)

    def _on_stray_response(self, resp: SipResponse, received: Received) -> None:
        if resp.cseq[1] != "INVITE" or not 200 <= resp.status < 300:
            return
        call = self._calls.get((resp.call_id, resp.from_.tag or ""))
        if call is not None:
            call.on_stray_2xx(resp)

    def _on_request(
        self, req: SipRequest, st: ServerTransaction | None, received: Received
    ) -> None:
        try:
            self._dispatch(req, st, received)
        except SipParseError as exc:
            if st is not None:
                st.respond(make_response(req, 400, " ".join(str(exc).split())[:80]))

    def _dispatch(
        self, req: SipRequest, st: ServerTransaction | None, received: Received
    ) -> None:
        to_tag = req.to.tag
        if req.method == "ACK":
            call = self._calls.get((req.call_id, to_tag or ""))
            if call is not None:
                call.on_ack(req)
            return
        assert st is not None
        if req.method == "CANCEL":
            invite = self.transactions.find_invite(req)
            if invite is None:
                st.respond(make_response(req, 481))
                return
            st.respond(make_response(req, 200))
            target_call = self._invites.get(invite)
            if target_call is not None:
                target_call.on_cancel(invite)
            return
        unsupported = req.headers.tokens("Require") - _KNOWN_OPTIONS
        if unsupported and req.method not in ("ACK", "CANCEL"):
            resp = make_response(req, 420)
            resp.headers.add("Unsupported", ", ".join(sorted(unsupported)))
            st.respond(resp)
            return
        if to_tag is not None:
            call = self._calls.get((req.call_id, to_tag))
            if call is None:
                st.respond(make_response(req, 481))
            else:
                call.on_request(req, st, received)
            return
        if req.method == "INVITE":
            self._incoming_invite(req, st, received)
        elif req.method == "OPTIONS":
            st.respond(self.options_response(req))
        elif req.method in ("BYE", "UPDATE", "INFO", "PRACK"):
            st.respond(make_response(req, 481))
        elif req.method in ("REGISTER", "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH"):
            resp = make_response(req, 405)
            resp.headers.add("Allow", ALLOW)
            st.respond(resp)
        else:
            st.respond(make_response(req, 501))

    def options_response(self, req: SipRequest) -> SipResponse:
        """200 to OPTIONS with what we allow, support and accept."""
        resp = make_response(req, 200, to_tag=new_tag())
        resp.headers.add("Allow", ALLOW)
        resp.headers.add("Accept", "application/sdp")
        resp.headers.add("Supported", SUPPORTED)
        resp.headers.add("User-Agent", self.config.user_agent)
        return resp

    def _incoming_invite(
        self, req: SipRequest, st: ServerTransaction, received: Received
    ) -> None:
        from_tag = req.from_.tag
        for call in self._calls.values():
            if (call.call_id == req.call_id and call.remote_tag == from_tag
                    and call.initial_cseq == req.cseq[0]):
                st.respond(make_response(req, 482))  # the same INVITE by another path
                return
        st.respond(make_response(req, 100))
        if len(self._calls) >= self.config.max_calls:
            st.respond(make_response(req, 486, "Busy Here (all lines in use)",
                                     to_tag=new_tag()))
            return
        if self.on_incoming is None:
            st.respond(make_response(req, 480, to_tag=new_tag()))
            return
        call = Call.inbound_call(self, req, st, received)
        self.register_call(call)
        self.watch_invite(st, call)
        call.answer_with(self.on_incoming)

