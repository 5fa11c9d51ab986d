"""The gateway end to end against INDEPENDENT SMSCs (node-smpp, smpp34): the REST API, a
real job worker and the ``smpp`` connector on one side, an SMSC process that records every
PDU on the other.

- POST /v1/messages → one submit_sm → its receipt → GET shows ``delivered``;
- a 3-part GSM-7 and a 3-part UCS-2 message arrive as three submit_sm with the UDH
  05 00 03 <ref> 03 <1..3> and one ref, each part decodable on its own;
- a concatenated SMS sent to a member (parts out of order) arrives as ONE inbound message
  in the member's conversation with that contact;
- the SMSC is SIGKILLed mid-run while 50 messages are sent and restarted: every message is
  accepted by the SMSC exactly once and ends ``delivered``.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import connectors.smpp.connector  # noqa: F401  (registers kind "smpp")
from gateway import dispatch
from gateway.api.app import create_app
from gateway.clock import FrozenClock
from gateway.config import parse_settings
from gateway.process import open_runtime, worker
from gateway.runtime import Runtime
from tests.connectors.smpp_peers import gsm
from tests.connectors.smpp_peers.peers import SmscPeer
from tests.gateway.conftest import CONTACT, MOBILE_A, Seed, auth, seed_directory

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@dataclass
class Gateway:
    """A runtime on SQLite with an smpp connector to ``smsc``, a worker, and an API client."""

    rt: Runtime
    client: httpx.AsyncClient
    seed: Seed
    smsc: SmscPeer

    async def send(self, text: str, to: str = CONTACT) -> dict[str, Any]:
        """POST /v1/messages as Anna (SMS from her mobile); the 202 answer."""
        resp = await self.client.post(
            "/v1/messages",
            json={"channel": "sms", "from": MOBILE_A, "to": to, "text": text},
            headers=auth(self.seed.anna_key),
        )
        assert resp.status_code == 202, resp.text
        return dict(resp.json())

    async def message(self, message_id: str) -> dict[str, Any]:
        """GET /v1/messages/{id} as Anna."""
        resp = await self.client.get(f"/v1/messages/{message_id}", headers=auth(self.seed.anna_key))
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    async def until(
        self, ids: list[str], check: Callable[[dict[str, Any]], bool], what: str, timeout: float
    ) -> list[dict[str, Any]]:
        """Poll the messages until ``check`` holds for every one (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            views = [await self.message(i) for i in ids]
            if all(check(v) for v in views):
                return views
            if time.monotonic() > deadline:
                states = Counter(v["status"] for v in views)
                raise AssertionError(
                    f"after {timeout} s not every message is {what}: {dict(states)}; "
                    f"connector: {self.rt.health()}; SMSC stderr:\n{self.smsc.stderr()}"
                )
            await anyio.sleep(0.05)


@pytest.fixture
async def gw(smsc: SmscPeer, tmp_path: Path) -> AsyncIterator[Gateway]:
    """The gateway wired to the independent SMSC of this test run."""
    async with GatewayRun(smsc, tmp_path) as g:
        yield g


class GatewayRun:
    """Runtime (SQLite, system clock) + connector + worker + in-process API client."""

    def __init__(self, smsc: SmscPeer, tmp_path: Path, **options: Any) -> None:
        self.smsc = smsc
        self.tmp_path = tmp_path
        self.options = options
        self.stop = asyncio.Event()

    async def __aenter__(self) -> Gateway:
        connector = {
            "id": "smsc",
            "kind": "smpp",
            "channels": ["sms"],
            "host": "127.0.0.1",
            "port": self.smsc.port,
            "system_id": self.smsc.system_id,
            "password": self.smsc.password,
            "reconnect_max": 1.0,
            **self.options,
        }
        settings = parse_settings(
            {
                "gateway": {
                    "store": f"sqlite:///{self.tmp_path}/gateway.db",
                    "blobs": str(self.tmp_path / "blobs"),
                    "poll_interval": 0.05,
                },
                "connectors": [connector],
            }
        )
        self.rt = rt = await open_runtime(settings)
        try:
            await rt.wait_started(15)
            seed = await seed_directory(rt, FrozenClock(datetime.now(UTC)))
            self.worker = asyncio.create_task(worker(rt, concurrency=8).run(self.stop))
            transport = httpx.ASGITransport(app=create_app(rt, workers=False))
            self.client = httpx.AsyncClient(transport=transport, base_url="http://gw.test")
        except BaseException:
            await rt.aclose()
            raise
        return Gateway(rt, self.client, seed, self.smsc)

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.worker, 30)
        await self.client.aclose()
        await self.rt.aclose()


