"""The initial INVITE of a call, as caller (`InviteClient`) and as callee (`InviteServer`).

The client sends the INVITE through the proxy, answers 401/407 and 422 with a new INVITE,
follows 1xx (early dialog, ringing), CANCELs on request or after the ring timeout — never
before a provisional response (§9.1) — and on 2xx ACKs and hands the answer to the media
handler. The server asks the application (`IncomingHandler`), rings, answers or rejects,
and retransmits its 2xx until the ACK (`Pending2xx`, §13.3.1.4).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from fax.t38.sdp import MediaKind, Negotiated, SessionDescription
from fax.t38.sip.control import CallControl
from fax.t38.sip.dialog import Dialog
from fax.t38.sip.errors import SdpError, SipError, SipParseError, TransactionTimeout, TransportError
from fax.t38.sip.host import SipHost
from fax.t38.sip.incoming import Answer, IncomingCall, IncomingHandler, Reject
from fax.t38.sip.media import MediaHandler
from fax.t38.sip.message import SipRequest, SipResponse, make_response
from fax.t38.sip.outcome import CallOutcome, EndCause
from fax.t38.sip.session_timer import SessionTimer, session_expires
from fax.t38.sip.timers import TimerHandle, sleep
from fax.t38.sip.transaction import ClientTransaction, ServerTransaction
from fax.t38.sip.transport import Target
from fax.t38.sip.uri import SipUri

log = logging.getLogger(__name__)


class InviteCall(CallControl, Protocol):
    """What the INVITE runners use of their call (`fax.t38.sip.call.Call` implements it)."""

    ua: SipHost
    handler: MediaHandler | None
    target: Target
    remote_uri: SipUri | None
    local_user: str | None
    initial_cseq: int
    dialog: Dialog | None
    remote_tag: str | None
    peer_allow: set[str]
    timer: SessionTimer

    @property
    def local_tag(self) -> str:
        """Our tag."""
        ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run a task of the call."""
        ...

    async def finish(self, outcome: CallOutcome) -> None:
        """The call is over."""
        ...

    async def terminate(self, outcome: CallOutcome, *, bye: bool = True) -> None:
        """BYE, then over."""
        ...

    async def invite_transaction(
        self,
        req: SipRequest,
        target: Target,
        on_provisional: Callable[[SipResponse], None] | None = None,
        on_started: Callable[[ClientTransaction], None] | None = None,
    ) -> SipResponse:
        """An INVITE client transaction to its final response."""
        ...

    def offer_headers(self, req: SipRequest, transport: str, interval: int | None) -> None:
        """The headers of a request carrying an offer."""
        ...

    async def send_ack(self, req: SipRequest, resp: SipResponse,
                       body: SessionDescription | None = None) -> None:
        """ACK a 2xx."""
        ...

    def ringing(self) -> None:
        """A 180/183 went out or came in."""
        ...

    async def established(self, local: SessionDescription | None,
                          remote: SessionDescription | None, neg: Negotiated | None) -> None:
        """The call is up."""
        ...

    def ok_response(self, req: SipRequest, body: SessionDescription | None) -> SipResponse:
        """Our 2xx to an INVITE."""
        ...

    def track_2xx(self, resp: SipResponse, target: Target, cseq: int, *,
                  awaiting_answer: bool) -> None:
        """Retransmit a 2xx until its ACK."""
        ...

    def on_no_ack(self, cseq: int) -> None:
        """No ACK came for a 2xx."""
        ...


def same_version(a: SessionDescription | None, b: SessionDescription | None) -> bool:
    """Both SDPs carry the same o= line: the same session at the same version."""
    if a is None or b is None:
        return False
    oa, ob = a.origin, b.origin
    return (oa.username, oa.session_id, oa.version, oa.address) == (
        ob.username, ob.session_id, ob.version, ob.address)


