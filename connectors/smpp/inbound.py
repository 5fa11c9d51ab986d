"""What the SMSC delivers: receipts to status reports, messages to the gateway's inbox.

Every deliver_sm is queued and handled by a few worker tasks (so the store's group
commit sees concurrent writes), and answered with deliver_sm_resp only after the gateway
has stored what it carried: ``ESME_ROK``, or ``ESME_RX_T_APPN`` when the gateway failed,
so that the SMSC delivers it again instead of it being lost. A deliver_sm that cannot be
read (a broken UDH, a receipt without id or state) is acknowledged with ``ESME_ROK`` and
logged: a redelivery would not make it readable, and asking for one forever would block
the SMSC's queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from connectors.base import ConnectorContext, InboundMessage, StatusReport
from connectors.smpp import pdu as P
from connectors.smpp import receipt
from connectors.smpp.content import read_deliver
from connectors.smpp.options import SmppOptions
from connectors.smpp.reassembly import Assembled, InboundIds, Reassembler, SharedReassembler
from connectors.smpp.session import Session
from connectors.smpp.tracking import IdStyle, SubmittedIds

log = logging.getLogger("connectors.smpp")


class InboundProcessor:
    """Queue and workers for deliver_sm of every bind of one connector."""

    def __init__(
        self, connector_id: str, ctx: ConnectorContext, opts: SmppOptions, ids: SubmittedIds
    ) -> None:
        self.connector_id = connector_id
        self.ctx = ctx
        self.opts = opts
        self.ids = ids
        self.reassembler = Reassembler(
            opts.reassembly_timeout, max(opts.reassembly_timeout, opts.inbound_dedupe_window)
        )
        # Processes sharing one Redis store: a set's parts may arrive on the binds of
        # several processes, so they are kept in the store (``SharedReassembler``).
        self.shared: SharedReassembler | None = None
        if ctx.shared.spans_processes:
            self.shared = SharedReassembler(
                ctx.shared,
                f"smpp:{connector_id}:",
                opts.reassembly_timeout,
                max(opts.reassembly_timeout, opts.inbound_dedupe_window),
            )
        self.mo_ids = InboundIds(opts.inbound_dedupe_window)
        self.id_style = IdStyle()
        self._queue: asyncio.Queue[tuple[Session, P.Pdu]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start the workers and the sweeper of incomplete sets."""
        if self._tasks:
            return
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._work(), name=f"{self.connector_id}-deliver-{i}")
            for i in range(self.opts.inbound_workers)
        ]
        self._tasks.append(loop.create_task(self._sweep(), name=f"{self.connector_id}-sweep"))

    async def aclose(self) -> None:
        """Stop the workers (deliver_sm not yet answered will be redelivered by the SMSC)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def put(self, session: Session, pdu: P.Pdu) -> None:
        """The session's ``on_deliver``: queue for the workers."""
        self._queue.put_nowait((session, pdu))

    async def _work(self) -> None:
        while True:
            session, pdu = await self._queue.get()
            try:
                status = await self.handle(pdu)
            except Exception:
                log.exception(
                    "%s: deliver_sm seq %d not stored; asking for redelivery",
                    self.connector_id,
                    pdu.seq,
                )
                status = P.ESME_RX_T_APPN
            session.respond(P.DELIVER_SM_RESP, pdu.seq, status, b"\x00")

    async def handle(self, pdu: P.Pdu) -> int:
        """Process one deliver_sm; the status to answer it with."""
        if receipt.is_receipt(pdu):
            await self._receipt(pdu)
        else:
            await self._message(pdu)
        return P.ESME_ROK

    # -- receipts ------------------------------------------------------------------------
    async def _receipt(self, pdu: P.Pdu) -> None:
        sm: bytes = pdu.fields.get("short_message", b"") or pdu.tlvs.get(P.TAG_MESSAGE_PAYLOAD, b"")
        text = (
            sm.decode("utf-16-be", "replace")
            if pdu.fields.get("data_coding") == 8
            else (sm.decode("latin-1"))
        )
        r = receipt.parse(pdu, text)
        if r is None:
            # Redelivery would not make it readable: acknowledge and say so.
            log.warning("%s: unreadable delivery receipt %r", self.connector_id, text[:200])
            return
        status = r.status
        if status is None:
            return  # ENROUTE / ACCEPTD: nothing moves
        known = self.ids.lookup(r.message_id)
        if known is not None:
            self.id_style.learn(r.message_id, known)
            await self.ids.released(known, self.opts.response_timeout)
            carrier_id = known
        else:  # sent before a restart, or long ago: spelled as the SMSC spelled the others
            carrier_id = self.id_style.translate(r.message_id)
        # One report; the gateway parks one whose send it has not recorded yet.
        report = StatusReport(
            self.connector_id, carrier_id, status, self.ctx.clock.now(), r.error()
        )
        await self.ctx.sink.status(report)

    # -- inbound messages ----------------------------------------------------------------
    async def _message(self, pdu: P.Pdu) -> None:
        try:
            received = read_deliver(pdu, self.opts.gsm7_packing)
        except ValueError as exc:
            log.warning("%s: unreadable deliver_sm dropped: %s (%r)", self.connector_id, exc, pdu)
            return
        now = asyncio.get_running_loop().time()
        if self.shared is not None:
            whole = await self.shared.add(received)
        else:
            whole = self.reassembler.add(received, now)
        if whole is not None:
            await self._deliver(whole, now)

    async def _deliver(self, a: Assembled, now: float) -> None:
        meta: dict[str, object] = {}
        if a.missing:
            meta = {"incomplete": True, "missing_parts": a.missing}
        elif a.late_part is not None:
            meta = {"late_part": a.late_part}
        wall = self.ctx.clock.now()
        message = InboundMessage(
            connector_id=self.connector_id,
            channel="sms",
            carrier_id=self.mo_ids.carrier_id(a, now, wall),
            from_=a.source,
            to=a.dest,
            text=a.text,
            received_at=wall,
            segments=a.segments,
            meta=meta,
        )
        await self.ctx.sink.inbound(message)
        if self.shared is not None:
            await self.shared.done(a)
        else:
            self.reassembler.done(a.key, now)

    async def _sweep(self) -> None:
        """Deliver what arrived of sets that stayed incomplete past the timeout."""
        interval = min(5.0, max(0.05, self.opts.reassembly_timeout / 4))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            try:
                expired = (
                    await self.shared.expired()
                    if self.shared is not None
                    else self.reassembler.expired(now)
                )
            except Exception:
                log.exception("%s: cannot look for incomplete messages", self.connector_id)
                continue
            for a in expired:
                log.warning(
                    "%s: concatenated message from %s incomplete after %.0f s "
                    "(missing parts %s); delivering what arrived",
                    self.connector_id,
                    a.source,
                    self.opts.reassembly_timeout,
                    a.missing,
                )
                try:
                    await self._deliver(a, now)
                except Exception:
                    log.exception(
                        "%s: incomplete message not stored; trying again", self.connector_id
                    )
                    if self.shared is not None:
                        with contextlib.suppress(Exception):
                            await self.shared.failed(a)
