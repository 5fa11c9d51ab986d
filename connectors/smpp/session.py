"""One SMPP 3.4 client session over asyncio: bind, requests in a window, keep-alive.

The session is an ``asyncio.Protocol``: received bytes are framed and dispatched
synchronously (responses resolve their request's future; deliver_sm goes to the
``on_deliver`` callback, which answers later through :meth:`Session.respond`), and every
PDU written during one loop tick leaves in one ``transport.write``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import cast

from connectors.smpp import pdu as P

log = logging.getLogger("connectors.smpp")

INTERFACE_VERSION = 0x34


class SessionClosed(Exception):
    """The connection ended before a response came.

    ``maybe_sent`` is False only when the request certainly never left this process
    (it was still in the write buffer); otherwise the peer may have acted on it.
    """

    def __init__(self, reason: str, *, maybe_sent: bool) -> None:
        super().__init__(reason)
        self.maybe_sent = maybe_sent


class ResponseTimeout(Exception):
    """No response within ``response_timeout`` (the peer may still act on the request)."""


class BindError(Exception):
    """The SMSC answered the bind with an error status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"bind refused with {P.status_name(status)}")
        self.status = status


DeliverHandler = Callable[["Session", P.Pdu], None]


class Session(asyncio.Protocol):
    """A bound (or binding) transceiver session; build with :meth:`connect`."""

    def __init__(
        self,
        *,
        window: int = 10,
        response_timeout: float = 10.0,
        enquire_link_interval: float = 30.0,
        on_deliver: DeliverHandler | None = None,
        name: str = "smpp",
    ) -> None:
        self.name = name
        self.window = window
        self.response_timeout = response_timeout
        self.enquire_link_interval = enquire_link_interval
        self.on_deliver = on_deliver
        self.bound = False
        self.closed = False
        self.close_reason = ""
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._framer = P.Framer()
        self._seq = 0
        self._slots = asyncio.Semaphore(window)
        self._pending: dict[int, asyncio.Future[P.Pdu]] = {}
        # (deadline, seq, command_id) of requests with the default timeout, in deadline
        # order: one timer for all of them instead of one per request.
        self._deadlines: deque[tuple[float, int, int]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._out: list[bytes] = []
        self._out_seqs: list[int] = []
        self._flush_handle: asyncio.Handle | None = None
        self._done = self._loop.create_future()
        self._last_rx = self._loop.time()
        self._keepalive: asyncio.Task[None] | None = None
        self._unbinding = False
        self._drained: asyncio.Event | None = None  # set when nothing is in flight

    # -- life cycle ----------------------------------------------------------------------
    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        system_id: str,
        password: str,
        system_type: str = "",
        *,
        connect_timeout: float = 5.0,
        window: int = 10,
        response_timeout: float = 10.0,
        enquire_link_interval: float = 30.0,
        on_deliver: DeliverHandler | None = None,
        name: str = "smpp",
    ) -> Session:
        """Open a TCP connection and bind_transceiver; raises OSError, TimeoutError,
        :class:`BindError`, :class:`SessionClosed` or :class:`ResponseTimeout`."""
        session = cls(
            window=window,
            response_timeout=response_timeout,
            enquire_link_interval=enquire_link_interval,
            on_deliver=on_deliver,
            name=name,
        )
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(connect_timeout):
            await loop.create_connection(lambda: session, host, port)
        try:
            body = P.encode_body(
                P.BIND_TRANSCEIVER,
                {
                    "system_id": system_id,
                    "password": password,
                    "system_type": system_type,
                    "interface_version": INTERFACE_VERSION,
                },
            )
            resp = await session.request(P.BIND_TRANSCEIVER, body)
            if resp.command_id == P.GENERIC_NACK or resp.status != P.ESME_ROK:
                raise BindError(resp.status or P.ESME_RBINDFAIL)
        except BaseException:
            session.abort("bind failed")
            raise
        session.bound = True
        session._keepalive = loop.create_task(session._keep_alive(), name=f"{session.name}-ka")
        return session

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the transport."""
        # A stream transport; uvloop's TCPTransport does not subclass asyncio.Transport.
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        """Fail every unanswered request and wake whoever waits for the end."""
        self.closed, self.bound = True, False
        if not self.close_reason:
            self.close_reason = f"connection lost: {exc}" if exc else "connection closed by peer"
        unsent = set(self._out_seqs)
        self._out.clear()
        self._out_seqs.clear()
        pending, self._pending = self._pending, {}
        for seq, fut in pending.items():
            if not fut.done():
                fut.set_exception(SessionClosed(self.close_reason, maybe_sent=seq not in unsent))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._deadlines.clear()
        if self._keepalive is not None and self._keepalive is not asyncio.current_task():
            self._keepalive.cancel()
        if not self._done.done():
            self._done.set_result(None)

    async def wait_closed(self) -> None:
        """Return when the connection has ended."""
        await asyncio.shield(self._done)

    def abort(self, reason: str) -> None:
        """Drop the connection now."""
        if not self.close_reason:
            self.close_reason = reason
        if self._transport is not None:
            self._transport.abort()

    async def unbind(self, timeout: float = 2.0) -> None:
        """Unbind politely: no new requests, let those in flight be answered, unbind (each
        step bounded by ``timeout``), then close the connection."""
        if not self.closed and self.bound:
            self.bound, self._unbinding = False, True
            with contextlib.suppress(SessionClosed, ResponseTimeout, TimeoutError):
                if self._pending:
                    self._drained = asyncio.Event()
                    async with asyncio.timeout(timeout):
                        await self._drained.wait()
                self.close_reason = "unbound"
                await self.request(P.UNBIND, b"", timeout=timeout)
        self.bound = False
        if self._transport is not None and not self.closed:
            self._transport.close()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.wait_closed()
        self.abort("unbound")

    # -- requests ------------------------------------------------------------------------
    @property
    def free_slots(self) -> int:
        """Requests that may be sent now without waiting for the window."""
        return self.window - len(self._pending)

    def _next_seq(self) -> int:
        self._seq = self._seq + 1 if self._seq < 0x7FFFFFFF else 1
        return self._seq

    async def request(self, command_id: int, body: bytes, timeout: float | None = None) -> P.Pdu:
        """Send a request within the window and return its response (or generic_nack)."""
        if self.closed or (self._unbinding and command_id != P.UNBIND):
            raise SessionClosed(self.close_reason or "unbinding", maybe_sent=False)
        async with self._slots:
            if self.closed or (self._unbinding and command_id != P.UNBIND):
                raise SessionClosed(self.close_reason or "unbinding", maybe_sent=False)
            seq = self._next_seq()
            fut: asyncio.Future[P.Pdu] = self._loop.create_future()
            self._pending[seq] = fut
            self._write(P.with_header(command_id, seq, body), seq)
            try:
                if timeout is None:
                    deadline = self._loop.time() + self.response_timeout
                    self._deadlines.append((deadline, seq, command_id))
                    if self._timer is None:
                        self._timer = self._loop.call_at(deadline, self._expire)
                    return await fut
                try:
                    async with asyncio.timeout(timeout):
                        return await fut
                except TimeoutError:
                    raise ResponseTimeout(_no_response(command_id, seq)) from None
            finally:
                self._pending.pop(seq, None)
                if self._drained is not None and not self._pending:
                    self._drained.set()

    def _expire(self) -> None:
        """Fail the requests whose response is overdue; re-arm for the next deadline."""
        self._timer = None
        now = self._loop.time()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, seq, command_id = deadlines.popleft()
            fut = self._pending.get(seq)
            if fut is not None and not fut.done():
                fut.set_exception(ResponseTimeout(_no_response(command_id, seq)))
        while deadlines and deadlines[0][1] not in self._pending:
            deadlines.popleft()  # answered already: no need to wake up for it
        if deadlines and not self.closed:
            self._timer = self._loop.call_at(deadlines[0][0], self._expire)

    def respond(
        self, command_id: int, seq: int, status: int = P.ESME_ROK, body: bytes = b""
    ) -> None:
        """Answer a request of the peer (dropped silently when the connection is gone)."""
        if not self.closed:
            self._write(P.with_header(command_id, seq, body, status))

    def _write(self, data: bytes, seq: int = 0) -> None:
        self._out.append(data)
        if seq:
            self._out_seqs.append(seq)
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if self._out and self._transport is not None and not self.closed:
            self._transport.write(b"".join(self._out))
        self._out.clear()
        self._out_seqs.clear()

    # -- receiving -----------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        """Frame and dispatch everything that arrived."""
        self._last_rx = self._loop.time()
        try:
            frames = self._framer.feed(data)
        except P.PduError as exc:
            # The stream cannot be re-synced after an impossible length: say why and leave.
            log.warning("%s: %s; closing", self.name, exc)
            self.respond(P.GENERIC_NACK, exc.seq, exc.status)
            self._flush()
            self.abort(f"malformed stream: {exc}")
            return
        for frame in frames:
            self._dispatch(frame)

    def _dispatch(self, frame: bytes) -> None:
        try:
            pdu = P.decode(frame)
        except P.PduError as exc:
            log.warning("%s: malformed PDU: %s", self.name, exc)
            fut = self._pending.get(exc.seq) if exc.command_id & P.RESP else None
            if fut is not None and not fut.done():
                # A response we cannot read: the request's outcome is unknown to us.
                fut.set_result(P.Pdu(P.GENERIC_NACK, exc.status, exc.seq))
            elif not exc.command_id & P.RESP:
                self.respond(P.GENERIC_NACK, exc.seq, exc.status)
            return
        cid = pdu.command_id
        if cid & P.RESP:
            fut = self._pending.get(pdu.seq)
            if fut is not None and not fut.done():
                fut.set_result(pdu)
            elif cid != P.GENERIC_NACK:
                log.info("%s: late or unknown response %s", self.name, pdu)
        elif cid == P.DELIVER_SM:
            if self.on_deliver is None:
                self.respond(P.DELIVER_SM_RESP, pdu.seq, P.ESME_RX_T_APPN, b"\x00")
            else:
                self.on_deliver(self, pdu)
        elif cid == P.ENQUIRE_LINK:
            self.respond(P.ENQUIRE_LINK_RESP, pdu.seq)
        elif cid == P.UNBIND:
            self.close_reason = "unbound by the SMSC"
            self.bound = False
            self.respond(P.UNBIND_RESP, pdu.seq)
            self._flush()
            if self._transport is not None:
                self._transport.close()
        else:
            self.respond(P.GENERIC_NACK, pdu.seq, P.ESME_RINVCMDID)

    async def _keep_alive(self) -> None:
        """enquire_link after ``enquire_link_interval`` of silence; no answer ends the session."""
        interval = self.enquire_link_interval
        while not self.closed:
            idle = self._loop.time() - self._last_rx
            if idle < interval:
                await asyncio.sleep(interval - idle)
                continue
            try:
                await self.request(P.ENQUIRE_LINK, b"")
            except ResponseTimeout:
                log.warning("%s: enquire_link unanswered; dropping the connection", self.name)
                self.abort("enquire_link unanswered")
                return
            except SessionClosed:
                return


def _no_response(command_id: int, seq: int) -> str:
    return f"no response to {P.COMMAND_NAMES.get(command_id, hex(command_id))} seq {seq}"
