"""An SMSC simulator: a real SMPP 3.4 server for tests, benchmarks and ``gateway demo``.

In-process::

    sim = SmscSimulator(system_id="gw", password="secret", receipt_delay=0.2)
    await sim.start()            # sim.port: a free loopback port unless one was given
    ...                          # sim.submits records every submit_sm it answered
    sim.inject("+4917612345678", "+4915112345671", "Hallo", order=[2, 1])
    sim.throttle(3); sim.reject(0x0B); sim.drop_on_submit(); await sim.drop_connections()
    SmscSimulator(loop_numbers=["+4915112345672"])  # an SMS to it comes back inbound
    await sim.stop()             # and ``await sim.start()`` again on the same port

Out of process: ``python -m connectors.smpp.simulator --port P --system-id X
--password Y --receipt-delay S``.

Message ids are upper-case hex in submit_sm_resp and decimal in the text of receipts (as
some SMSCs do), with the hex id in the receipted_message_id TLV (``receipt_tlvs``).
Unanswered or refused deliver_sm are delivered again, as a real SMSC would.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import signal
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from connectors.smpp import gsm7
from connectors.smpp import pdu as P
from connectors.smpp.content import Received, dest_address, read_deliver
from connectors.smpp.smsc import STATES, Conn, Faults, Pending, Submitted
from connectors.smpp.udh import UDHI, concat_8
from gateway.clock import Clock, SystemClock
from gateway.units import split_sms


class SmscSimulator:
    """A scriptable SMSC (see the module docstring)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        system_id: str = "gateway",
        password: str = "secret",
        receipt_delay: float = 0.5,
        receipt_tlvs: bool = True,
        receipt_stat: str = "DELIVRD",
        redeliver_delay: float = 0.5,
        record: bool = True,
        clock: Clock | None = None,
        loop_numbers: Sequence[str] = (),
    ) -> None:
        self.host, self.port = host, port
        self.clock = clock or SystemClock()
        self.system_id, self.password = system_id, password
        self.receipt_delay = receipt_delay
        self.receipt_tlvs = receipt_tlvs
        self.receipt_stat = receipt_stat
        self.redeliver_delay = redeliver_delay
        self.record = record
        self.stat_for: dict[str, str] = {}  # destination (E.164) → receipt stat word
        # Numbers the ESME itself hosts (E.164): an SMS to one also comes back as an
        # inbound deliver_sm, as it would from the network.
        self.loop_numbers = set(loop_numbers)
        self.submits: list[Submitted] = []
        self.accepted = 0
        self.malformed = 0
        self.binds: list[tuple[str, int]] = []  # (system_id, status) of every bind
        self.most_bound = 0  # the most connections bound at once
        self.delivered_on: list[tuple[str, int]] = []  # (kind, id of the connection)
        self._turn = 0  # deliveries rotate over the equally idle receivers
        self.deliver_results: list[tuple[str, int]] = []  # (kind, deliver_sm_resp status)
        self._ids = itertools.count(0x1A2B3C00)
        self._faults = Faults()
        self._undelivered: deque[Pending] = deque()
        self.conns: set[Conn] = set()
        self._server: asyncio.Server | None = None
        self._mo_ref = itertools.count(1)
        self._minute = (-1, "")

    # -- life cycle ----------------------------------------------------------------------
    async def start(self) -> None:
        """Listen (again) on ``host:port``; with port 0 a free port is chosen once."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Conn(self), self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop every connection (an SMSC crash, as ESMEs see it)."""
        if self._server is not None:
            self._server.close()
            await self.drop_connections()
            await self._server.wait_closed()
            self._server = None

    aclose = stop

    async def drop_connections(self) -> None:
        """Abort every open connection."""
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.abort()
        await asyncio.sleep(0)

    @property
    def bound(self) -> int:
        """Connections bound right now."""
        return sum(1 for c in self.conns if c.mode)

    # -- faults --------------------------------------------------------------------------
    def throttle(self, n: int) -> None:
        """Answer the next ``n`` submit_sm with ESME_RTHROTTLED."""
        self._faults.throttle += n

    def reject(self, status: int, n: int = 1, *, after: int = 0) -> None:
        """Answer ``n`` submit_sm with ``status``, after letting ``after`` others pass."""
        self._faults.reject.extend([P.ESME_ROK] * after + [status] * n)

    def drop_on_submit(self, n: int = 1, *, accept: bool = True) -> None:
        """Drop the connection on the next ``n`` submit_sm instead of answering them;
        ``accept``: the SMSC took the message (it is recorded and delivered) or not."""
        self._faults.drop += n
        self._faults.drop_accept = accept

    def mute(self, n: int) -> None:
        """Never answer the next ``n`` submit_sm (nor record them)."""
        self._faults.mute += n

    # -- inbound injection ---------------------------------------------------------------
    def inject(
        self,
        source: str,
        dest: str,
        text: str,
        *,
        parts: int | None = None,
        order: Sequence[int] | None = None,
        concat: str = "udh",
        ref: int | None = None,
    ) -> int:
        """Send ``text`` from ``source`` to ``dest`` as deliver_sm (several with UDH or
        SAR TLVs when it is long or ``parts`` says so), in ``order`` (1-based part
        numbers; default ascending). Returns how many deliver_sm it queued."""
        encoding, chunks = split_sms(text)
        if parts is not None and parts != len(chunks):
            size = -(-len(text) // parts)
            chunks = [text[i : i + size] for i in range(0, len(text), size)]
        total = len(chunks)
        if order is not None and not set(order) <= set(range(1, total + 1)):
            raise ValueError(f"order {list(order)}: the message has parts 1 to {total}")
        ref = next(self._mo_ref) & 0xFF if ref is None else ref
        dc = 0 if encoding == "gsm7" else 8
        base: dict[str, object] = {
            "source_addr_ton": 1 if source.startswith("+") else 5,
            "source_addr_npi": 1 if source.startswith("+") else 0,
            "source_addr": dest_address(source),
            "dest_addr_ton": 1,
            "dest_addr_npi": 1,
            "destination_addr": dest_address(dest),
            "data_coding": dc,
        }
        for i in order or range(1, total + 1):
            body = gsm7.encode(chunks[i - 1]) if dc == 0 else chunks[i - 1].encode("utf-16-be")
            fields, tlvs = dict(base), b""
            if total > 1 and concat == "udh":
                fields["esm_class"] = UDHI
                body = concat_8(ref, total, i) + body
            elif total > 1:
                tlvs = (
                    P.tlv_u16(P.TAG_SAR_MSG_REF_NUM, ref)
                    + P.tlv_u8(P.TAG_SAR_TOTAL_SEGMENTS, total)
                    + P.tlv_u8(P.TAG_SAR_SEGMENT_SEQNUM, i)
                )
            fields["short_message"] = body
            self.queue_delivery(Pending(fields, tlvs, "mo"))
        return len(order or range(total))

    # -- handling ------------------------------------------------------------------------
    def handle(self, conn: Conn, pdu: P.Pdu) -> None:
        """Act on one PDU a connection received."""
        cid = pdu.command_id
        if cid in (P.BIND_TRANSCEIVER, P.BIND_TRANSMITTER, P.BIND_RECEIVER):
            self._bind(conn, pdu)
        elif cid == P.SUBMIT_SM:
            self._submit(conn, pdu)
        elif cid == P.DELIVER_SM_RESP:
            pending = conn.inflight.pop(pdu.seq, None)
            if pending is not None:
                self.deliver_results.append((pending.kind, pdu.status))
                if pdu.status != P.ESME_ROK:
                    asyncio.get_running_loop().call_later(
                        self.redeliver_delay, self.queue_delivery, pending
                    )
        elif cid == P.ENQUIRE_LINK:
            conn.answer(pdu)
        elif cid == P.UNBIND:
            conn.answer(pdu)
            conn.flush()
            conn.mode = ""
            if conn.transport is not None:
                conn.transport.close()
        elif cid == P.GENERIC_NACK or cid & P.RESP:
            pass
        else:
            conn.write(P.encode(P.GENERIC_NACK, pdu.seq, status=P.ESME_RINVCMDID))

    def _bind(self, conn: Conn, pdu: P.Pdu) -> None:
        if conn.mode:
            status = P.ESME_RALYBND
        elif pdu.fields.get("system_id") != self.system_id:
            status = P.ESME_RINVSYSID
        elif pdu.fields.get("password") != self.password:
            status = P.ESME_RINVPASWD
        else:
            status = P.ESME_ROK
        self.binds.append((str(pdu.fields.get("system_id")), status))
        conn.answer(pdu, status, {"system_id": "SMSCSIM"} if status == 0 else None)
        if status == P.ESME_ROK:
            conn.system_id = self.system_id
            conn.mode = {P.BIND_TRANSCEIVER: "trx", P.BIND_TRANSMITTER: "tx"}.get(
                pdu.command_id, "rx"
            )
            self.most_bound = max(self.most_bound, self.bound)
            self._flush_undelivered()

    def _submit(self, conn: Conn, pdu: P.Pdu) -> None:
        f = self._faults
        if conn.mode not in ("trx", "tx"):
            conn.answer(pdu, P.ESME_RINVBNDSTS)
            return
        if f.mute:
            f.mute -= 1
            return
        status = P.ESME_ROK
        if f.drop:
            f.drop -= 1
            if f.drop_accept:
                self._accept(conn, pdu)
            if conn.transport is not None:
                conn.transport.abort()
            return
        if f.throttle:
            f.throttle -= 1
            status = P.ESME_RTHROTTLED
        elif f.reject:
            status = f.reject.popleft()
        if status != P.ESME_ROK:
            if self.record:
                self.submits.append(Submitted("", status, pdu, None, conn.system_id))
            conn.answer(pdu, status)
            return
        message_id = self._accept(conn, pdu)
        conn.answer(pdu, P.ESME_ROK, {"message_id": message_id})

    def _accept(self, conn: Conn, pdu: P.Pdu) -> str:
        n = next(self._ids)
        message_id = f"{n:08X}"
        self.accepted += 1
        content: Received | None = None
        if self.record:
            with contextlib.suppress(ValueError):
                content = read_deliver(pdu, packed=False)
            self.submits.append(Submitted(message_id, 0, pdu, content, conn.system_id))
        if "+" + str(pdu.fields.get("destination_addr", "")) in self.loop_numbers:
            fields = {
                **pdu.fields,
                "registered_delivery": 0,
                "esm_class": pdu.fields.get("esm_class", 0) & UDHI,
            }
            tlvs = b"".join(P.tlv(tag, value) for tag, value in pdu.tlvs.items())
            self.queue_delivery(Pending(fields, tlvs, "mo"))
        if int(pdu.fields.get("registered_delivery", 0)) & 0x03:
            asyncio.get_running_loop().call_later(
                self.receipt_delay, self._receipt, pdu, n, message_id, self._date()
            )
        return message_id

    def _date(self) -> str:
        """Now as a receipt writes it (YYMMDDhhmm), formatted once per minute."""
        now = self.clock.now()
        minute = int(now.timestamp()) // 60
        if minute != self._minute[0]:
            self._minute = (minute, now.strftime("%y%m%d%H%M"))
        return self._minute[1]

    def _receipt(self, sub: P.Pdu, n: int, message_id: str, sub_date: str) -> None:
        f = sub.fields
        dest = "+" + str(f.get("destination_addr", ""))
        stat = self.stat_for.get(dest, self.receipt_stat)
        done = self._date()
        ok = stat == "DELIVRD"
        text = (
            f"id:{n:010d} sub:001 dlvrd:{'001' if ok else '000'} submit date:{sub_date} "
            f"done date:{done} stat:{stat} err:{'000' if ok else '001'} text:"
        )
        tlvs = b""
        if self.receipt_tlvs:
            tlvs = P.tlv(P.TAG_RECEIPTED_MESSAGE_ID, message_id.encode() + b"\x00") + P.tlv_u8(
                P.TAG_MESSAGE_STATE, STATES.get(stat, 7)
            )
        fields: dict[str, object] = {
            "source_addr_ton": f.get("dest_addr_ton", 1),
            "source_addr_npi": f.get("dest_addr_npi", 1),
            "source_addr": f.get("destination_addr", ""),
            "dest_addr_ton": f.get("source_addr_ton", 1),
            "dest_addr_npi": f.get("source_addr_npi", 1),
            "destination_addr": f.get("source_addr", ""),
            "esm_class": 0x04,
            "short_message": text.encode("ascii"),
        }
        self.queue_delivery(Pending(fields, tlvs, "receipt"))

    def queue_delivery(self, pending: Pending) -> None:
        """Deliver on the least busy receiving connection (taking turns among equally
        idle ones, as an SMSC spreads its traffic over the binds), or keep until one
        binds."""
        receivers = [c for c in self.conns if c.receives]
        if receivers:
            least = min(len(c.inflight) for c in receivers)
            idle = [c for c in receivers if len(c.inflight) == least]
            self._turn += 1
            chosen = idle[self._turn % len(idle)]
            self.delivered_on.append((pending.kind, id(chosen)))
            chosen.deliver(pending)
        else:
            self._undelivered.append(pending)

    def _flush_undelivered(self) -> None:
        while self._undelivered and any(c.receives for c in self.conns):
            self.queue_delivery(self._undelivered.popleft())

    # -- test helpers --------------------------------------------------------------------
    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll ``predicate`` until true; TimeoutError after ``timeout`` seconds."""
        async with asyncio.timeout(timeout):
            while not predicate():  # noqa: ASYNC110  (any state, also outside the SMSC)
                await asyncio.sleep(0.01)


def main(argv: list[str] | None = None) -> None:
    """``python -m connectors.smpp.simulator``: serve until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description="SMPP 3.4 SMSC simulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2775)
    parser.add_argument("--system-id", default="gateway")
    parser.add_argument("--password", default="secret")
    parser.add_argument("--receipt-delay", type=float, default=0.5)
    parser.add_argument("--no-receipt-tlvs", action="store_true", help="text receipts only")
    parser.add_argument("--receipt-stat", default="DELIVRD", choices=sorted(STATES))
    parser.add_argument(
        "--stats", metavar="FILE", help="on exit, write accepted submits and binds as JSON"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def serve() -> None:
        sim = SmscSimulator(
            host=args.host,
            port=args.port,
            system_id=args.system_id,
            password=args.password,
            receipt_delay=args.receipt_delay,
            receipt_tlvs=not args.no_receipt_tlvs,
            receipt_stat=args.receipt_stat,
            record=False,
        )
        await sim.start()
        print(f"SMSC simulator listening on {args.host}:{sim.port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await sim.stop()
        print(f"accepted {sim.accepted} submit_sm", flush=True)
        if args.stats:
            stats = {"accepted": sim.accepted, "most_bound": sim.most_bound,
                     "binds": len(sim.binds)}  # fmt: skip
            Path(args.stats).write_text(json.dumps(stats), encoding="utf-8")

    asyncio.run(serve())


if __name__ == "__main__":
    main()