def sdp_of(msg: SipRequest | SipResponse) -> SessionDescription | None:
    """The message's SDP body, None without a body; `SdpError` for another body or bad SDP."""
    if not msg.body:
        return None
    if msg.content_type not in ("application/sdp", ""):
        raise SdpError(f"unsupported body type {msg.content_type}")
    return SessionDescription.parse(msg.body)


def one_line(exc: Exception) -> str:
    """An error as a short reason phrase."""
    return " ".join(str(exc).split())[:80]


class Pending2xx:
    """A 2xx we sent to an INVITE: retransmitted over UDP until its ACK (§13.3.1.4)."""

    def __init__(self, call: InviteCall, resp: SipResponse, target: Target, cseq: int,
                 awaiting_answer: bool) -> None:
        self.call = call
        self.resp = resp
        self.target = target
        self.cseq = cseq
        self.awaiting_answer = awaiting_answer
        values = call.ua.values
        self._interval = values.t1
        self._handles: list[TimerHandle] = []
        timers = call.ua.timers
        if not target.reliable:
            self._handles.append(timers.call_later(self._interval, self._again))
        self._handles.append(timers.call_later(values.b, self._give_up))

    def _again(self) -> None:
        try:
            self.call.ua.transports.send(self.resp, self.target)
        except TransportError as exc:
            log.info("2xx retransmission failed: %s", exc)
        self._interval = min(2 * self._interval, self.call.ua.values.t2)
        self._handles.append(self.call.ua.timers.call_later(self._interval, self._again))

    def _give_up(self) -> None:
        self.stop()
        self.call.on_no_ack(self.cseq)

    def stop(self) -> None:
        """ACK arrived (or the call ended)."""
        for h in self._handles:
            h.cancel()
        self._handles.clear()


