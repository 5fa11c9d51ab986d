"""A hand-written minimal ESME (struct over asyncio streams) to prove the test SMSCs work
on their own, without the gateway's SMPP stack."""

from __future__ import annotations

import asyncio
import contextlib
import struct
from dataclasses import dataclass, field

BIND_TRANSCEIVER = 0x00000009
BIND_TRANSMITTER = 0x00000002
SUBMIT_SM = 0x00000004
DELIVER_SM = 0x00000005
UNBIND = 0x00000006
ENQUIRE_LINK = 0x00000015
RESP = 0x80000000


def cstring(text: str) -> bytes:
    """A C-octet string."""
    return text.encode("ascii") + b"\0"


def take_cstring(body: bytes, at: int) -> tuple[str, int]:
    """The C-octet string at ``at`` and the offset after it."""
    end = body.index(b"\0", at)
    return body[at:end].decode("latin-1"), end + 1


@dataclass
class Pdu:
    """One PDU off the wire."""

    command_id: int
    status: int
    sequence: int
    body: bytes


@dataclass
class DeliverSm:
    """The fields of a deliver_sm the tests look at."""

    source_addr: str
    destination_addr: str
    esm_class: int
    data_coding: int
    short_message: bytes
    tlvs: dict[int, bytes] = field(default_factory=dict)


def parse_deliver_sm(body: bytes) -> DeliverSm:
    """Decode the body of a deliver_sm (SMPP 3.4 field order)."""
    at = 0
    _, at = take_cstring(body, at)  # service_type
    at += 2  # source TON/NPI
    source, at = take_cstring(body, at)
    at += 2
    dest, at = take_cstring(body, at)
    esm_class = body[at]
    at += 3  # esm_class, protocol_id, priority_flag
    _, at = take_cstring(body, at)  # schedule_delivery_time
    _, at = take_cstring(body, at)  # validity_period
    at += 2  # registered_delivery, replace_if_present_flag
    data_coding = body[at]
    at += 2  # data_coding, sm_default_msg_id
    length = body[at]
    sm = body[at + 1 : at + 1 + length]
    at += 1 + length
    tlvs = {}
    while at + 4 <= len(body):
        tag, ln = struct.unpack_from(">HH", body, at)
        tlvs[tag] = body[at + 4 : at + 4 + ln]
        at += 4 + ln
    return DeliverSm(source, dest, esm_class, data_coding, sm, tlvs)


class RawEsme:
    """Bind, submit, and collect deliver_sm (answered at once)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.seq = 0
        self.delivered: list[DeliverSm] = []
        self.pending: dict[int, asyncio.Future[Pdu]] = {}
        self.closed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, port: int) -> RawEsme:
        """A TCP connection to 127.0.0.1:port."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while True:
                head = await self.reader.readexactly(16)
                length, cid, status, seq = struct.unpack(">IIII", head)
                body = await self.reader.readexactly(length - 16)
                pdu = Pdu(cid, status, seq, body)
                if cid & RESP:
                    fut = self.pending.pop(seq, None)
                    if fut is not None and not fut.done():
                        fut.set_result(pdu)
                elif cid == DELIVER_SM:
                    self.delivered.append(parse_deliver_sm(body))
                    self._write(DELIVER_SM | RESP, seq, b"\0")
                elif cid == ENQUIRE_LINK:
                    self._write(ENQUIRE_LINK | RESP, seq, b"")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
            for fut in self.pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection closed"))

    def _write(self, cid: int, seq: int, body: bytes, status: int = 0) -> None:
        self.writer.write(struct.pack(">IIII", 16 + len(body), cid, status, seq) + body)

    async def request(self, cid: int, body: bytes = b"", timeout: float = 10.0) -> Pdu:
        """Send a request and wait for its response."""
        self.seq += 1
        fut: asyncio.Future[Pdu] = asyncio.get_running_loop().create_future()
        self.pending[self.seq] = fut
        self._write(cid, self.seq, body)
        await self.writer.drain()
        return await asyncio.wait_for(fut, timeout)

    async def bind(self, system_id: str, password: str, cid: int = BIND_TRANSCEIVER) -> Pdu:
        """bind_transceiver (or ``cid``), interface version 3.4, TON/NPI 0."""
        body = cstring(system_id) + cstring(password) + cstring("") + b"\x34\x00\x00" + b"\0"
        return await self.request(cid, body)

    async def submit(
        self,
        destination: str,
        short_message: bytes,
        *,
        source: str = "4915112345671",
        esm_class: int = 0,
        data_coding: int = 0,
        registered_delivery: int = 1,
        tlvs: bytes = b"",
    ) -> Pdu:
        """submit_sm with international TON/NPI on both addresses."""
        body = (
            cstring("")
            + b"\x01\x01"
            + cstring(source)
            + b"\x01\x01"
            + cstring(destination)
            + bytes([esm_class, 0, 0])
            + cstring("")
            + cstring("")
            + bytes([registered_delivery, 0, data_coding, 0, len(short_message)])
            + short_message
            + tlvs
        )
        return await self.request(SUBMIT_SM, body)

    async def wait_delivered(self, count: int, timeout: float = 10.0) -> list[DeliverSm]:
        """Wait until ``count`` deliver_sm arrived (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(self.delivered) < count:
            if loop.time() > deadline:
                raise AssertionError(f"{len(self.delivered)} of {count} deliver_sm arrived")
            await asyncio.sleep(0.01)
        return self.delivered

    async def close(self) -> None:
        """Close the connection."""
        self.task.cancel()
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