def udh_of(part: dict[str, Any]) -> bytes:
    """The UDH bytes the SMSC recorded for a part."""
    assert part["udh"] is not None, f"no UDH on {part}"
    return bytes.fromhex(part["udh"])


# -- tests -------------------------------------------------------------------------------
async def test_send_reaches_delivered_through_the_receipt(gw: Gateway) -> None:
    sent = await gw.send("Ihr Termin ist morgen um 9 Uhr.")
    [view] = await gw.until([sent["id"]], lambda v: v["status"] == "delivered", "delivered", 20)
    assert [h["status"] for h in view["history"]][-2:] == ["sent", "delivered"]
    [sub] = await gw.smsc.wait_accepted(1)
    assert sub["text"] == "Ihr Termin ist morgen um 9 Uhr."
    assert (sub["source_addr_ton"], sub["source_addr_npi"], sub["source_addr"]) == (
        1,
        1,
        MOBILE_A[1:],
    )
    assert (sub["dest_addr_ton"], sub["dest_addr_npi"], sub["destination_addr"]) == (
        1,
        1,
        CONTACT[1:],
    )
    assert (sub["esm_class"], sub["data_coding"], sub["udh"]) == (0, 0, None)
    assert sub["registered_delivery"] & 0x01
    stored = await gw.rt.store.get_message(sent["id"])
    assert stored is not None and stored.carrier_id == sub["message_id"]
    # The SMSC notes the receipt when the gateway's deliver_sm_resp reaches it.
    await gw.smsc.wait_for(lambda _: bool(gw.smsc.events("receipt", status=0)), "the receipt")
    receipts = gw.smsc.events("receipt")
    assert [(r["message_id"], r["status"]) for r in receipts] == [(sub["message_id"], 0)]


async def test_three_part_gsm7_message_is_three_submit_sm_with_one_udh_ref(gw: Gateway) -> None:
    # 152 septets, then "€" (2 septets: it may not be split, so part 1 holds 152), then
    # more: 152 + 153 + rest = 3 parts.
    text = "a" * 151 + " €" + " Grüße aus Köln, " * 10
    sent = await gw.send(text)
    assert sent["segments"] == 3
    parts = await gw.smsc.wait_accepted(3)
    assert len(parts) == 3
    udhs = [udh_of(p) for p in parts]
    ref = udhs[0][3]
    assert udhs == [bytes([5, 0, 3, ref, 3, i]) for i in (1, 2, 3)]
    for p in parts:
        assert p["esm_class"] & 0x40 and p["data_coding"] == 0
        assert (p["source_addr"], p["destination_addr"]) == (MOBILE_A[1:], CONTACT[1:])
        assert p["registered_delivery"] & 0x01
        body = bytes.fromhex(p["body"])
        assert len(body) <= 153 and not body.endswith(b"\x1b")
        assert gsm.encode(gsm.decode(body)) == body  # every part decodes on its own
    assert len(bytes.fromhex(parts[0]["body"])) == 152
    assert len(bytes.fromhex(parts[1]["body"])) == 153
    assert "".join(gsm.decode(bytes.fromhex(p["body"])) for p in parts) == text
    assert "".join(p["text"] for p in parts) == text  # and so says the SMSC's own decoder
    await gw.until([sent["id"]], lambda v: v["status"] == "delivered", "delivered", 20)
    await gw.smsc.wait_for(lambda _: len(gw.smsc.events("receipt", status=0)) == 3, "receipts")
    receipted = {r["message_id"] for r in gw.smsc.events("receipt", status=0)}
    assert receipted == {p["message_id"] for p in parts}  # one receipt per part


async def test_three_part_ucs2_message_is_three_submit_sm_with_data_coding_8(gw: Gateway) -> None:
    # 66 units, an emoji (a surrogate pair: never split, so part 1 holds 66), then 80 more.
    text = "ж" * 66 + "😀" + "ж" * 80
    sent = await gw.send(text)
    assert (sent["segments"], sent["encoding"]) == (3, "ucs2")
    parts = await gw.smsc.wait_accepted(3)
    assert len(parts) == 3
    udhs = [udh_of(p) for p in parts]
    ref = udhs[0][3]
    assert udhs == [bytes([5, 0, 3, ref, 3, i]) for i in (1, 2, 3)]
    bodies = [bytes.fromhex(p["body"]) for p in parts]
    assert [p["data_coding"] for p in parts] == [8, 8, 8]
    assert all(p["esm_class"] & 0x40 for p in parts)
    assert [len(b) for b in bodies] == [132, 134, 30]
    assert "".join(b.decode("utf-16-be") for b in bodies) == text  # strict: no lone halves
    await gw.until([sent["id"]], lambda v: v["status"] == "delivered", "delivered", 20)