class InviteClient:
    """Our INVITE that opens an outbound call."""

    def __init__(self, call: InviteCall, kind: MediaKind, ring_timeout: float) -> None:
        self.call = call
        self.kind = kind
        self.ring_timeout = ring_timeout
        self.request: SipRequest | None = None
        self.transaction: ClientTransaction | None = None
        self.cseq = 0
        self.cancel_cause: EndCause | None = None
        self._cancel_sent = False
        self._early_sdp: SessionDescription | None = None
        self._ring_timer: TimerHandle | None = None
        self._sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def start(self) -> None:
        """Send the INVITE; returns once it is on its way (or the call already failed)."""
        self.call.spawn(self._run())
        await asyncio.shield(self._sent)

    def mark_sent(self) -> None:
        """The INVITE left (or never will): `start` may return."""
        if not self._sent.done():
            self._sent.set_result(None)

    def stop_ringing(self) -> None:
        """Cancel the ring timer."""
        if self._ring_timer is not None:
            self._ring_timer.cancel()

    async def _run(self) -> None:
        call = self.call
        assert call.handler is not None
        try:
            offer = await call.handler.offer(self.kind)
        except SdpError as exc:
            await call.finish(CallOutcome(EndCause.FAILED, 500, f"no local offer: {exc}"))
            return
        interval = call.timer.interval()
        self._ring_timer = call.ua.timers.call_later(
            self.ring_timeout, lambda: self.cancel(EndCause.NO_ANSWER))
        tries = 0
        while True:
            req = self._build(offer, interval)
            try:
                resp = await call.invite_transaction(req, call.target, self._on_provisional,
                                                     on_started=self._started)
            except TransactionTimeout:
                await call.finish(self._cancelled(408, "no response")
                                  or CallOutcome(EndCause.NO_ANSWER, 408, "no response"))
                return
            except TransportError as exc:
                await call.finish(CallOutcome(EndCause.TRANSPORT_ERROR, 503, one_line(exc)))
                return
            if self.cancel_cause is None and tries < 3:
                auth = call.ua.auth
                if resp.status in (401, 407) and auth is not None and auth.learn(resp):
                    tries += 1
                    continue
                floor = call.timer.raised_floor(resp, interval) if resp.status == 422 else None
                if floor is not None:
                    interval = floor
                    tries += 1
                    continue
            break
        self.stop_ringing()
        if 200 <= resp.status < 300:
            await self._confirmed(req, resp, offer)
        else:
            await call.finish(self._cancelled(resp.status, resp.reason)
                              or CallOutcome.from_status(resp.status, resp.reason))

    def _started(self, tx: ClientTransaction) -> None:
        self.transaction = tx
        self.mark_sent()

    def _cancelled(self, status: int, reason: str) -> CallOutcome | None:
        if self.cancel_cause is None:
            return None
        return CallOutcome(self.cancel_cause, status, reason)

    def _build(self, offer: SessionDescription, interval: int) -> SipRequest:
        call = self.call
        ua = call.ua
        assert call.remote_uri is not None
        self.cseq += 1
        call.initial_cseq = self.cseq
        req = SipRequest(method="INVITE", uri=call.remote_uri)
        h = req.headers
        h.add("Max-Forwards", "70")
        h.add("From", str(ua.local_uri(call.local_user).with_tag(call.local_tag)))
        h.add("To", f"<{call.remote_uri}>")
        h.add("Call-ID", call.call_id)
        h.add("CSeq", f"{self.cseq} INVITE")
        call.offer_headers(req, call.target.transport, interval)
        req.body = offer.encode()
        ua.prepare(req, call.target.transport)
        if ua.auth is not None:
            ua.auth.authorize(req)
        self.request = req
        return req

    def _on_provisional(self, resp: SipResponse) -> None:
        call = self.call
        if resp.status == 100:
            return
        if resp.to.tag and self.request is not None and call.dialog is None:
            target = call.target
            call.dialog = Dialog.as_uac(self.request, resp, target.transport,
                                        target if target.reliable else None)
        if resp.status in (180, 183):
            call.ringing()
        if resp.body:
            try:
                self._early_sdp = sdp_of(resp)
            except SdpError as exc:
                log.info("ignoring bad early SDP: %s", exc)
        if self.cancel_cause is not None and not self._cancel_sent:
            call.spawn(self._send_cancel())

    def cancel(self, cause: EndCause) -> None:
        """Give up the call before it is answered: CANCEL (after a provisional response)."""
        if self.cancel_cause is not None or self.call.answered or self.call.outcome:
            return
        self.cancel_cause = cause
        if self.transaction is not None and self.transaction.got_provisional:
            self.call.spawn(self._send_cancel())
        # else: no CANCEL before a provisional response (§9.1); _on_provisional sends it

    async def _send_cancel(self) -> None:
        if self._cancel_sent or self.request is None:
            return
        self._cancel_sent = True
        inv = self.request
        req = SipRequest(method="CANCEL", uri=inv.uri)
        h = req.headers
        h.add("Via", inv.headers.get_all("Via")[0])
        for r in inv.headers.get_all("Route"):
            h.add("Route", r)
        h.add("Max-Forwards", "70")
        h.add("From", inv.headers.get("From") or "")
        h.add("To", inv.headers.get("To") or "")
        h.add("Call-ID", inv.call_id)
        h.add("CSeq", f"{inv.cseq[0]} CANCEL")
        h.add("User-Agent", self.call.ua.config.user_agent)
        try:
            await self.call.ua.transact(req, self.call.target)
        except SipError as exc:
            log.info("CANCEL got no answer: %s", exc)

    async def _confirmed(self, req: SipRequest, resp: SipResponse,
                         offer: SessionDescription) -> None:
        call = self.call
        target = call.target
        call.dialog = Dialog.as_uac(req, resp, target.transport,
                                    target if target.reliable else None)
        call.remote_tag = call.dialog.remote_tag
        call.peer_allow = resp.headers.tokens("Allow")
        await call.send_ack(req, resp)
        if self.cancel_cause is not None:
            # The 200 crossed our CANCEL: the call exists now, so it ends with BYE.
            await call.terminate(CallOutcome(self.cancel_cause, 487, "answered after CANCEL"))
            return
        try:
            answer = sdp_of(resp) or self._early_sdp
            if answer is None:
                raise SdpError("the 200 OK carries no SDP answer")
            assert call.handler is not None
            neg = await call.handler.answered(offer, answer)
        except SdpError as exc:
            await call.terminate(CallOutcome(EndCause.NOT_ACCEPTABLE, 488, one_line(exc)))
            return
        call.timer.from_response(resp)
        await call.established(offer, answer, neg)


