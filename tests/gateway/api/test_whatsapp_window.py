"""The WhatsApp 24-hour window through the API and the workers, on both backends.

A WhatsApp connector and an SMS connector (fakes; the WhatsApp one can answer Meta's
131047), the frozen clock moved past 24 hours: the window on conversations, refusals
before anything is charged, the SMS fallback at acceptance, at send time and after a
``failed`` status report, templates, and the preview.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.base import ErrorCode, OutboundMessage, PermanentError, SendResult, register
from gateway.api.app import create_app
from gateway.api.openapi import openapi_document
from gateway.clock import FrozenClock
from gateway.config import ConnectorConfig, parse_settings
from gateway.ids import new_id
from gateway.models import Member, Message
from gateway.process import open_runtime, worker
from gateway.runtime import Runtime
from gateway.units import Tariff
from tests.connectors.fake import FakeConnector
from tests.gateway.api.test_openapi import Checker
from tests.gateway.conftest import (
    CONTACT,
    MOBILE_A,
    Seed,
    auth,
    open_whatsapp_window,
)

pytestmark = pytest.mark.anyio
PROBLEM = "application/problem+json"
PERIOD = "2026-03"


class WindowFake(FakeConnector):
    """The fake connector, plus a script step ``window``: Meta's 131047."""

    kind = "fake-window"

    async def send(self, message: OutboundMessage) -> SendResult:
        """Refuse for the window when the script says so, else as the fake does."""
        if self.script and self.script[0] == "window":
            self.script.pop(0)
            raise PermanentError(
                "(#131047) Re-engagement message: more than 24 hours have passed",
                code=ErrorCode.WINDOW_CLOSED,
                carrier_code="131047",
            )
        return await super().send(message)


register(WindowFake.kind, WindowFake)


def connectors(sms: bool = True) -> tuple[ConnectorConfig, ...]:
    """A WhatsApp connector ``wa`` and (unless ``sms`` is False) an SMS connector ``sms``."""
    out = [ConnectorConfig("wa", WindowFake.kind, frozenset({"whatsapp"}), None, {})]
    if sms:
        out.append(ConnectorConfig("sms", "fake", frozenset({"sms"}), None, {}))
    return tuple(out)


@pytest.fixture
async def rt(url: str, tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Runtime]:
    """A runtime with separate WhatsApp and SMS connectors."""
    settings = parse_settings({"gateway": {"store": url, "blobs": str(tmp_path / "blobs")}})
    runtime = await open_runtime(
        dataclasses.replace(settings, connectors=connectors()), clock=clock
    )
    await runtime.wait_started()
    try:
        yield runtime
    finally:
        await runtime.aclose()


