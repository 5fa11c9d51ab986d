"""The server side of the SMSC simulator: one ESME connection, and what it records.

Kept apart from ``simulator.py`` (the simulator's API and command line); every decision
is the simulator's (``SmscSimulator.handle``), a connection only frames and writes. A
connection knows the simulator only as the :class:`Smsc` it reports to, so this module
does not import ``simulator.py``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol, cast

from connectors.smpp import pdu as P
from connectors.smpp.content import Received

# The receipt's stat word → its message_state TLV value (SMPP 3.4 §5.2.28).
STATES = {
    "DELIVRD": 2,
    "EXPIRED": 3,
    "DELETED": 4,
    "UNDELIV": 5,
    "ACCEPTD": 6,
    "UNKNOWN": 7,
    "REJECTD": 8,
    "ENROUTE": 1,
}


@dataclass(slots=True)
class Submitted:
    """One submit_sm the simulator accepted (or refused: ``status`` != 0)."""

    message_id: str
    status: int
    pdu: P.Pdu
    content: Received | None
    system_id: str

    @property
    def text(self) -> str:
        """The part's text, decoded."""
        return self.content.text if self.content else ""


@dataclass(slots=True)
class Pending:
    """A deliver_sm waiting for a bound receiver and its deliver_sm_resp."""

    fields: dict[str, object]
    tlvs: bytes
    kind: str  # "receipt" or "mo"
    attempts: int = 0


@dataclass(slots=True)
class Faults:
    """The fault modes armed by the simulator's API."""

    throttle: int = 0
    reject: deque[int] = field(default_factory=deque)
    drop: int = 0
    drop_accept: bool = True
    mute: int = 0


class Smsc(Protocol):
    """What a connection reports to (``SmscSimulator``)."""

    conns: set[Conn]
    malformed: int

    def handle(self, conn: Conn, pdu: P.Pdu) -> None:
        """Decide and answer one PDU the ESME sent."""
        ...

    def queue_delivery(self, pending: Pending) -> None:
        """Deliver ``pending`` (again) once a receiver is bound."""
        ...


class Conn(asyncio.Protocol):
    """One ESME connection."""

    def __init__(self, sim: Smsc) -> None:
        self.sim = sim
        self.transport: asyncio.Transport | None = None
        self.framer = P.Framer()
        self.system_id = ""
        self.mode = ""  # "trx", "tx", "rx" once bound
        self.seq = itertools.count(1)
        self.out: list[bytes] = []
        self.inflight: dict[int, Pending] = {}

    @property
    def receives(self) -> bool:
        """Bound to receive deliver_sm."""
        return self.mode in ("trx", "rx") and self.transport is not None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Count the connection in."""
        # A stream transport; uvloop's TCPTransport does not subclass asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self.sim.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """Count it out; what it left unanswered is delivered again."""
        self.transport = None
        self.sim.conns.discard(self)
        for pending in self.inflight.values():  # never answered: deliver again later
            self.sim.queue_delivery(pending)
        self.inflight.clear()

    def write(self, data: bytes) -> None:
        """Queue a PDU; everything queued in one loop tick leaves together."""
        if not self.out:
            asyncio.get_running_loop().call_soon(self.flush)
        self.out.append(data)

    def flush(self) -> None:
        """Write what is queued."""
        if self.transport is not None and self.out:
            self.transport.write(b"".join(self.out))
        self.out.clear()

    def answer(self, req: P.Pdu, status: int = 0, fields: dict[str, object] | None = None) -> None:
        """Respond to ``req``."""
        self.write(P.encode(req.command_id | P.RESP, req.seq, fields, status))

    def data_received(self, data: bytes) -> None:
        """Frame, decode and hand every PDU to the simulator."""
        try:
            frames = self.framer.feed(data)
        except P.PduError as exc:
            self.write(P.encode(P.GENERIC_NACK, exc.seq, status=exc.status))
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        for frame in frames:
            try:
                pdu = P.decode(frame)
            except P.PduError as exc:
                self.sim.malformed += 1
                if not exc.command_id & P.RESP:
                    self.write(P.encode(P.GENERIC_NACK, exc.seq, status=exc.status))
                continue
            self.sim.handle(self, pdu)
            if self.transport is None:
                return

    def deliver(self, pending: Pending) -> None:
        """Send a deliver_sm and remember it until answered."""
        seq = next(self.seq)
        pending.attempts += 1
        self.inflight[seq] = pending
        self.write(P.encode(P.DELIVER_SM, seq, pending.fields, tlvs=pending.tlvs))
