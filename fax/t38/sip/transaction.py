"""RFC 3261 §17 transactions (with the RFC 6026 Accepted states) and their timers.

Client INVITE:     Calling -A/B-> Proceeding -> Completed (ACK, timer D) | Accepted (timer M)
Client non-INVITE: Trying -E/F-> Proceeding -> Completed (timer K)
Server INVITE:     Proceeding -> Completed (timer G/H) -> Confirmed (timer I) | Accepted (L)
Server non-INVITE: Trying -> Proceeding -> Completed (timer J)

Retransmissions happen over UDP only; over TCP/TLS the timers just wait. The layer matches
responses by branch and CSeq method (§17.1.3) and requests by branch, sent-by and method
(§17.2.3; an ACK matches its INVITE).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from enum import Enum
from typing import Protocol

from fax.t38.sip.errors import SipError, TransactionTimeout, TransportError
from fax.t38.sip.message import Headers, SipRequest, SipResponse
from fax.t38.sip.timers import TimerHandle, Timers, TimerValues
from fax.t38.sip.transport import Received, Target

log = logging.getLogger(__name__)
MAGIC = "z9hG4bK"


def new_branch() -> str:
    """A fresh RFC 3261 branch (magic cookie + 96 random bits)."""
    return MAGIC + secrets.token_hex(12)


class Sender(Protocol):
    """What transactions send through (the transport layer)."""

    def send(self, message: SipRequest | SipResponse, target: Target) -> None:
        """Send now or raise `TransportError`."""
        ...


class State(Enum):
    """Transaction states (the union of all four machines)."""

    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


ClientEvent = SipResponse | SipError
"""What a client transaction reports to its user: a response, or a timeout/transport error."""


class ClientTransaction:
    """One outgoing request and its responses."""

    def __init__(
        self,
        layer: TransactionLayer,
        request: SipRequest,
        target: Target,
        tu: Callable[[ClientEvent], None],
    ) -> None:
        self.layer = layer
        self.request = request
        self.target = target
        self.tu = tu
        self.invite = request.method == "INVITE"
        self.branch = request.top_via.branch or ""
        self.state = State.CALLING if self.invite else State.TRYING
        self.got_provisional = False
        self._retransmit: TimerHandle | None = None
        self._timeout: TimerHandle | None = None
        self._interval = layer.values.t1
        self._ack: SipRequest | None = None

    @property
    def key(self) -> tuple[str, str]:
        """Branch and method."""
        return self.branch, self.request.method

    def start(self) -> None:
        """Send the request and arm timers A/B or E/F."""
        if not self._send(self.request):
            return
        v = self.layer.values
        if not self.target.reliable:
            self._retransmit = self.layer.timers.call_later(self._interval, self._on_retransmit)
        self._timeout = self.layer.timers.call_later(v.b, self._on_timeout)

    def _send(self, msg: SipRequest) -> bool:
        try:
            self.layer.sender.send(msg, self.target)
        except TransportError as exc:
            self._terminate()
            self.tu(exc)
            return False
        return True

    def _on_retransmit(self) -> None:
        if self.state not in (State.CALLING, State.TRYING, State.PROCEEDING):
            return
        if self.invite and self.state is State.PROCEEDING:
            return
        if not self._send(self.request):
            return
        v = self.layer.values
        if self.invite:
            self._interval *= 2
        elif self.state is State.PROCEEDING:
            self._interval = v.t2
        else:
            self._interval = min(2 * self._interval, v.t2)
        self._retransmit = self.layer.timers.call_later(self._interval, self._on_retransmit)

    def _on_timeout(self) -> None:
        if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
            self._terminate()
            self.tu(TransactionTimeout(f"{self.request.method} got no final response"))

    def on_response(self, resp: SipResponse) -> None:
        """A response matched this transaction."""
        s = resp.status
        if self.state is State.TERMINATED:
            return
        if s < 200:
            if self.state in (State.CALLING, State.TRYING, State.PROCEEDING):
                self.got_provisional = True
                self.state = State.PROCEEDING
                if self.invite:
                    self._cancel(retransmit=True)
                else:
                    # Timer E keeps firing, at T2 from now on (§17.1.2.2).
                    self._interval = self.layer.values.t2
                self.tu(resp)
            return
        if self.invite:
            self._on_invite_final(resp)
        elif self.state in (State.TRYING, State.PROCEEDING):
            self.state = State.COMPLETED
            self._cancel(retransmit=True, timeout=True)
            self._after(0 if self.target.reliable else self.layer.values.t4)
            self.tu(resp)

    def _on_invite_final(self, resp: SipResponse) -> None:
        if resp.status < 300:
            if self.state in (State.CALLING, State.PROCEEDING):
                self.state = State.ACCEPTED
                self._cancel(retransmit=True, timeout=True)
                self._after(self.layer.values.b)  # timer M
                self.tu(resp)
            elif self.state is State.ACCEPTED:
                self.tu(resp)  # a 2xx retransmission: the TU ACKs it again
            return
        if self.state in (State.CALLING, State.PROCEEDING):
            self.state = State.COMPLETED
            self._cancel(retransmit=True, timeout=True)
            self._ack = self._build_ack(resp)
            self._send(self._ack)
            self._after(0 if self.target.reliable else self.layer.values.d)
            self.tu(resp)
        elif self.state is State.COMPLETED and self._ack is not None:
            self._send(self._ack)

    def _build_ack(self, resp: SipResponse) -> SipRequest:
        """The ACK for a non-2xx final response (§17.1.1.3): same branch, To from the response."""
        h = Headers()
        h.add("Via", self.request.headers.get_all("Via")[0])
        for r in self.request.headers.get_all("Route"):
            h.add("Route", r)
        h.add("Max-Forwards", "70")
        h.add("From", self.request.headers.get("From") or "")
        h.add("To", resp.headers.get("To") or "")
        h.add("Call-ID", self.request.call_id)
        h.add("CSeq", f"{self.request.cseq[0]} ACK")
        return SipRequest(headers=h, method="ACK", uri=self.request.uri)

    def _after(self, delay: float) -> None:
        if delay <= 0:
            self._terminate()
        else:
            self._timeout = self.layer.timers.call_later(delay, self._terminate)

    def _cancel(self, *, retransmit: bool = False, timeout: bool = False) -> None:
        if retransmit and self._retransmit is not None:
            self._retransmit.cancel()
            self._retransmit = None
        if timeout and self._timeout is not None:
            self._timeout.cancel()
            self._timeout = None

    def _terminate(self) -> None:
        self.state = State.TERMINATED
        self._cancel(retransmit=True, timeout=True)
        self.layer.forget_client(self)


class ServerTransaction:
    """One incoming request and our responses to it."""

    def __init__(self, layer: TransactionLayer, request: SipRequest, received: Received) -> None:
        self.layer = layer
        self.request = request
        self.received = received
        self.invite = request.method == "INVITE"
        via = request.top_via
        self.branch = via.branch or ""
        self.sent_by = via.sent_by
        self.state = State.PROCEEDING if self.invite else State.TRYING
        self.last_response: SipResponse | None = None
        self.target = response_target(request, received)
        self.on_terminated: Callable[[ServerTransaction], None] | None = None
        self._retransmit: TimerHandle | None = None
        self._timeout: TimerHandle | None = None
        self._interval = layer.values.t1

    @property
    def key(self) -> tuple[str, tuple[str, int], str]:
        """Branch, sent-by and method (ACK files under INVITE)."""
        return self.branch, self.sent_by, self.request.method

    @property
    def final_sent(self) -> bool:
        """A final response has gone out."""
        return self.last_response is not None and self.last_response.status >= 200

    def respond(self, resp: SipResponse) -> None:
        """Send a response and move the state machine."""
        if self.state in (State.TERMINATED, State.CONFIRMED, State.ACCEPTED, State.COMPLETED):
            log.debug("response %s after final ignored", resp.status)
            return
        self.last_response = resp
        self._send(resp)
        if resp.status < 200:
            self.state = State.PROCEEDING
            return
        v = self.layer.values
        reliable = self.target.reliable
        if self.invite and resp.status < 300:
            self.state = State.ACCEPTED
            self._timeout = self.layer.timers.call_later(v.b, self._terminate)  # timer L
        elif self.invite:
            self.state = State.COMPLETED
            if not reliable:
                self._retransmit = self.layer.timers.call_later(self._interval, self._on_g)
            self._timeout = self.layer.timers.call_later(v.b, self._on_h)
        else:
            self.state = State.COMPLETED
            if reliable:
                self._terminate()
            else:
                self._timeout = self.layer.timers.call_later(v.b, self._terminate)  # timer J

    def _send(self, resp: SipResponse) -> None:
        try:
            self.layer.sender.send(resp, self.target)
        except TransportError as exc:
            log.info("cannot send %s response: %s", resp.status, exc)
            self._terminate()

    def _on_g(self) -> None:
        if self.state is not State.COMPLETED or self.last_response is None:
            return
        self._send(self.last_response)
        self._interval = min(2 * self._interval, self.layer.values.t2)
        self._retransmit = self.layer.timers.call_later(self._interval, self._on_g)

    def _on_h(self) -> None:
        if self.state is State.COMPLETED:
            log.info("no ACK for %s to %s", self.last_response and self.last_response.status,
                     self.request.call_id)
            self._terminate()

    def on_retransmission(self, request: SipRequest) -> None:
        """The same request again (or its ACK)."""
        if request.method == "ACK":
            if self.state is State.COMPLETED:
                self.state = State.CONFIRMED
                if self._retransmit is not None:
                    self._retransmit.cancel()
                if self._timeout is not None:
                    self._timeout.cancel()
                delay = 0 if self.target.reliable else self.layer.values.t4
                if delay:
                    self._timeout = self.layer.timers.call_later(delay, self._terminate)
                else:
                    self._terminate()
            return
        if self.state in (State.PROCEEDING, State.COMPLETED) and self.last_response is not None:
            self._send(self.last_response)

    def _terminate(self) -> None:
        if self.state is State.TERMINATED:
            return
        self.state = State.TERMINATED
        for h in (self._retransmit, self._timeout):
            if h is not None:
                h.cancel()
        self.layer.forget_server(self)
        if self.on_terminated is not None:
            self.on_terminated(self)


def response_target(request: SipRequest, received: Received) -> Target:
    """Where responses to ``request`` go (§18.2.2 with RFC 3581 rport)."""
    src = received.source
    if src.reliable:
        return src
    via = request.top_via
    if "rport" in via.params:
        return src
    return Target("udp", src.host, via.sent_by[1])


RequestHandler = Callable[[SipRequest, "ServerTransaction | None", Received], None]
ResponseHandler = Callable[[SipResponse, Received], None]


class TransactionLayer:
    """Matches messages to transactions; hands new requests and strays to the UA core."""

    def __init__(
        self,
        sender: Sender,
        timers: Timers,
        on_request: RequestHandler,
        on_stray_response: ResponseHandler,
        values: TimerValues | None = None,
    ) -> None:
        self.sender = sender
        self.timers = timers
        self.values = values or TimerValues()
        self.on_request = on_request
        self.on_stray_response = on_stray_response
        self.clients: dict[tuple[str, str], ClientTransaction] = {}
        self.servers: dict[tuple[str, tuple[str, int], str], ServerTransaction] = {}

    def send_request(
        self, request: SipRequest, target: Target, tu: Callable[[ClientEvent], None]
    ) -> ClientTransaction:
        """Start a client transaction (ACK for a 2xx is not a transaction: use ``send``)."""
        tx = ClientTransaction(self, request, target, tu)
        self.clients[tx.key] = tx
        tx.start()
        return tx

    def receive(self, received: Received) -> None:
        """Route one incoming message."""
        msg = received.message
        if isinstance(msg, SipResponse):
            key = (msg.top_via.branch or "", msg.cseq[1])
            tx = self.clients.get(key)
            if tx is not None:
                tx.on_response(msg)
            else:
                self.on_stray_response(msg, received)
            return
        via = msg.top_via
        branch = via.branch or ""
        if not branch.startswith(MAGIC):
            # RFC 2543 peers: no reliable transaction id, treat each request as new.
            branch = f"{msg.call_id}|{msg.cseq[0]}|{branch}"
        method = "INVITE" if msg.method == "ACK" else msg.method
        st = self.servers.get((branch, via.sent_by, method))
        if st is not None and not (msg.method == "ACK" and st.state is State.ACCEPTED):
            st.on_retransmission(msg)
            return
        if msg.method == "ACK":
            self.on_request(msg, None, received)
            return
        st = ServerTransaction(self, msg, received)
        st.branch = branch
        self.servers[st.key] = st
        self.on_request(msg, st, received)

    def find_invite(self, request: SipRequest) -> ServerTransaction | None:
        """The INVITE server transaction a CANCEL refers to (same branch and sent-by)."""
        via = request.top_via
        return self.servers.get((via.branch or "", via.sent_by, "INVITE"))

    def forget_client(self, tx: ClientTransaction) -> None:
        """Drop a terminated client transaction."""
        if self.clients.get(tx.key) is tx:
            del self.clients[tx.key]

    def forget_server(self, tx: ServerTransaction) -> None:
        """Drop a terminated server transaction."""
        if self.servers.get(tx.key) is tx:
            del self.servers[tx.key]