@contextlib.asynccontextmanager
async def variant(
    rt: Runtime, clock: FrozenClock, **changes: Any
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient]]:
    """Another runtime on the same store with changed settings, and a client for it."""
    other = await open_runtime(dataclasses.replace(rt.settings, **changes), clock=clock)
    await other.wait_started()
    try:
        transport = httpx.ASGITransport(app=create_app(other, workers=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as c:
            yield other, c
    finally:
        await other.aclose()


def fake(rt: Runtime, cid: str) -> FakeConnector:
    connector = rt.connectors[cid].connector
    assert isinstance(connector, FakeConnector)
    return connector


def wa(text: str = "Gern, bis morgen!", **extra: object) -> dict[str, object]:
    return {"channel": "whatsapp", "from": MOBILE_A, "to": CONTACT, "text": text, **extra}


async def problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = resp.json()
    assert body["code"] == code and body["status"] == status and body["detail"]
    return body


RIVAL = "+4915112345679"


async def rival_member(rt: Runtime, seed: Seed) -> Member:
    """A WhatsApp member of the other team, whose credit limit is 0."""
    rita = Member(
        new_id("mem"),
        seed.other_team.id,
        "Rita",
        "rita@example.com",
        RIVAL,
        None,
        frozenset({"whatsapp"}),
        True,
        rt.clock.now(),
    )
    await rt.store.create_member(rita, 2)
    return rita


async def usage(rt: Runtime, seed: Seed) -> dict[str, int]:
    lines, _ = await rt.store.ledger(seed.team.id, PERIOD)
    return {ln.channel: ln.used for ln in lines if ln.member_id == seed.anna.id and ln.used}


async def stored(rt: Runtime, message_id: str) -> Message:
    msg = await rt.store.get_message(message_id)
    assert msg is not None
    return msg


async def history(rt: Runtime, message_id: str) -> list[str]:
    return [h.status for h in await rt.store.status_history(message_id)]


async def run_jobs(rt: Runtime) -> int:
    n = 0
    while await worker(rt).run_once():
        n += 1
    return n


# -- the window on conversations ----------------------------------------------------------
async def test_conversation_shows_the_window(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    key = auth(seed.anna_key)
    sent = await client.post("/v1/messages", json={**wa(), "channel": "sms"}, headers=key)
    conv_url = f"/v1/conversations/{sent.json()['conversation_id']}"
    conv = (await client.get(conv_url, headers=key)).json()
    assert conv["whatsapp_window"] == {"open": False, "expires_at": None}
    clock.advance(minutes=30)
    await open_whatsapp_window(rt)
    conv = (await client.get(conv_url, headers=key)).json()
    assert conv["whatsapp_window"] == {"open": True, "expires_at": "2026-03-16T12:30:00.000Z"}
    listed = (await client.get("/v1/conversations", headers=key)).json()["data"]
    assert [c["whatsapp_window"] for c in listed] == [conv["whatsapp_window"]]
    clock.advance(hours=24)
    conv = (await client.get(conv_url, headers=key)).json()
    assert conv["whatsapp_window"] == {"open": False, "expires_at": "2026-03-16T12:30:00.000Z"}


async def test_window_follows_the_message_timestamp_never_backwards(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    """Meta's own timestamp opens the window, not the arrival; a late, older webhook and a
    duplicate leave it where it is; an SMS from the contact opens nothing."""

    async def inbound(wamid: str, at: str, channel: str = "whatsapp") -> httpx.Response:
        body = {"id": wamid, "from": CONTACT, "to": MOBILE_A, "text": "hi", "at": at}
        return await client.post("/hooks/wa/inbound", json={**body, "channel": channel})

    await inbound("sms.1", "2026-03-15T11:59:00.000Z", channel="sms")
    conv = await rt.store.find_conversation(seed.team.id, MOBILE_A, CONTACT)
    assert conv is not None and conv.last_inbound_whatsapp_at is None
    first = await inbound("wamid.B", "2026-03-15T10:00:00.000Z")  # arrived at 12:00
    await inbound("wamid.A", "2026-03-15T09:00:00.000Z")  # an older one, reordered
    await inbound("wamid.B", "2026-03-15T10:00:00.000Z")  # Meta's retry of B
    conv_view = (
        await client.get(f"/v1/conversations/{conv.id}", headers=auth(seed.anna_key))
    ).json()
    assert conv_view["whatsapp_window"] == {"open": True, "expires_at": "2026-03-16T10:00:00.000Z"}
    listed = await client.get(
        "/v1/messages?direction=inbound&channel=whatsapp", headers=auth(seed.anna_key)
    )
    assert len(listed.json()["data"]) == 2  # B once, A
    assert first.json()["message_id"] in {m["id"] for m in listed.json()["data"]}
    clock.set(datetime(2026, 3, 16, 10, 0, tzinfo=UTC))  # 24 hours after B was written
    view = (await client.get(f"/v1/conversations/{conv.id}", headers=auth(seed.anna_key))).json()
    assert view["whatsapp_window"]["open"] is False


# -- sending: inside, outside, fallback ---------------------------------------------------
async def test_open_window_sends_by_whatsapp(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    await open_whatsapp_window(rt)
    clock.advance(hours=23, minutes=59)
    resp = await client.post("/v1/messages", json=wa(fallback="sms"), headers=auth(seed.anna_key))
    assert resp.status_code == 202, resp.text
    msg = resp.json()
    assert msg["channel"] == "whatsapp" and msg["units"] == 1 and msg["fallback"] == "sms"
    assert "fallback_used" not in msg and "requested_channel" not in msg
    assert await run_jobs(rt) == 1
    assert [m.id for m in fake(rt, "wa").sent] == [msg["id"]]
    assert (await stored(rt, msg["id"])).status == "sent"
    assert await usage(rt, seed) == {"whatsapp": 1}


async def test_closed_window_refuses_before_anything_is_charged(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    key = auth(seed.team_key)
    # Never written: no window, and the refusal leaves no conversation behind.
    body = await problem(
        await client.post("/v1/messages", json=wa(), headers=key), 422, "whatsapp_window_closed"
    )
    assert body["title"] == "WhatsApp window closed"
    assert body["detail"] == (
        f"{CONTACT} has not written to {MOBILE_A} on WhatsApp, so no 24-hour window is open; "
        'send a template, or repeat with "fallback": "sms" to send it by SMS'
    )
    assert body["whatsapp_window"] == {"open": False, "expires_at": None}
    assert body["fallback"] == "sms"
    assert await rt.store.find_conversation(seed.team.id, MOBILE_A, CONTACT) is None
    # Written 24 hours ago: closed now.
    await open_whatsapp_window(rt)
    clock.advance(hours=24)
    body = await problem(
        await client.post("/v1/messages", json=wa(), headers=key), 422, "whatsapp_window_closed"
    )
    assert body["detail"].startswith(
        f"the 24-hour WhatsApp window with {CONTACT} closed at 2026-03-16T12:00:00.000Z; "
    )
    assert body["whatsapp_window"] == {"open": False, "expires_at": "2026-03-16T12:00:00.000Z"}
    outbound = await client.get("/v1/messages?direction=outbound", headers=key)
    assert outbound.json()["data"] == []
    assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}
    assert await usage(rt, seed) == {}


async def test_fallback_sends_by_sms_when_closed(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    """Anna booked WhatsApp (which includes SMS): a 161-character text goes as 2 SMS
    units and segments through the SMS connector, and the answer says so."""
    text = "x" * 161
    resp = await client.post(
        "/v1/messages", json=wa(text, fallback="sms"), headers=auth(seed.anna_key)
    )
    assert resp.status_code == 202, resp.text
    msg = resp.json()
    assert msg["channel"] == "sms" and msg["requested_channel"] == "whatsapp"
    assert msg["fallback"] == "sms" and msg["fallback_used"] == "sms"
    assert msg["fallback_reason"] == "whatsapp_window_closed"
    assert (msg["units"], msg["segments"], msg["encoding"]) == (2, 2, "gsm7")
    got = (await client.get(f"/v1/messages/{msg['id']}", headers=auth(seed.anna_key))).json()
    assert got["requested_channel"] == "whatsapp" and got["channel"] == "sms"
    assert await usage(rt, seed) == {"sms": 2}
    assert await run_jobs(rt) == 1
    assert [m.id for m in fake(rt, "sms").sent] == [msg["id"]] and fake(rt, "wa").sent == []
    assert fake(rt, "sms").sent[0].channel == "sms"
    after = await stored(rt, msg["id"])
    assert after.status == "sent" and after.connector_id == "sms"
    # The conversation is the same one SMS and WhatsApp share.
    conv = await rt.store.find_conversation(seed.team.id, MOBILE_A, CONTACT)
    assert conv is not None and conv.id == msg["conversation_id"]


async def test_fallback_needs_an_sms_connector(rt: Runtime, seed: Seed, clock: FrozenClock) -> None:
    async with variant(rt, clock, connectors=connectors(sms=False)) as (_, c):
        key = auth(seed.anna_key)
        body = await problem(
            await c.post("/v1/messages", json=wa(), headers=key), 422, "whatsapp_window_closed"
        )
        assert "fallback" not in body and "no connector serves sms" in body["detail"]
        body = await problem(
            await c.post("/v1/messages", json=wa(fallback="sms"), headers=key),
            422,
            "channel_unavailable",
        )
        assert "window" in body["detail"] and "nothing was queued" in body["detail"]
    assert await usage(rt, seed) == {}


async def test_fallback_requests_must_fit_an_sms(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    """Checked whatever the window, because the fallback may also happen later."""
    await open_whatsapp_window(rt)
    key = auth(seed.anna_key)
    up = await client.post(
        "/v1/attachments", files={"file": ("a.jpg", b"\xff\xd8jpeg", "image/jpeg")}, headers=key
    )
    cases = [
        (wa(fallback="sms", attachments=[up.json()["id"]]), "fallback"),
        (wa("x" * 1601, fallback="sms"), "text"),
        ({**wa(fallback="sms"), "channel": "sms"}, "fallback"),
        (wa(fallback="fax"), "fallback"),
    ]
    for body, field in cases:
        got = await problem(
            await client.post("/v1/messages", json=body, headers=key), 422, "validation_error"
        )
        assert got["field"] == field
    # Without the fallback the same WhatsApp message is fine: 4096 characters, media.
    ok = await client.post("/v1/messages", json=wa("x" * 4096), headers=key)
    assert ok.status_code == 202 and ok.json()["units"] == 5


async def test_fallback_at_acceptance_respects_the_credit_limit(
    rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    """SMS units are what the fallback costs: a team at its limit is refused (402)."""
    tariff = dataclasses.replace(Tariff.default(), included={"sms": 1, "whatsapp": 1000, "fax": 1})
    await rival_member(rt, seed)
    async with variant(rt, clock, tariff=tariff) as (_, c):
        key = auth(seed.other_key)
        body = wa(fallback="sms", **{"from": RIVAL})
        first = await c.post("/v1/messages", json=body, headers=key)
        assert first.status_code == 202 and first.json()["channel"] == "sms"
        await problem(
            await c.post("/v1/messages", json=body, headers=key), 402, "quota_credit_limit"
        )


# -- templates ----------------------------------------------------------------------------
async def test_template_goes_outside_the_window(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    template = {
        "name": "order_update",
        "language": "de",
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "4711"}]}],
    }
    body = {"channel": "whatsapp", "from": MOBILE_A, "to": CONTACT, "template": template}
    resp = await client.post("/v1/messages", json=body, headers=auth(seed.anna_key))
    assert resp.status_code == 202, resp.text
    msg = resp.json()
    assert msg["channel"] == "whatsapp" and msg["text"] is None and msg["units"] == 1
    shaped = {**template, "language": {"code": "de"}}
    assert msg["template"] == shaped
    assert await run_jobs(rt) == 1
    [out] = fake(rt, "wa").sent
    assert out.id == msg["id"] and out.meta["whatsapp"]["template"] == shaped
    assert (await stored(rt, msg["id"])).status == "sent"
    preview = await client.post("/v1/messages/preview", json=body, headers=auth(seed.anna_key))
    assert preview.json()["channel"] == "whatsapp" and preview.json()["units"] == 1
    assert preview.json()["template"] == shaped
    bad = {**body, "template": {"name": "Order Update", "language": "de"}}
    got = await problem(
        await client.post("/v1/messages", json=bad, headers=auth(seed.anna_key)),
        422,
        "validation_error",
    )
    assert got["field"] == "template"
    with_text = {**body, "text": "Hallo"}
    got = await problem(
        await client.post("/v1/messages", json=with_text, headers=auth(seed.anna_key)),
        422,
        "validation_error",
    )
    assert got["field"] == "text"


# -- the preview --------------------------------------------------------------------------
async def test_preview_shows_the_window_and_the_fallback(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    key = auth(seed.anna_key)
    await problem(
        await client.post("/v1/messages/preview", json=wa(), headers=key),
        422,
        "whatsapp_window_closed",
    )
    fell = await client.post("/v1/messages/preview", json=wa("ä" * 71, fallback="sms"), headers=key)
    assert fell.status_code == 200, fell.text
    assert fell.json() == {
        "channel": "sms",
        "encoding": "gsm7",
        "segments": 1,
        "units": 1,
        "requested_channel": "whatsapp",
        "fallback_used": "sms",
        "fallback_reason": "whatsapp_window_closed",
        "whatsapp_window": {"open": False, "expires_at": None},
    }
    emoji = await client.post(
        "/v1/messages/preview", json=wa("👋" * 40, fallback="sms"), headers=key
    )
    assert (emoji.json()["encoding"], emoji.json()["segments"]) == ("ucs2", 2)
    # Nothing was stored: no conversation, no message.
    assert await rt.store.find_conversation(seed.team.id, MOBILE_A, CONTACT) is None
    await open_whatsapp_window(rt)
    inside = await client.post("/v1/messages/preview", json=wa(fallback="sms"), headers=key)
    assert inside.json() == {
        "channel": "whatsapp",
        "encoding": None,
        "segments": 1,
        "units": 1,
        "whatsapp_window": {"open": True, "expires_at": "2026-03-16T12:00:00.000Z"},
    }


# -- WhatsApp refuses all the same: the fallback after acceptance ------------------------
async def test_meta_131047_falls_back_to_sms_in_the_same_run(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    await open_whatsapp_window(rt)
    fake(rt, "wa").script = ["window"]
    resp = await client.post(
        "/v1/messages", json=wa("y" * 200, fallback="sms"), headers=auth(seed.anna_key)
    )
    msg = resp.json()
    assert msg["channel"] == "whatsapp" and await usage(rt, seed) == {"whatsapp": 1}
    assert await run_jobs(rt) == 1
    after = await stored(rt, msg["id"])
    assert after.channel == "sms" and after.status == "sent" and after.connector_id == "sms"
    assert (after.units, after.segments, after.encoding) == (2, 2, "gsm7")
    assert await history(rt, msg["id"]) == ["accepted", "sending", "queued", "sending", "sent"]
    assert await usage(rt, seed) == {"sms": 2}  # the WhatsApp unit went back
    assert [m.id for m in fake(rt, "sms").sent] == [msg["id"]] and fake(rt, "wa").sent == []
    view = (await client.get(f"/v1/messages/{msg['id']}", headers=auth(seed.anna_key))).json()
    assert view["requested_channel"] == "whatsapp" and view["fallback_used"] == "sms"
    changes = await rt.store.status_history(msg["id"])
    detail = changes[2].detail or {}
    assert detail["fallback"] == "sms" and detail["error"]["carrier_code"] == "131047"
    events = [e for e in await rt.store.list_events(0, 100) if e.data.get("id") == msg["id"]]
    assert [(e.type, e.data["status"], e.data["channel"]) for e in events] == [
        ("message.created", "accepted", "whatsapp"),
        ("message.status", "sending", "whatsapp"),
        ("message.status", "queued", "sms"),
        ("message.status", "sending", "sms"),
        ("message.status", "sent", "sms"),
    ]


async def test_meta_131047_without_fallback_fails_and_gives_units_back(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    await open_whatsapp_window(rt)
    fake(rt, "wa").script = ["window"]
    msg = (await client.post("/v1/messages", json=wa(), headers=auth(seed.anna_key))).json()
    assert await run_jobs(rt) == 1
    after = await stored(rt, msg["id"])
    assert after.status == "failed" and after.channel == "whatsapp"
    assert after.error is not None and after.error["code"] == "whatsapp_window_closed"
    assert after.error["carrier_code"] == "131047" and after.error["retryable"] is False
    assert await usage(rt, seed) == {} and fake(rt, "sms").sent == []


async def test_window_closed_while_queued_is_not_handed_to_meta(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    """Accepted inside the window, the worker runs 25 hours later (connector down, say):
    Meta is not called; the fallback message goes by SMS, the other one fails."""
    await open_whatsapp_window(rt)
    key = auth(seed.anna_key)
    plain = (await client.post("/v1/messages", json=wa("a"), headers=key)).json()
    falls = (await client.post("/v1/messages", json=wa("b", fallback="sms"), headers=key)).json()
    clock.advance(hours=25)
    assert await run_jobs(rt) == 2
    assert fake(rt, "wa").sent == []
    failed = await stored(rt, plain["id"])
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["code"] == "whatsapp_window_closed" and failed.error["carrier_code"] is None
    assert "not handed to WhatsApp" in failed.error["message"]
    assert await history(rt, plain["id"]) == ["accepted", "failed"]
    moved = await stored(rt, falls["id"])
    assert moved.channel == "sms" and moved.status == "sent"
    assert [m.id for m in fake(rt, "sms").sent] == [falls["id"]]
    assert await usage(rt, seed) == {"sms": 1}


async def test_failed_report_131047_falls_back_once(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    """Meta took the message, then reported it failed with 131047 (twice, as Meta
    retries): one SMS goes out; later reports about the WhatsApp attempt change nothing."""
    await open_whatsapp_window(rt)
    msg = (
        await client.post("/v1/messages", json=wa(fallback="sms"), headers=auth(seed.anna_key))
    ).json()
    assert await run_jobs(rt) == 1
    wamid = (await stored(rt, msg["id"])).carrier_id
    assert wamid is not None
    error = {
        "code": "whatsapp_window_closed",
        "message": "Re-engagement message",
        "carrier_code": "131047",
        "retryable": False,
    }
    report = {"id": wamid, "status": "failed", "error": error}
    first = await client.post("/hooks/wa/status", json=report)
    assert first.json() == {"known": True}
    after = await stored(rt, msg["id"])
    assert (after.channel, after.status, after.carrier_id) == ("sms", "queued", None)
    assert await usage(rt, seed) == {"sms": 1}
    again = await client.post("/hooks/wa/status", json=report)
    late = await client.post("/hooks/wa/status", json={"id": wamid, "status": "delivered"})
    assert again.json() == late.json() == {"known": True}
    assert (await stored(rt, msg["id"])).status == "queued"
    assert await run_jobs(rt) == 1
    sent = await stored(rt, msg["id"])
    assert sent.status == "sent" and sent.carrier_id == f"fake-{msg['id']}"
    assert [m.id for m in fake(rt, "sms").sent] == [msg["id"]]
    delivered = await client.post(
        "/hooks/sms/status", json={"id": sent.carrier_id, "status": "delivered"}
    )
    assert delivered.json() == {"known": True}
    assert await history(rt, msg["id"]) == [
        "accepted", "sending", "sent", "queued", "sending", "sent", "delivered"
    ]  # fmt: skip
    assert await usage(rt, seed) == {"sms": 1}


async def test_late_fallback_refused_by_the_credit_limit_fails_clearly(
    rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    tariff = dataclasses.replace(Tariff.default(), included={"sms": 0, "whatsapp": 1000, "fax": 1})
    rita = await rival_member(rt, seed)
    await open_whatsapp_window(rt, RIVAL)
    async with variant(rt, clock, tariff=tariff) as (other, c):
        fake(other, "wa").script = ["window"]
        body = wa(fallback="sms", **{"from": RIVAL})
        msg = (await c.post("/v1/messages", json=body, headers=auth(seed.other_key))).json()
        assert await run_jobs(other) == 1
        failed = await stored(other, msg["id"])
        assert failed.status == "failed" and failed.channel == "whatsapp"
        assert failed.error is not None and failed.error["code"] == "whatsapp_window_closed"
        assert failed.error["fallback_error"]["code"] == "quota_credit_limit"
        assert "the SMS fallback was not possible" in failed.error["message"]
        lines, overage = await other.store.ledger(rita.team_id, PERIOD)
        assert [ln.used for ln in lines] == [0] and overage == 0  # WhatsApp unit given back
        assert fake(other, "sms").sent == []


async def test_late_fallback_without_sms_connector_fails_clearly(
    rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    await open_whatsapp_window(rt)
    async with variant(rt, clock, connectors=connectors(sms=False)) as (other, c):
        fake(other, "wa").script = ["window"]
        msg = (
            await c.post("/v1/messages", json=wa(fallback="sms"), headers=auth(seed.anna_key))
        ).json()
        assert msg["channel"] == "whatsapp"
        assert await run_jobs(other) == 1
        failed = await stored(other, msg["id"])
        assert failed.status == "failed" and failed.error is not None
        assert failed.error["fallback_error"] == {
            "code": "channel_unavailable",
            "message": f"no connector serves sms from {MOBILE_A}",
        }
    assert await usage(rt, seed) == {}


# -- the answers match the OpenAPI document -----------------------------------------------
async def test_answers_match_the_document(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    check = Checker(openapi_document(rt.settings.public_url))
    key = auth(seed.anna_key)
    closed = await client.post("/v1/messages", json=wa(), headers=key)
    documented = check(closed, "/v1/messages")
    assert "whatsapp_window_closed" in documented["description"]
    check(await client.post("/v1/messages/preview", json=wa(), headers=key), "/v1/messages/preview")
    fell = await client.post("/v1/messages", json=wa(fallback="sms"), headers=key)
    check(fell, "/v1/messages")
    preview = await client.post("/v1/messages/preview", json=wa(fallback="sms"), headers=key)
    check(preview, "/v1/messages/preview")
    template = {"name": "order_update", "language": "de", "components": [{"type": "body"}]}
    body = {"channel": "whatsapp", "from": MOBILE_A, "to": CONTACT, "template": template}
    tpl = await client.post("/v1/messages", json=body, headers=key)
    check(tpl, "/v1/messages")
    check(await client.get(f"/v1/messages/{tpl.json()['id']}", headers=key), "/v1/messages/{id}")
    check(await client.get("/v1/messages", headers=key), "/v1/messages")
    await open_whatsapp_window(rt)
    conv = await client.get(f"/v1/conversations/{fell.json()['conversation_id']}", headers=key)
    assert conv.json()["whatsapp_window"]["open"] is True
    check(conv, "/v1/conversations/{id}")
    check(await client.get("/v1/conversations", headers=key), "/v1/conversations")
    inside = await client.post("/v1/messages/preview", json=wa(), headers=key)
    check(inside, "/v1/messages/preview")
