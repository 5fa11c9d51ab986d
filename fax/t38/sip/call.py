"""One call: the INVITE dialog as caller or callee, re-INVITEs, session timers, the end.

A `Call` runs the initial INVITE (as UAC with CANCEL and auth, or as UAS with 100/180/200
and CANCEL → 487), then the established dialog: re-INVITE or UPDATE in either direction
(offer/answer through the `MediaHandler`), glare (491 and the RFC 3261 §14.1 back-off),
RFC 4028 refreshes that resend the current SDP unchanged, and BYE from either side. Its
end is a `CallOutcome`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from fax.t38.sdp import MediaKind, Negotiated, SessionDescription
from fax.t38.sip.control import CallState
from fax.t38.sip.dialog import Dialog, new_call_id, new_tag
from fax.t38.sip.errors import (
    CallFailed,
    SdpError,
    SipError,
    SipParseError,
    TransactionTimeout,
    TransportError,
)
from fax.t38.sip.host import SipHost
from fax.t38.sip.incoming import IncomingHandler
from fax.t38.sip.invite import (
    InviteClient,
    InviteServer,
    Pending2xx,
    one_line,
    same_version,
    sdp_of,
)
from fax.t38.sip.media import MediaHandler
from fax.t38.sip.message import SipRequest, SipResponse, make_response
from fax.t38.sip.outcome import CallOutcome, EndCause
from fax.t38.sip.session_timer import SessionExpires, SessionTimer
from fax.t38.sip.timers import sleep
from fax.t38.sip.transaction import ClientEvent, ClientTransaction, ServerTransaction
from fax.t38.sip.transport import Received, Target
from fax.t38.sip.uri import SipUri

log = logging.getLogger(__name__)
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO"
GLARE_RETRIES = 3


def glare_backoff(owner: bool, rng: random.Random) -> float:
    """RFC 3261 §14.1: 2.1-4 s for the Call-ID's owner, 0-2 s for the other, in 10 ms steps."""
    return rng.randint(210, 400) / 100 if owner else rng.randint(0, 200) / 100


