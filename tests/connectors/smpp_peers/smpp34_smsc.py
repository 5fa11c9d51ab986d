"""A second independent SMSC for the gateway's tests, on the ``smpp34`` package's Server
(PyPI; a Rust SMPP 3.4 engine). It speaks the same command line and the same JSON-lines
control protocol as ``node/smsc.js`` (see there), within what smpp34 1.5.0 lets a server do:

- no authentication: smpp34 answers every bind itself, before the application sees it,
  and tells only the system_id (never the password, the system_type or the bind command);
- ``submit_sm`` events carry no sequence_number, priority_flag, schedule_delivery_time,
  validity_period, replace_if_present_flag or sm_default_msg_id (recorded as null);
- enquire_link is answered inside smpp34 (not recorded); it sends its own every 30 s;
- an ``unbind`` is not answered with unbind_resp: smpp34 closes the connection;
- ``close_sessions`` can only unbind (smpp34 has no way to drop a connection abruptly).

Run: ``python -m tests.connectors.smpp_peers.smpp34_smsc --port N [options]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import smpp34

from tests.connectors.smpp_peers import gsm

ESME_ROK = 0x00
ESME_RTHROTTLED = 0x58
TLV_RECEIPTED_MESSAGE_ID = 0x001E
TLV_MESSAGE_STATE = 0x0427


def emit(obj: dict[str, Any]) -> None:
    """One event line on stdout, flushed before the PDU that answers it goes out."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def smpp_date(t: float) -> str:
    """YYMMDDhhmm in UTC."""
    return time.strftime("%y%m%d%H%M", time.gmtime(t))


def printable(text: str) -> str:
    """The receipt's ``text:`` field is ASCII; anything else shows as a dot."""
    return "".join(ch if " " <= ch <= "~" else "." for ch in text)


def decode_text(body: bytes, data_coding: int) -> str | None:
    """The text of a body, for the record (the peer's own GSM table, UTF-16-BE for UCS-2)."""
    if data_coding == 8:
        return body.decode("utf-16-be", errors="replace")
    if data_coding in (0, 1):
        return gsm.decode(body)
    if data_coding == 3:
        return body.decode("latin-1")
    return None


@dataclass
class Owed:
    """A receipt the SMSC owes."""

    id: str
    m: dict[str, Any]
    state: str = "pending"
    due: float = 0.0
    session: str | None = None


