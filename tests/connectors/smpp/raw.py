"""A scripted SMPP peer for session tests: records what it reads, answers as told."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from connectors.smpp import pdu as P

# A reply rule: given a received PDU, the frames to send back (None: the default answer).
Rule = Callable[[P.Pdu], list[bytes] | None]


class RawPeer:
    """A TCP server on a free loopback port, one connection at a time."""

    def __init__(self) -> None:
        self.received: list[P.Pdu] = []
        self.rule: Rule | None = None
        self.bind_status = P.ESME_ROK
        self.answer_enquire_link = True
        self.writer: asyncio.StreamWriter | None = None
        self.port = 0
        self._server: asyncio.Server | None = None
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def aclose(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def send(self, frame: bytes) -> None:
        assert self.writer is not None
        self.writer.write(frame)

    def received_of(self, command_id: int) -> list[P.Pdu]:
        return [p for p in self.received if p.command_id == command_id]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.connections += 1
        framer = P.Framer()
        try:
            while data := await reader.read(65536):
                for frame in framer.feed(data):
                    pdu = P.decode(frame)
                    self.received.append(pdu)
                    for out in self._answer(pdu):
                        writer.write(out)
        except (ConnectionError, P.PduError):
            pass
        finally:
            writer.close()

    def _answer(self, pdu: P.Pdu) -> list[bytes]:
        if self.rule is not None:
            frames = self.rule(pdu)
            if frames is not None:
                return frames
        cid = pdu.command_id
        if cid == P.BIND_TRANSCEIVER:
            fields = {"system_id": "RAW"} if self.bind_status == 0 else None
            return [P.encode(P.BIND_TRANSCEIVER_RESP, pdu.seq, fields, self.bind_status)]
        if cid == P.ENQUIRE_LINK:
            return [P.encode(P.ENQUIRE_LINK_RESP, pdu.seq)] if self.answer_enquire_link else []
        if cid == P.UNBIND:
            return [P.encode(P.UNBIND_RESP, pdu.seq)]
        if cid == P.SUBMIT_SM:
            return [P.encode(P.SUBMIT_SM_RESP, pdu.seq, {"message_id": f"m{pdu.seq}"})]
        return []