class Call:
    """A fax call. Created by `UserAgent.call` (outbound) or for an incoming INVITE."""

    def __init__(
        self,
        ua: SipHost,
        handler: MediaHandler | None,
        *,
        outbound: bool,
        call_id: str,
        local_tag: str,
        target: Target,
    ) -> None:
        self.ua = ua
        self.handler = handler
        self.outbound = outbound
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag: str | None = None
        self.target = target
        self.state = CallState.CALLING
        self.dialog: Dialog | None = None
        self.media: Negotiated | None = None
        self.media_log: list[Negotiated] = []
        self.outcome: CallOutcome | None = None
        self.initial_cseq = 0
        self.peer_allow: set[str] = set()
        self.timer = SessionTimer(ua.config.session_timers, ua.timers,
                                  on_refresh=lambda: self.spawn(self.refresh()),
                                  on_expiry=self._expired)
        self.refreshes_sent = 0
        self.refreshes_received = 0
        self.remote_uri: SipUri | None = None
        self.local_user: str | None = None  # the caller's number in From (outbound)
        loop = asyncio.get_running_loop()
        self._answered: asyncio.Future[Negotiated] = loop.create_future()
        self._ended: asyncio.Future[CallOutcome] = loop.create_future()
        self.local_sdp: SessionDescription | None = None
        self.remote_sdp: SessionDescription | None = None
        # The far end's offer that local_sdp answers (None when local_sdp was our offer):
        # the same offer again (same o= version) is a refresh and gets the same answer.
        self._answered_offer: SessionDescription | None = None
        self._client: InviteClient | None = None
        self._server: InviteServer | None = None
        self._lock = asyncio.Lock()  # our own INVITE/UPDATE transactions, one at a time
        self._uac_pending = False  # an offer of ours is outstanding: their re-INVITE gets 491
        self._uas_pending = False  # their re-INVITE is not answered yet: another gets 500
        self._uas_idle = asyncio.Event()
        self._uas_idle.set()
        self._acks: dict[int, tuple[SipRequest, Target]] = {}
        self._pending_2xx: dict[int, Pending2xx] = {}
        self._answering: set[ServerTransaction] = set()  # their re-INVITE/UPDATE in hand
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- public API -------------------------------------------------------------------

    @property
    def session(self) -> SessionExpires | None:
        """The session interval in force (RFC 4028), None without session timer."""
        return self.timer.session

    @property
    def we_refresh(self) -> bool:
        """We are the refresher."""
        return self.timer.we_refresh

    @property
    def answered(self) -> bool:
        """The call was established (it may have ended since)."""
        return self._answered.done() and not self._answered.exception()

    async def wait_answered(self) -> Negotiated:
        """The media agreed when the call was answered; raises `CallFailed` if it never was."""
        return await asyncio.shield(self._answered)

    async def wait_ended(self) -> CallOutcome:
        """The outcome, once the call is over and the media handler was told."""
        return await asyncio.shield(self._ended)

    async def reinvite_to_t38(self) -> bool:
        """Switch to T.38 (re-INVITE offering ``m=image``); False if the far end refused."""
        return await self.reinvite(MediaKind.IMAGE)

    async def reinvite(self, kind: MediaKind) -> bool:
        """Re-INVITE to ``kind``; True once it is the agreed media (by us or by the far end).

        A 488 (or any refusal) leaves the media as it was and returns False; a 491 (glare)
        waits the RFC 3261 back-off and tries again, unless the far end's own re-INVITE got
        us there meanwhile.
        """
        if self.state is not CallState.ESTABLISHED:
            raise SipError(f"cannot re-INVITE a call that is {self.state}")
        for _ in range(GLARE_RETRIES + 1):
            if self.media is not None and self.media.kind is kind:
                return True
            async with self._lock:
                await self._uas_idle.wait()
                if self.state is not CallState.ESTABLISHED:
                    return False
                if self.media is not None and self.media.kind is kind:
                    return True
                assert self.handler is not None
                offer = await self.handler.offer(kind)
                result = await self._offer_reinvite(offer, refresh=False)
            if result != "glare":
                return result == "ok"
            await sleep(self.ua.timers, self._backoff())
        return False

    async def refresh(self) -> bool:
        """Refresh the session now (RFC 4028): UPDATE, or re-INVITE with the same SDP."""
        for _ in range(GLARE_RETRIES + 1):
            if self.state is not CallState.ESTABLISHED:
                return False
            if self._lock.locked():
                return True  # our re-INVITE in flight carries Session-Expires: it refreshes
            async with self._lock:
                await self._uas_idle.wait()
                if self.state is not CallState.ESTABLISHED:
                    return False
                result = await self._refresh_once()
            if result != "glare":
                if result == "ok":
                    self.refreshes_sent += 1
                elif result == "refused":
                    self.timer.retry_soon()
                return result == "ok"
            await sleep(self.ua.timers, self._backoff())
        self.timer.retry_soon()
        return False

    async def hangup(self) -> CallOutcome:
        """End the call: BYE when established, CANCEL while it rings, 480 to an unanswered
        incoming call. Returns the outcome."""
        if self.outcome is not None:
            return self.outcome
        if self.state is CallState.ENDING:
            return await self.wait_ended()
        if self.state is CallState.ESTABLISHED:
            self.state = CallState.ENDING
            await self.bye()
            await self.finish(CallOutcome(EndCause.LOCAL_HANGUP, 200, "BYE", answered=True))
        elif self._client is not None:
            self._client.cancel(EndCause.CANCELLED)
        elif self._server is not None and self._server.pending:
            self._server.abandon(480)
            await self.finish(CallOutcome(EndCause.LOCAL_HANGUP, 480, "Temporarily Unavailable"))
        return await self.wait_ended()

    # --- construction -----------------------------------------------------------------

    @classmethod
    def outbound_call(cls, ua: SipHost, handler: MediaHandler, remote: SipUri,
                      target: Target) -> Call:
        """A call we are about to dial."""
        call = cls(ua, handler, outbound=True, call_id=new_call_id(ua.host),
                   local_tag=new_tag(), target=target)
        call.remote_uri = remote
        return call

    @classmethod
    def inbound_call(cls, ua: SipHost, req: SipRequest, st: ServerTransaction,
                     received: Received) -> Call:
        """A call for an INVITE we received."""
        call = cls(ua, None, outbound=False, call_id=req.call_id, local_tag=new_tag(),
                   target=received.source)
        call.remote_tag = req.from_.tag
        flow = received.source if received.source.reliable else None
        call.dialog = Dialog.as_uas(req, call.local_tag, received.transport, flow)
        call.initial_cseq = req.cseq[0]
        call.peer_allow = req.headers.tokens("Allow")
        call._server = InviteServer(call, req, st)
        return call

    async def dial(self, kind: MediaKind, ring_timeout: float) -> None:
        """Send our INVITE (returns once it is on its way, or the call failed)."""
        self._client = InviteClient(self, kind, ring_timeout)
        await self._client.start()

    def answer_with(self, decide: IncomingHandler) -> None:
        """Let ``decide`` take or refuse the INVITE we received."""
        assert self._server is not None
        self._server.start(decide)

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` as a task of this call (cancelled when the call ends)."""
        task = self.ua.spawn(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the INVITE transactions (initial ones run in fax.t38.sip.invite) -------------

    def offer_headers(self, req: SipRequest, transport: str, interval: int | None) -> None:
        """Contact, Allow, Supported, session-timer headers and Content-Type for an offer."""
        h = req.headers
        h.add("Contact", self.ua.contact(transport))
        h.add("Allow", ALLOW)
        h.add("Supported", "timer")
        if interval is not None:
            self.timer.add_request_headers(h, interval)
        h.add("Content-Type", "application/sdp")

    async def invite_transaction(
        self,
        req: SipRequest,
        target: Target,
        on_provisional: Callable[[SipResponse], None] | None = None,
        on_started: Callable[[ClientTransaction], None] | None = None,
    ) -> SipResponse:
        """Run an INVITE client transaction to its final response (2xx resends re-ACK)."""
        fut: asyncio.Future[SipResponse] = asyncio.get_running_loop().create_future()

        def on_event(ev: ClientEvent) -> None:
            if isinstance(ev, SipError):
                if not fut.done():
                    fut.set_exception(ev)
            elif ev.status < 200:
                if on_provisional is not None:
                    on_provisional(ev)
            elif not fut.done():
                fut.set_result(ev)
            elif ev.status < 300:
                self.on_stray_2xx(ev)

        tx = await self.ua.start_transaction(req, target, on_event)
        if on_started is not None:
            on_started(tx)
        return await fut

    async def send_ack(self, req: SipRequest, resp: SipResponse,
                       body: SessionDescription | None = None) -> None:
        """ACK a 2xx to our INVITE ``req`` (kept to answer 2xx retransmissions)."""
        assert self.dialog is not None
        ack = self.dialog.request("ACK", cseq=req.cseq[0])
        for name in ("Authorization", "Proxy-Authorization"):
            for value in req.headers.get_all(name):
                ack.headers.add(name, value)
        if body is not None:
            ack.headers.add("Content-Type", "application/sdp")
            ack.body = body.encode()
        target = self._dialog_target()
        self.ua.prepare(ack, target.transport)
        self._acks[req.cseq[0]] = (ack, target)
        try:
            await self.ua.transports.connect(target)
            self.ua.transports.send(ack, target)
        except TransportError as exc:
            log.info("ACK not sent: %s", exc)

    def on_stray_2xx(self, resp: SipResponse) -> None:
        """A retransmitted 2xx to one of our INVITEs: send its ACK again."""
        entry = self._acks.get(resp.cseq[0])
        if entry is None or (self.remote_tag and resp.to.tag != self.remote_tag):
            return
        try:
            self.ua.transports.send(*entry)
        except TransportError as exc:
            log.info("ACK retransmission failed: %s", exc)

    def track_2xx(self, resp: SipResponse, target: Target, cseq: int, *,
                  awaiting_answer: bool) -> None:
        """Retransmit our 2xx to an INVITE until its ACK comes."""
        self._pending_2xx[cseq] = Pending2xx(self, resp, target, cseq, awaiting_answer)

    def ringing(self) -> None:
        """A 180/183 went out or came in."""
        if self.state is CallState.CALLING:
            self.state = CallState.RINGING

    async def established(self, local: SessionDescription | None,
                          remote: SessionDescription | None, neg: Negotiated | None) -> None:
        """The initial INVITE succeeded: the call is up (media now, or after a delayed answer)."""
        self.local_sdp, self.remote_sdp = local, remote
        self._answered_offer = None if self.outbound else remote
        self.state = CallState.ESTABLISHED
        if neg is not None:
            await self.set_media(neg)
            if not self._answered.done():
                self._answered.set_result(neg)

    def ok_response(self, req: SipRequest, body: SessionDescription | None) -> SipResponse:
        """A 2xx to an INVITE or UPDATE, with session-timer headers as the UAS (§9)."""
        resp = make_response(req, 200, to_tag=self.local_tag)
        h = resp.headers
        h.add("Contact", self.ua.contact(self.target.transport))
        h.add("Allow", ALLOW)
        h.add("Supported", "timer")
        self.timer.answer(req, h)
        if body is not None:
            h.add("Content-Type", "application/sdp")
            resp.body = body.encode()
        return resp

    def on_cancel(self, invite: ServerTransaction) -> None:
        """The caller cancelled an INVITE of theirs (we already answered the CANCEL 200)."""
        if invite.final_sent:
            return
        invite.respond(make_response(invite.request, 487, to_tag=self.local_tag))
        if self._server is not None and invite is self._server.transaction:
            self.spawn(self.finish(CallOutcome(EndCause.CANCELLED, 487, "Request Terminated")))

    def on_ack(self, req: SipRequest) -> None:
        """An ACK for a 2xx we sent."""
        pending = self._pending_2xx.pop(req.cseq[0], None)
        if pending is None:
            return
        pending.stop()
        if pending.awaiting_answer:
            self.spawn(self._delayed_answer(req))

    async def _delayed_answer(self, ack: SipRequest) -> None:
        try:
            answer = sdp_of(ack)
            if answer is None:
                raise SdpError("the ACK carries no SDP answer to our offer")
            if same_version(answer, self.remote_sdp) and self.media is not None:
                return
            assert self.handler is not None and self.local_sdp is not None
            neg = await self.handler.answered(self.local_sdp, answer)
        except SdpError as exc:
            await self.terminate(CallOutcome(EndCause.NOT_ACCEPTABLE, 488, str(exc),
                                              answered=True))
            return
        self.remote_sdp = answer
        await self.set_media(neg)
        if not self._answered.done():
            self._answered.set_result(neg)

    def on_no_ack(self, cseq: int) -> None:
        """No ACK for our 2xx within 64·T1: the session is dead (§13.3.1.4)."""
        self._pending_2xx.pop(cseq, None)
        self.spawn(self.terminate(CallOutcome(EndCause.FAILED, 408, "no ACK for 200 OK",
                                                answered=True)))

    # --- the established dialog: their requests ----------------------------------------

    def on_request(self, req: SipRequest, st: ServerTransaction, received: Received) -> None:
        """A request inside this call's dialog (not ACK or CANCEL)."""
        dialog = self.dialog
        if dialog is None:
            st.respond(make_response(req, 481))
            return
        if self.remote_tag is not None and req.from_.tag != self.remote_tag:
            st.respond(make_response(req, 481))
            return
        cseq = req.cseq[0]
        if dialog.remote_cseq is not None and cseq <= dialog.remote_cseq:
            st.respond(make_response(req, 500, "CSeq out of order"))
            return
        dialog.remote_cseq = cseq
        method = req.method
        if method == "BYE":
            st.respond(make_response(req, 200))
            if self._server is not None:
                self._server.abandon(487)
            reason = req.headers.get("Reason") or "BYE"
            self.spawn(self.finish(CallOutcome(EndCause.REMOTE_HANGUP, 200, reason,
                                                 answered=self.answered)))
        elif method in ("INVITE", "UPDATE"):
            if self.state is not CallState.ESTABLISHED:
                st.respond(make_response(req, 491, to_tag=self.local_tag))
            elif self._uac_pending and (method == "INVITE" or req.body):
                st.respond(make_response(req, 491))  # glare: our offer is outstanding
            elif self._uas_pending:
                resp = make_response(req, 500, "Earlier request pending")
                resp.headers.add("Retry-After", str(self.ua.rng.randint(0, 10)))
                st.respond(resp)
            else:
                self._uas_pending = True
                self._uas_idle.clear()
                if method == "INVITE":
                    self.ua.watch_invite(st, self)
                self._answering.add(st)
                self.spawn(self._answer_in_dialog(req, st))
        elif method in ("OPTIONS", "INFO"):
            st.respond(make_response(req, 200))
        else:
            resp = make_response(req, 405)
            resp.headers.add("Allow", ALLOW)
            st.respond(resp)

    async def _answer_in_dialog(self, req: SipRequest, st: ServerTransaction) -> None:
        try:
            await self._answer_offer_request(req, st)
        finally:
            self._answering.discard(st)
            self._uas_pending = False
            self._uas_idle.set()

    async def _answer_offer_request(self, req: SipRequest, st: ServerTransaction) -> None:
        assert self.dialog is not None and self.handler is not None
        invite = req.method == "INVITE"
        try:
            too_small = self.timer.too_small(req)
            offer = sdp_of(req)
        except (SdpError, SipParseError) as exc:
            st.respond(make_response(req, 400, one_line(exc)))
            return
        if too_small:
            resp = make_response(req, 422)
            resp.headers.add("Min-SE", str(self.timer.min_se))
            st.respond(resp)
            return
        contact = req.contact
        if contact is not None:
            self.dialog.remote_target = contact.uri  # a target refresh (§12.2.2)
        if "Allow" in req.headers:
            self.peer_allow = req.headers.tokens("Allow")
        neg: Negotiated | None = None
        answer: SessionDescription | None = None
        if offer is not None:
            if same_version(offer, self._answered_offer):
                answer = self.local_sdp  # a refresh: the same offer, the same answer
            else:
                try:
                    answer, neg = await self.handler.answer(offer)
                except SdpError as exc:
                    # §14.2: the session stays as it was.
                    st.respond(make_response(req, 488, one_line(exc)))
                    return
        elif invite:
            answer = self.local_sdp  # an offerless re-INVITE: we offer the current SDP
        if self.state is not CallState.ESTABLISHED:
            st.respond(make_response(req, 487))  # the call ended meanwhile
            return
        resp = self.ok_response(req, answer)
        st.respond(resp)
        if invite:
            self._pending_2xx[req.cseq[0]] = Pending2xx(
                self, resp, st.target, req.cseq[0], awaiting_answer=offer is None)
        if offer is not None:
            self.remote_sdp, self.local_sdp = offer, answer
            self._answered_offer = offer
        if neg is not None and neg != self.media:
            await self.set_media(neg)
        else:
            self.refreshes_received += 1

    # --- the established dialog: our requests -------------------------------------------

    def _dialog_target(self) -> Target:
        assert self.dialog is not None
        d = self.dialog
        if d.flow is not None and self.ua.transports.is_open(d.flow):
            return d.flow
        return self.ua.target_for(d.next_hop(), d.transport)

    async def _in_dialog(self, method: str, body: SessionDescription | None) -> SipResponse:
        """Send a request in the dialog, answering 401/407 and 422; ACK a 2xx to INVITE."""
        assert self.dialog is not None
        ua = self.ua
        interval = self.timer.interval()
        tries = 0
        while True:
            req = self.dialog.request(method)
            target = self._dialog_target()
            if method in ("INVITE", "UPDATE"):
                self.offer_headers(req, target.transport, interval)
                if body is None:
                    req.headers.remove("Content-Type")
            if body is not None:
                req.body = body.encode()
            ua.prepare(req, target.transport)
            if ua.auth is not None:
                ua.auth.authorize(req)
            if method == "INVITE":
                resp = await self.invite_transaction(req, target)
            else:
                resp = await ua.transact(req, target)
            if tries < 3 and resp.status in (401, 407) and ua.auth is not None and \
                    ua.auth.learn(resp):
                tries += 1
                continue
            floor = self.timer.raised_floor(resp, interval) if resp.status == 422 else None
            if tries < 3 and floor is not None:
                interval = floor
                tries += 1
                continue
            if method == "INVITE" and 200 <= resp.status < 300:
                await self.send_ack(req, resp)
            return resp

    async def _offer_reinvite(self, offer: SessionDescription | None, *, refresh: bool) -> str:
        """One re-INVITE: ``ok``, ``glare`` (491), ``refused`` (media unchanged) or ``dead``."""
        self._uac_pending = True
        try:
            resp = await self._in_dialog("INVITE", offer)
        except (TransactionTimeout, TransportError) as exc:
            await self.terminate(CallOutcome(EndCause.TRANSPORT_ERROR if isinstance(
                exc, TransportError) else EndCause.SESSION_EXPIRED, 408, str(exc),
                answered=True), bye=isinstance(exc, TransactionTimeout))
            return "dead"
        finally:
            self._uac_pending = False
        if resp.status == 491:
            return "glare"
        if resp.status in (408, 481):
            await self.terminate(CallOutcome(EndCause.SESSION_EXPIRED, resp.status,
                                              resp.reason, answered=True),
                                  bye=resp.status == 408)
            return "dead"
        if not 200 <= resp.status < 300:
            return "refused"
        if "Allow" in resp.headers:
            self.peer_allow = resp.headers.tokens("Allow")
        try:
            answer = sdp_of(resp)
            if answer is None or (refresh and same_version(answer, self.remote_sdp)):
                neg = self.media
                answer = answer or self.remote_sdp
            else:
                assert self.handler is not None and offer is not None
                neg = await self.handler.answered(offer, answer)
        except SdpError as exc:
            await self.terminate(CallOutcome(EndCause.NOT_ACCEPTABLE, 488, str(exc),
                                              answered=True))
            return "dead"
        self.local_sdp, self.remote_sdp = offer or self.local_sdp, answer
        self._answered_offer = None
        self.timer.from_response(resp)
        if neg is not None and neg != self.media:
            await self.set_media(neg)
        return "ok"

    async def _refresh_once(self) -> str:
        if not self.timer.use_update(self.peer_allow):
            return await self._offer_reinvite(self.local_sdp, refresh=True)
        try:
            resp = await self._in_dialog("UPDATE", None)
        except (TransactionTimeout, TransportError) as exc:
            await self.terminate(CallOutcome(EndCause.SESSION_EXPIRED, 408, str(exc),
                                              answered=True))
            return "dead"
        if 200 <= resp.status < 300:
            self.timer.from_response(resp)
            return "ok"
        if resp.status in (405, 501):
            self.timer.update_refused = True  # try again at once, by re-INVITE
            return await self._offer_reinvite(self.local_sdp, refresh=True)
        if resp.status == 491:
            return "glare"
        if resp.status in (408, 481):
            await self.terminate(CallOutcome(EndCause.SESSION_EXPIRED, resp.status,
                                              resp.reason, answered=True),
                                  bye=resp.status == 408)
            return "dead"
        return "refused"

    def _backoff(self) -> float:
        owner = self.dialog.caller if self.dialog is not None else self.outbound
        return glare_backoff(owner, self.ua.rng)

    # --- session expiry ---------------------------------------------------------------

    def _expired(self) -> None:
        self.spawn(self.terminate(CallOutcome(
            EndCause.SESSION_EXPIRED, 408, "session expired: no refresh", answered=True)))

    # --- the end ------------------------------------------------------------------------

    async def set_media(self, neg: Negotiated) -> None:
        """Record the agreed stream and tell the media handler."""
        self.media = neg
        self.media_log.append(neg)
        if self.handler is not None:
            await self.handler.media_changed(neg)

    async def bye(self) -> None:
        """Send BYE (best effort: no answer within 64·T1 is only logged)."""
        if self.dialog is None:
            return
        try:
            async with asyncio.timeout(self.ua.values.b + 1):
                await self._in_dialog("BYE", None)
        except (SipError, TimeoutError) as exc:
            log.info("BYE got no answer: %s", exc)

    async def terminate(self, outcome: CallOutcome, *, bye: bool = True) -> None:
        """End an established call: BYE (unless the dialog is gone), then `finish`."""
        if self.outcome is not None:
            return
        self.state = CallState.ENDING
        if bye:
            await self.bye()
        await self.finish(outcome)

    async def finish(self, outcome: CallOutcome) -> None:
        """The call is over: stop timers and tasks, tell the handler, resolve the waiters."""
        if self.outcome is not None:
            return
        self.outcome = outcome
        self.state = CallState.ENDED
        if self._client is not None:
            self._client.mark_sent()
            self._client.stop_ringing()
        self.timer.stop()
        for pending in self._pending_2xx.values():
            pending.stop()
        self._pending_2xx.clear()
        # No server transaction is left without a final response (it would never end).
        if self._server is not None:
            self._server.abandon(480)
        for st in list(self._answering):
            if not st.final_sent:
                st.respond(make_response(st.request, 487))
        self._answering.clear()
        self.ua.forget_call(self)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        if not self._answered.done():
            self._answered.set_exception(CallFailed(outcome))
            self._answered.exception()  # retrieved here: nobody has to await it
        if self.handler is not None:
            try:
                await self.handler.ended(outcome)
            except Exception:
                log.exception("media handler failed at the end of the call")
        self._ended.set_result(outcome)