@dataclass
class Smsc:
    """The SMSC's state: sessions, owed receipts, test controls."""

    args: argparse.Namespace
    server: smpp34.Server
    esmes: dict[str, smpp34.Esme] = field(default_factory=dict)
    owed: dict[str, Owed] = field(default_factory=dict)
    next_id: int = 0
    throttle: int = 0
    throttle_status: int = ESME_RTHROTTLED
    crash_after: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def journal(self, rec: dict[str, Any]) -> None:
        """Append one record before the answer goes out (survives SIGKILL)."""
        if self.args.journal:
            with open(self.args.journal, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec) + "\n")

    def load(self) -> None:
        """Take over what a previous incarnation owed (same journal)."""
        self.next_id = 0x20000000 + random.randrange(0x1000000)
        path = self.args.journal
        if not path or not Path(path).exists():
            return
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a torn last line
            if "n" in rec:
                self.next_id = max(self.next_id, rec["n"] + 1)
            if "a" in rec:
                self.owed[rec["a"]] = Owed(rec["a"], rec["m"])
            elif "r" in rec:
                self.owed.pop(rec["r"], None)

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` as a task that is kept alive until it ends."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def serve(self) -> None:
        """Handle server events until cancelled."""
        while True:
            ev = await self.server.next()
            if isinstance(ev, smpp34.Esme):
                self.esmes[ev.session_id] = ev
                emit(
                    {
                        "event": "bind",
                        "session": ev.session_id,
                        "command": None,
                        "system_id": ev.system_id,
                        "can_receive": ev.can_receive,
                        "status": 0,
                    }
                )
                self.wake.set()
            elif isinstance(ev, smpp34.Unbound):
                self.esmes.pop(ev.session_id, None)
                for o in self.owed.values():
                    if o.state == "inflight" and o.session == ev.session_id:
                        o.state = "pending"
                emit({"event": "closed", "session": ev.session_id})
                self.wake.set()
            elif isinstance(ev, smpp34.SubmitSmEvent):
                self.submit(ev)

    def submit(self, ev: smpp34.SubmitSmEvent) -> None:
        """Record, journal and answer one submit_sm."""
        if self.crash_after > 0:
            self.crash_after -= 1
            if self.crash_after == 0:
                emit({"event": "crashing", "session": ev.session_id})
                # smpp34 writes the answers already decided on its own threads: let them
                # go out, so that every submit_sm recorded as accepted was answered.
                time.sleep(0.05)
                os.kill(os.getpid(), signal.SIGKILL)
        sm = ev.short_message
        udh, body = None, sm
        if ev.esm_class & 0x40 and sm:
            udh, body = sm[: sm[0] + 1], sm[sm[0] + 1 :]
        tlvs = {f"0x{t.tag:04x}": t.value.hex() for t in ev.tlvs}
        payload = next((t.value for t in ev.tlvs if t.tag == 0x0424), b"")
        text_bytes = payload or body
        text = decode_text(text_bytes, ev.data_coding)
        status = ESME_ROK
        if self.throttle > 0:
            self.throttle -= 1
            status = self.throttle_status
        num = self.next_id if status == ESME_ROK else None
        message_id = f"{num:x}" if num is not None else ""
        if num is not None:
            self.next_id += 1
        if not self.args.quiet or status != ESME_ROK:
            emit(
                {
                    "event": "submit_sm",
                    "session": ev.session_id,
                    "sequence_number": None,
                    "status": status,
                    "message_id": message_id or None,
                    "service_type": ev.service_type,
                    "source_addr_ton": ev.source_addr_ton,
                    "source_addr_npi": ev.source_addr_npi,
                    "source_addr": ev.source_addr,
                    "dest_addr_ton": ev.dest_addr_ton,
                    "dest_addr_npi": ev.dest_addr_npi,
                    "destination_addr": ev.destination_addr,
                    "esm_class": ev.esm_class,
                    "protocol_id": ev.protocol_id,
                    "priority_flag": None,
                    "schedule_delivery_time": None,
                    "validity_period": None,
                    "registered_delivery": ev.registered_delivery,
                    "replace_if_present_flag": None,
                    "data_coding": ev.data_coding,
                    "sm_default_msg_id": None,
                    "short_message": sm.hex(),
                    "udh": udh.hex() if udh is not None else None,
                    "body": body.hex(),
                    "text": text,
                    "tlvs": tlvs,
                }
            )
        if num is None:
            ev.reject(status)
            return
        if ev.registered_delivery & 0x03:
            esme = self.esmes.get(ev.session_id)
            m = {
                "src": ev.source_addr,
                "dst": ev.destination_addr,
                "srcTon": ev.source_addr_ton,
                "srcNpi": ev.source_addr_npi,
                "dstTon": ev.dest_addr_ton,
                "dstNpi": ev.dest_addr_npi,
                "submitDate": smpp_date(time.time()),
                "text20": printable(text or "")[:20],
                "systemId": esme.system_id if esme is not None else "",
            }
            self.journal({"a": message_id, "n": num, "m": m})
            due = time.monotonic() + self.args.receipt_delay_ms / 1000
            self.owed[message_id] = Owed(message_id, m, due=due)
            self.wake.set()
        else:
            self.journal({"n": num})
        ev.accept(message_id)

    def receiver(self, system_id: str) -> smpp34.Esme | None:
        """A bound session of ``system_id`` that can take deliver_sm."""
        ready = [e for e in self.esmes.values() if e.can_receive and e.system_id == system_id]
        return random.choice(ready) if ready else None

    async def pump(self) -> None:
        """Send every owed receipt that is due to a session that can take it."""
        while True:
            now = time.monotonic()
            nxt = now + 1.0
            for o in list(self.owed.values()):
                if o.state != "pending":
                    continue
                if o.due > now:
                    nxt = min(nxt, o.due)
                    continue
                esme = self.receiver(o.m["systemId"])
                if esme is None:
                    continue
                o.state, o.session = "inflight", esme.session_id
                self.spawn(self.send_receipt(esme, o))
            self.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), max(0.001, nxt - time.monotonic()))

    async def send_receipt(self, esme: smpp34.Esme, o: Owed) -> None:
        """One receipt in the standard text form (plus TLVs with --receipt-tlvs)."""
        a = self.args
        m = o.m
        shown = str(int(o.id, 16)) if a.receipt_id_decimal else o.id
        dlvrd = "001" if a.receipt_stat == "DELIVRD" else "000"
        text = (
            f"id:{shown} sub:001 dlvrd:{dlvrd} submit date:{m['submitDate']} "
            f"done date:{smpp_date(time.time())} stat:{a.receipt_stat} err:{a.receipt_err} "
            f"text:{m['text20']}"
        )
        tlvs = []
        if a.receipt_tlvs:
            state = 2 if a.receipt_stat == "DELIVRD" else 5
            tlvs = [
                smpp34.Tlv(TLV_RECEIPTED_MESSAGE_ID, o.id.encode() + b"\0"),
                smpp34.Tlv(TLV_MESSAGE_STATE, bytes([state])),
            ]
        try:
            resp = await esme.deliver_sm(
                m["src"],
                text.encode("ascii"),
                source_addr=m["dst"],
                source_addr_ton=m["dstTon"],
                source_addr_npi=m["dstNpi"],
                dest_addr_ton=m["srcTon"],
                dest_addr_npi=m["srcNpi"],
                esm_class=0x04,
                tlvs=tlvs,
            )
            status = resp.command_status
        except Exception as exc:  # the session went away: the receipt is owed again
            emit({"event": "receipt_error", "message_id": o.id, "error": str(exc)})
            o.state, o.due = "pending", time.monotonic() + 0.2
            self.wake.set()
            return
        emit(
            {
                "event": "receipt",
                "session": esme.session_id,
                "message_id": o.id,
                "text": text,
                "status": status,
            }
        )
        if status == ESME_ROK:
            self.journal({"r": o.id})
            self.owed.pop(o.id, None)
        else:
            o.state, o.due = "pending", time.monotonic() + 0.5
            self.wake.set()

    async def inject(self, cmd: dict[str, Any]) -> None:
        """Send one deliver_sm the test composed (an inbound message or part)."""
        # Like a carrier, hold the message a while for a receiver to bind.
        deadline = time.monotonic() + 10.0
        while (esme := next((e for e in self.esmes.values() if e.can_receive), None)) is None:
            if time.monotonic() > deadline:
                emit({"event": "deliver", "id": cmd.get("id"), "error": "no bound receiver"})
                return
            await asyncio.sleep(0.01)
        tlvs = [
            smpp34.Tlv(int(tag, 16), bytes.fromhex(v)) for tag, v in cmd.get("tlvs", {}).items()
        ]
        try:
            resp = await esme.deliver_sm(
                cmd["destination_addr"],
                bytes.fromhex(cmd.get("short_message", "")),
                source_addr=cmd["source_addr"],
                service_type=cmd.get("service_type", ""),
                source_addr_ton=cmd.get("source_addr_ton", 1),
                source_addr_npi=cmd.get("source_addr_npi", 1),
                dest_addr_ton=cmd.get("dest_addr_ton", 1),
                dest_addr_npi=cmd.get("dest_addr_npi", 1),
                esm_class=cmd.get("esm_class", 0),
                data_coding=cmd.get("data_coding", 0),
                tlvs=tlvs,
            )
        except Exception as exc:
            emit({"event": "deliver", "id": cmd.get("id"), "error": str(exc)})
            return
        emit(
            {
                "event": "deliver",
                "id": cmd.get("id"),
                "session": esme.session_id,
                "status": resp.command_status,
            }
        )

    async def control(self, line: str) -> None:
        """One command from the test."""
        try:
            cmd = json.loads(line)
        except ValueError:
            emit({"event": "error", "error": f"bad control line: {line}"})
            return
        name = cmd.get("cmd")
        a = self.args
        if name == "deliver":
            self.spawn(self.inject(cmd))
        elif name == "throttle":
            self.throttle = cmd.get("count", 1)
            self.throttle_status = cmd.get("status", ESME_RTHROTTLED)
        elif name == "crash_after":
            self.crash_after = cmd.get("submits", 1)
        elif name == "close_sessions":
            for esme in list(self.esmes.values()):
                with contextlib.suppress(Exception):
                    await esme.unbind()
        elif name == "set":
            a.receipt_stat = cmd.get("receipt_stat", a.receipt_stat)
            a.receipt_err = cmd.get("receipt_err", a.receipt_err)
            a.receipt_delay_ms = cmd.get("receipt_delay_ms", a.receipt_delay_ms)
            a.receipt_tlvs = bool(cmd.get("receipt_tlvs", a.receipt_tlvs))
        elif name != "ping":
            emit({"event": "error", "error": f"unknown command {name}"})
            return
        emit({"event": "pong", "id": cmd.get("id"), "cmd": name})


def read_stdin(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None]) -> None:
    """Feed stdin lines to the loop; None at end of input (the test is done with us)."""
    for line in sys.stdin:
        loop.call_soon_threadsafe(queue.put_nowait, line)
    loop.call_soon_threadsafe(queue.put_nowait, None)


async def main(args: argparse.Namespace) -> None:
    """Serve until stdin closes or SIGTERM."""
    server = smpp34.Server(host=args.host, port=args.port, system_id="SMPP34SMSC")
    smsc = Smsc(args, server)
    smsc.load()
    await server.start()
    emit(
        {
            "event": "listening",
            "port": args.port,
            "pid": os.getpid(),
            "pending_receipts": len(smsc.owed),
        }
    )
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(target=read_stdin, args=(loop, queue), daemon=True).start()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    smsc.spawn(smsc.serve())
    smsc.spawn(smsc.pump())

    async def commands() -> None:
        while (line := await queue.get()) is not None:
            await smsc.control(line)
        stop.set()

    smsc.spawn(commands())
    await stop.wait()
    for task in list(smsc.tasks):
        task.cancel()
    await server.stop()


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line shared with node/smsc.js."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--system-id", default="gateway", help="ignored: smpp34 cannot authenticate")
    p.add_argument("--password", default="secret", help="ignored: smpp34 cannot authenticate")
    p.add_argument("--journal")
    p.add_argument("--receipt-delay-ms", type=float, default=100)
    p.add_argument("--receipt-tlvs", action="store_true")
    p.add_argument("--receipt-id-decimal", action="store_true")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    args.receipt_stat, args.receipt_err = "DELIVRD", "000"
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