@pytest.mark.parametrize("encoding", ["gsm7", "ucs2"])
async def test_inbound_concatenated_sms_arrives_as_one_message(gw: Gateway, encoding: str) -> None:
    if encoding == "gsm7":
        chunks = ["Hallo Anna, hier ist der erste Teil. ", "Hier der zweite Teil mit € und ä. ",
                  "Und der dritte: Grüße!"]  # fmt: skip
        payloads, dc = [gsm.encode(c) for c in chunks], 0
    else:
        chunks = ["Привет, Анна! ", "Это вторая часть 😀 ", "и третья."]
        payloads, dc = [c.encode("utf-16-be") for c in chunks], 8
    parts = gsm.concat_parts(payloads, ref=0x5C)
    for i in (2, 0, 1):  # out of order, as networks deliver them
        event = await gw.smsc.deliver(
            source_addr=CONTACT[1:],
            destination_addr=MOBILE_A[1:],
            esm_class=0x40,
            data_coding=dc,
            short_message=parts[i],
        )
        assert event["status"] == 0
    headers = auth(gw.seed.anna_key)
    deadline = time.monotonic() + 20
    while True:
        convs = (await gw.client.get("/v1/conversations", headers=headers)).json()["data"]
        conv = next((c for c in convs if c["remote_number"] == CONTACT), None)
        if conv is not None:
            page = await gw.client.get(
                "/v1/messages", params={"conversation_id": conv["id"]}, headers=headers
            )
            messages = page.json()["data"]
            if messages:
                break
        assert time.monotonic() < deadline, "the inbound message never arrived"
        await anyio.sleep(0.05)
    await anyio.sleep(0.3)  # a second message (e.g. an unmerged part) would show by now
    messages = (
        await gw.client.get("/v1/messages", params={"conversation_id": conv["id"]}, headers=headers)
    ).json()["data"]
    assert len(messages) == 1, messages
    [msg] = messages
    assert msg["text"] == "".join(chunks)
    assert (msg["direction"], msg["status"], msg["segments"]) == ("inbound", "received", 3)
    assert (msg["from"], msg["to"], msg["member_id"]) == (CONTACT, MOBILE_A, gw.seed.anna.id)
    assert conv["member_number"] == MOBILE_A