class InviteServer:
    """An INVITE that opens an inbound call."""

    def __init__(self, call: InviteCall, request: SipRequest,
                 transaction: ServerTransaction) -> None:
        self.call = call
        self.request = request
        self.transaction = transaction

    def start(self, decide: IncomingHandler) -> None:
        """Ask the application about this INVITE and carry out its decision."""
        self.call.spawn(self._run(decide))

    @property
    def pending(self) -> bool:
        """No final response sent yet."""
        return not self.transaction.final_sent

    def abandon(self, status: int) -> None:
        """Answer the INVITE with ``status`` if it is still unanswered (hang-up, BYE)."""
        if self.pending:
            self.transaction.respond(make_response(self.request, status,
                                                   to_tag=self.call.local_tag))

    async def _run(self, decide: IncomingHandler) -> None:
        call, req, st = self.call, self.request, self.transaction
        settings = call.ua.config.session_timers
        try:
            se = session_expires(req)
            offer = sdp_of(req)
        except (SdpError, SipParseError) as exc:
            await self._reject(400, one_line(exc), EndCause.FAILED)
            return
        if settings.enabled and se is not None and se.interval < settings.min_se:
            resp = make_response(req, 422, to_tag=call.local_tag)
            resp.headers.add("Min-SE", str(settings.min_se))
            st.respond(resp)
            await call.finish(CallOutcome(EndCause.FAILED, 422, "Session Interval Too Small"))
            return
        from_ = req.from_
        incoming = IncomingCall(
            call=call,
            number=req.uri.user or req.to.uri.user,
            to_user=req.to.uri.user,
            caller=from_.uri.user,
            caller_display=from_.display,
            offer=offer,
            source=call.target,
            request=req,
        )
        try:
            decision = await decide(incoming)
        except Exception:
            log.exception("incoming-call handler failed")
            await self._reject(500, "Server Internal Error", EndCause.FAILED)
            return
        if isinstance(decision, Reject):
            await self._reject(decision.status, decision.reason or "", None)
            return
        assert isinstance(decision, Answer)
        call.handler = decision.handler
        if decision.ring_for > 0:
            ringing = make_response(req, 180, to_tag=call.local_tag)
            ringing.headers.add("Contact", call.ua.contact(call.target.transport))
            st.respond(ringing)
            call.ringing()
            await sleep(call.ua.timers, decision.ring_for)
        try:
            if offer is not None:
                answer, neg = await call.handler.answer(offer)
            else:
                answer, neg = await call.handler.offer(MediaKind.AUDIO), None
        except SdpError as exc:
            await self._reject(488, one_line(exc), EndCause.NOT_ACCEPTABLE)
            return
        resp = call.ok_response(req, answer)
        st.respond(resp)
        call.track_2xx(resp, st.target, req.cseq[0], awaiting_answer=offer is None)
        await call.established(answer, offer, neg)

    async def _reject(self, status: int, reason: str, cause: EndCause | None) -> None:
        resp = make_response(self.request, status, reason or None, to_tag=self.call.local_tag)
        self.transaction.respond(resp)
        outcome = CallOutcome.from_status(status, resp.reason)
        if cause is not None:
            outcome = CallOutcome(cause, status, resp.reason)
        await self.call.finish(outcome)