async def test_smsc_killed_and_restarted_mid_run_delivers_every_message_once(
    gw: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A job that meets the connector without a bind waits AUTH_RETRY (60 s) before it is
    # tried again; the SMSC is back within a second here, so the test waits 2 s instead.
    monkeypatch.setattr(dispatch, "AUTH_RETRY", timedelta(seconds=2))
    smsc = gw.smsc
    await smsc.control("set", receipt_delay_ms=300)  # receipts are still owed at the crash
    await smsc.control("crash_after", submits=20)
    count = 50
    texts = [f"Nachricht {i:02d} von 50: Ihre Sendung ist unterwegs." for i in range(count)]
    # Distinct recipients: the flood limit allows 20 messages per destination and hour.
    ids = [(await gw.send(t, to=f"+49176123456{i:02d}"))["id"] for i, t in enumerate(texts)]
    await smsc.wait_for(lambda _: bool(smsc.events("crashing")), "the SMSC's crash", 30)
    assert smsc.proc is not None
    await anyio.to_thread.run_sync(smsc.proc.wait, 10)
    await anyio.to_thread.run_sync(smsc.start)  # same port, same journal
    await gw.until(ids, lambda v: v["status"] == "delivered", "delivered", 90)
    accepted = Counter(e["text"] for e in smsc.accepted())
    assert accepted == Counter(texts), "every text accepted by the SMSC exactly once"
    assert len({e["incarnation"] for e in smsc.accepted()}) == 2  # before and after the crash
    # The gateway answers a receipt after storing it, so the SMSC may log the answer a
    # moment after the message reads delivered: wait for every answer, then compare.
    submitted = {e["message_id"] for e in smsc.accepted()}
    await smsc.wait_for(
        lambda _: {e["message_id"] for e in smsc.events("receipt", status=0)} >= submitted,
        "every receipt answered",
        10,
    )
    acked = Counter(e["message_id"] for e in smsc.events("receipt", status=0))
    assert set(acked) == submitted
    outbound = await gw.client.get(
        "/v1/messages", params={"direction": "outbound", "limit": 100},
        headers=auth(gw.seed.anna_key),
    )  # fmt: skip
    assert sorted(m["id"] for m in outbound.json()["data"]) == sorted(ids)


async def test_refused_password_keeps_the_connector_down_with_the_reason(
    node_smsc: SmscPeer, tmp_path: Path
) -> None:
    node_smsc.password = "wrong"
    settings = parse_settings(
        {
            "gateway": {"store": f"sqlite:///{tmp_path}/gateway.db", "blobs": str(tmp_path)},
            "connectors": [
                {"id": "smsc", "kind": "smpp", "channels": ["sms"], "host": "127.0.0.1",
                 "port": node_smsc.port, "system_id": "gateway", "password": "wrong"}
            ],
        }
    )  # fmt: skip
    rt = await open_runtime(settings)
    try:
        deadline = time.monotonic() + 15
        while "ESME_RINVPASWD" not in rt.health()["smsc"].detail:
            assert time.monotonic() < deadline, rt.health()
            await anyio.sleep(0.05)
        assert not rt.health()["smsc"].ok
    finally:
        await rt.aclose()
    [bind, *_] = node_smsc.events("bind")
    assert (bind["system_id"], bind["password"], bind["status"]) == ("gateway", "wrong", 0x0E)


@pytest.mark.parametrize("mode", ["sar", "payload"])
async def test_long_messages_as_sar_tlvs_or_one_payload(
    smsc: SmscPeer, tmp_path: Path, mode: str
) -> None:
    text = "Lieferung 4711: " + "Ihr Paket wird heute zwischen 9 und 12 Uhr zugestellt. " * 6
    async with GatewayRun(smsc, tmp_path, long_messages=mode) as g:
        sent = await g.send(text)
        await g.until([sent["id"]], lambda v: v["status"] == "delivered", "delivered", 20)
        parts = smsc.accepted()
    if mode == "payload":
        [sub] = parts
        assert sub["short_message"] == "" and sub["udh"] is None
        assert bytes.fromhex(sub["tlvs"]["0x0424"]) == gsm.encode(text)
        return
    assert len(parts) == sent["segments"] == 3
    refs = {p["tlvs"]["0x020c"] for p in parts}
    assert len(refs) == 1 and len(refs.pop()) == 4  # one 16-bit reference
    assert [(p["tlvs"]["0x020e"], p["tlvs"]["0x020f"]) for p in parts] == [
        ("03", "01"), ("03", "02"), ("03", "03"),
    ]  # fmt: skip
    assert all(p["udh"] is None and not p["esm_class"] & 0x40 for p in parts)
    assert "".join(p["text"] for p in parts) == text


@pytest.mark.parametrize("kind", ["node", "smpp34"])
async def test_receipts_naming_the_id_in_decimal_still_deliver(
    kind: str, peer_dir: Path, tmp_path: Path
) -> None:
    """submit_sm_resp gives the id in hex, the receipt's text in decimal (no TLVs)."""
    peer = SmscPeer(kind, peer_dir, options=("--receipt-id-decimal",))
    peer.start()
    try:
        async with GatewayRun(peer, tmp_path) as g:
            sent = await g.send("Dezimal oder hex?")
            await g.until([sent["id"]], lambda v: v["status"] == "delivered", "delivered", 20)
        [sub] = peer.accepted()
        [receipt] = peer.events("receipt")
        assert f"id:{int(sub['message_id'], 16)} " in receipt["text"]
    finally:
        peer.stop()


async def test_undeliverable_receipt_fails_the_message(gw: Gateway) -> None:
    await gw.smsc.control("set", receipt_stat="UNDELIV", receipt_err="001")
    sent = await gw.send("Diese Nummer gibt es nicht.")
    [view] = await gw.until([sent["id"]], lambda v: v["status"] == "failed", "failed", 20)
    assert view["error"]["code"] == "unreachable"
    assert [h["status"] for h in view["history"]][-2:] == ["sent", "failed"]


async def test_throttled_submits_are_retried_and_accepted_once(gw: Gateway) -> None:
    await gw.smsc.control("throttle", count=2, status=0x58)
    sent = await gw.send("Langsam bitte.")
    await gw.until([sent["id"]], lambda v: v["status"] == "delivered", "delivered", 30)
    assert [e["status"] for e in gw.smsc.events("submit_sm")] == [0x58, 0x58, 0]
