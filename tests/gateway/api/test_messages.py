"""The REST API on both backends: auth, isolation, sends, errors, idempotency, paging."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import httpx
import pytest

from gateway.api.app import create_app
from gateway.clock import FrozenClock
from gateway.config import ConnectorConfig
from gateway.process import open_runtime
from gateway.runtime import Runtime
from tests.gateway.conftest import (
    CONTACT,
    FAX_A,
    MOBILE_A,
    MOBILE_B,
    Seed,
    auth,
    open_whatsapp_window,
)

pytestmark = pytest.mark.anyio
PROBLEM = "application/problem+json"


def sms(text: str = "Hallo", sender: str = MOBILE_A, to: str = CONTACT) -> dict[str, object]:
    return {"channel": "sms", "from": sender, "to": to, "text": text}


async def expect_problem(resp: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body: dict[str, object] = resp.json()
    assert body["code"] == code and body["status"] == status
    assert body["title"] and body["detail"]
    return body


async def test_auth_required(client: httpx.AsyncClient, seed: Seed) -> None:
    resp = await client.get("/v1/messages")
    await expect_problem(resp, 401, "unauthorized")
    assert resp.headers["www-authenticate"] == "Bearer"
    await expect_problem(
        await client.get("/v1/messages", headers=auth("gwk_nope")), 401, "unauthorized"
    )
    await expect_problem(
        await client.get("/v1/messages", headers={"Authorization": "Basic eDp5"}),
        401,
        "unauthorized",
    )


async def test_send_sms_returns_the_message(
    client: httpx.AsyncClient, seed: Seed, rt: Runtime
) -> None:
    resp = await client.post("/v1/messages", json=sms("0" * 161), headers=auth(seed.team_key))
    assert resp.status_code == 202, resp.text
    msg = resp.json()
    assert msg["channel"] == "sms" and msg["direction"] == "outbound"
    assert msg["from"] == MOBILE_A and msg["to"] == CONTACT
    assert msg["status"] == "accepted"
    assert (msg["units"], msg["segments"], msg["encoding"]) == (2, 2, "gsm7")
    assert msg["conversation_id"].startswith("conv_") and msg["created_at"].endswith("Z")
    got = await client.get(f"/v1/messages/{msg['id']}", headers=auth(seed.team_key))
    assert got.status_code == 200
    assert got.json()["history"] == [{"status": "accepted", "at": msg["created_at"]}]
    assert (await rt.store.job_counts())["ready"] == 1


async def test_national_numbers_are_normalized(client: httpx.AsyncClient, seed: Seed) -> None:
    body = sms(sender="0151 12345671", to="0176/12345678")
    resp = await client.post("/v1/messages", json=body, headers=auth(seed.anna_key))
    assert resp.status_code == 202, resp.text
    assert (resp.json()["from"], resp.json()["to"]) == (MOBILE_A, CONTACT)


async def test_sms_and_whatsapp_share_a_conversation(
    client: httpx.AsyncClient, seed: Seed, rt: Runtime
) -> None:
    await open_whatsapp_window(rt)  # the contact wrote on WhatsApp: free-form may answer
    a = await client.post("/v1/messages", json=sms(), headers=auth(seed.anna_key))
    wa = {**sms(), "channel": "whatsapp"}
    b = await client.post("/v1/messages", json=wa, headers=auth(seed.anna_key))
    assert a.json()["conversation_id"] == b.json()["conversation_id"]
    assert b.json()["units"] == 1 and b.json()["encoding"] is None
    conv = await client.get(
        f"/v1/conversations/{a.json()['conversation_id']}", headers=auth(seed.anna_key)
    )
    assert conv.json()["remote_number"] == CONTACT and conv.json()["member_number"] == MOBILE_A


async def test_errors_have_stable_codes(client: httpx.AsyncClient, seed: Seed) -> None:
    key = auth(seed.team_key)
    await expect_problem(
        await client.post("/v1/messages", json=sms(to="12"), headers=key), 422, "invalid_number"
    )
    await expect_problem(
        await client.post("/v1/messages", json=sms(sender="+4915199999999"), headers=key),
        403,
        "sender_not_owned",
    )
    # Ben's key may not use Anna's number, even within the team.
    await expect_problem(
        await client.post("/v1/messages", json=sms(), headers=auth(seed.ben_key)),
        403,
        "sender_not_owned",
    )
    # Ben booked SMS only.
    wa = {**sms(sender=MOBILE_B), "channel": "whatsapp"}
    await expect_problem(
        await client.post("/v1/messages", json=wa, headers=key), 403, "addon_missing"
    )
    # The fax number carries fax, not SMS.
    await expect_problem(
        await client.post("/v1/messages", json=sms(sender=FAX_A), headers=key),
        403,
        "sender_not_owned",
    )
    body = await expect_problem(
        await client.post("/v1/messages", json={**sms(), "txt": "typo"}, headers=key),
        422,
        "validation_error",
    )
    assert "txt" in str(body["detail"])
    await expect_problem(
        await client.post("/v1/messages", json={**sms(), "channel": "mms"}, headers=key),
        422,
        "validation_error",
    )
    await expect_problem(
        await client.post("/v1/messages", content=b"{nope", headers=key), 400, "malformed_request"
    )
    await expect_problem(
        await client.post("/v1/messages", json=["a"], headers=key), 422, "validation_error"
    )
    await expect_problem(
        await client.post("/v1/messages", json={**sms(), "text": ""}, headers=key),
        422,
        "validation_error",
    )
    await expect_problem(await client.get("/v1/nothing", headers=key), 404, "not_found")
    await expect_problem(
        await client.delete("/v1/messages", headers=key), 405, "method_not_allowed"
    )


async def test_channel_unavailable_queues_nothing(
    rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    # Only Ben's number has a connector; nobody serves Anna's sender or fax at all.
    only_ben = ConnectorConfig("ben-only", "fake", frozenset({"sms"}), frozenset({MOBILE_B}))
    settings = dataclasses.replace(rt.settings, connectors=(only_ben,))
    other = await open_runtime(settings, clock=clock)
    try:
        app = create_app(other, workers=False)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            key = auth(seed.team_key)
            ok = await c.post("/v1/messages", json=sms(sender=MOBILE_B), headers=key)
            assert ok.status_code == 202
            await expect_problem(
                await c.post("/v1/messages", json=sms(), headers=key), 422, "channel_unavailable"
            )
            before = await other.store.job_counts()
            fax = {"channel": "fax", "from": FAX_A, "to": "+4940123456", "text": "x"}
            await expect_problem(
                await c.post("/v1/messages", json=fax, headers=key), 422, "channel_unavailable"
            )
            assert await other.store.job_counts() == before
    finally:
        await other.aclose()


async def test_credit_limit_refuses_without_charging(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    # Rival has a credit limit of 0: 100 included SMS units, then nothing.
    from gateway.ids import new_id
    from gateway.models import Member

    rival = Member(
        new_id("mem"),
        seed.other_team.id,
        "Rita",
        "r@example.com",
        "+4915112345679",
        None,
        frozenset({"sms"}),
        True,
        rt.clock.now(),
    )
    await rt.store.create_member(rival, 2)
    key = auth(seed.other_key)
    long_text = "x" * 1600  # 10 units
    for _ in range(10):
        resp = await client.post("/v1/messages", json=sms(long_text, "+4915112345679"), headers=key)
        assert resp.status_code == 202
    body = await expect_problem(
        await client.post("/v1/messages", json=sms("hi", "+4915112345679"), headers=key),
        402,
        "quota_credit_limit",
    )
    assert "credit limit" in str(body["detail"])
    quota = (await client.get("/v1/quota", headers=key)).json()
    line = quota["members"][0]["channels"]["sms"]
    assert (line["used"], line["overage"], quota["overage_cost"]) == (100, 0, "0.00")


async def test_tenant_isolation(client: httpx.AsyncClient, seed: Seed) -> None:
    sent = (await client.post("/v1/messages", json=sms(), headers=auth(seed.anna_key))).json()
    up = await client.post(
        "/v1/attachments",
        files={"file": ("a.pdf", b"%PDF-1.4", "application/pdf")},
        headers=auth(seed.team_key),
    )
    att = up.json()
    for key in (seed.other_key, seed.ben_key):
        await expect_problem(
            await client.get(f"/v1/messages/{sent['id']}", headers=auth(key)), 404, "not_found"
        )
        await expect_problem(
            await client.get(f"/v1/conversations/{sent['conversation_id']}", headers=auth(key)),
            404,
            "not_found",
        )
        listed = await client.get("/v1/messages", headers=auth(key))
        assert listed.json()["data"] == []
    await expect_problem(
        await client.get(f"/v1/attachments/{att['id']}", headers=auth(seed.other_key)),
        404,
        "not_found",
    )
    # Anna's and the team's keys see it.
    for key in (seed.anna_key, seed.team_key):
        got = await client.get(f"/v1/messages/{sent['id']}", headers=auth(key))
        assert got.status_code == 200
    quota = (await client.get("/v1/quota", headers=auth(seed.ben_key))).json()
    assert [m["member_id"] for m in quota["members"]] == [seed.ben.id]


async def test_idempotency(client: httpx.AsyncClient, seed: Seed, rt: Runtime) -> None:
    headers = {**auth(seed.team_key), "Idempotency-Key": "order-1"}
    first = await client.post("/v1/messages", json=sms("a" * 200), headers=headers)
    again = await client.post("/v1/messages", json=sms("a" * 200), headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json() == again.json() and again.headers["idempotency-replayed"] == "true"
    await expect_problem(
        await client.post("/v1/messages", json=sms("other"), headers=headers),
        422,
        "idempotency_key_reused",
    )
    # A refused request is replayed as refused: the same key never sends later.
    bad = {**auth(seed.team_key), "Idempotency-Key": "order-2"}
    await expect_problem(
        await client.post("/v1/messages", json=sms(to="1"), headers=bad), 422, "invalid_number"
    )
    await expect_problem(
        await client.post("/v1/messages", json=sms(to="1"), headers=bad), 422, "invalid_number"
    )
    # Concurrent duplicates: exactly one message, charged once.
    dup = {**auth(seed.team_key), "Idempotency-Key": "order-3"}
    results = await asyncio.gather(
        *(client.post("/v1/messages", json=sms("b"), headers=dup) for _ in range(5))
    )
    ids = {r.json()["id"] for r in results if r.status_code == 202}
    assert len(ids) == 1
    assert all(r.status_code in (202, 409) for r in results)
    lines, _ = await rt.store.ledger(seed.team.id, "2026-03")
    assert sum(ln.used for ln in lines) == 2 + 1  # 200 chars = 2 units, once; "b" once


async def test_preview(client: httpx.AsyncClient, seed: Seed, rt: Runtime) -> None:
    cases = [
        ("Hello", "gsm7", 1, 1),
        ("a" * 161, "gsm7", 2, 2),
        ("Hello 😀", "ucs2", 1, 1),
        ("ж" * 71, "ucs2", 2, 1),
        ("a" * 159 + "€", "gsm7", 2, 1),
    ]
    for text, encoding, segments, units in cases:
        resp = await client.post(
            "/v1/messages/preview", json=sms(text), headers=auth(seed.team_key)
        )
        assert resp.status_code == 200, resp.text
        assert resp.json() == {
            "channel": "sms",
            "encoding": encoding,
            "segments": segments,
            "units": units,
        }
    assert (await rt.store.job_counts())["ready"] == 0
    listed = await client.get("/v1/messages", headers=auth(seed.team_key))
    assert listed.json()["data"] == []


async def test_list_filters_and_cursor(client: httpx.AsyncClient, seed: Seed, rt: Runtime) -> None:
    key = auth(seed.anna_key)
    inbound = await open_whatsapp_window(rt)  # the contact wrote first: WhatsApp may answer
    ids = []
    for i in range(5):
        body = {**sms(f"m{i}"), "channel": "whatsapp" if i % 2 else "sms"}
        ids.append((await client.post("/v1/messages", json=body, headers=key)).json()["id"])
    page = (await client.get("/v1/messages?limit=2", headers=key)).json()
    assert [m["id"] for m in page["data"]] == ids[::-1][:2]
    seen = [m["id"] for m in page["data"]]
    while page["next_cursor"]:
        page = (
            await client.get(f"/v1/messages?limit=2&cursor={page['next_cursor']}", headers=key)
        ).json()
        seen += [m["id"] for m in page["data"]]
    assert seen == [*ids[::-1], inbound.id]
    wa = (await client.get("/v1/messages?channel=whatsapp", headers=key)).json()
    assert [m["id"] for m in wa["data"]] == [ids[3], ids[1], inbound.id]
    await expect_problem(
        await client.get("/v1/messages?limit=500", headers=key), 422, "validation_error"
    )
    await expect_problem(
        await client.get("/v1/messages?status=lost", headers=key), 422, "validation_error"
    )
    convs = (await client.get("/v1/conversations", headers=key)).json()
    assert len(convs["data"]) == 1 and convs["next_cursor"] is None


async def test_attachments(
    client: httpx.AsyncClient, seed: Seed, rt: Runtime, tmp_path: Path
) -> None:
    key = auth(seed.team_key)
    data = b"%PDF-1.4\n" + bytes(range(256)) * 10
    up = await client.post(
        "/v1/attachments", files={"file": ("brief.pdf", data, "application/pdf")}, headers=key
    )
    assert up.status_code == 201, up.text
    att = up.json()
    import hashlib

    assert att["sha256"] == hashlib.sha256(data).hexdigest() and att["size"] == len(data)
    assert att["content_type"] == "application/pdf"
    meta = await client.get(f"/v1/attachments/{att['id']}", headers=key)
    assert meta.json() == att
    content = await client.get(f"/v1/attachments/{att['id']}/content", headers=key)
    assert content.content == data and content.headers["content-type"] == "application/pdf"
    fax = {"channel": "fax", "from": FAX_A, "to": "+4940123456", "attachments": [att["id"]]}
    sent = await client.post("/v1/messages", json=fax, headers=key)
    assert sent.status_code == 202 and sent.json()["attachments"] == [att["id"]]
    assert sent.json()["units"] == 1
    missing = {**fax, "attachments": ["att_nope"]}
    await expect_problem(
        await client.post("/v1/messages", json=missing, headers=key), 422, "validation_error"
    )
    await expect_problem(
        await client.post("/v1/attachments", files={"file": ("e", b"", "text/plain")}, headers=key),
        422,
        "validation_error",
    )
    await expect_problem(
        await client.post(
            "/v1/attachments", files={"other": ("e", b"x", "text/plain")}, headers=key
        ),
        422,
        "validation_error",
    )


async def test_upload_limit(rt: Runtime, seed: Seed, clock: FrozenClock) -> None:
    settings = dataclasses.replace(rt.settings, max_attachment_bytes=1000, connectors=())
    small = await open_runtime(settings, clock=clock)
    try:
        transport = httpx.ASGITransport(app=create_app(small, workers=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            key = auth(seed.team_key)
            ok = await c.post("/v1/attachments", files={"file": ("a", b"x" * 1000)}, headers=key)
            assert ok.status_code == 201
            big = await c.post("/v1/attachments", files={"file": ("a", b"x" * 1001)}, headers=key)
            await expect_problem(big, 413, "payload_too_large")
            huge = await c.post(
                "/v1/attachments", files={"file": ("a", b"x" * 200_000)}, headers=key
            )
            await expect_problem(huge, 413, "payload_too_large")
    finally:
        await small.aclose()


async def test_quota_report(client: httpx.AsyncClient, seed: Seed) -> None:
    key = auth(seed.team_key)
    await client.post("/v1/messages", json=sms("x" * 300), headers=key)
    quota = (await client.get("/v1/quota?period=2026-03", headers=key)).json()
    assert quota["period"] == "2026-03" and quota["credit_limit"] == "10.00"
    anna = next(m for m in quota["members"] if m["member_id"] == seed.anna.id)
    assert anna["channels"]["sms"] == {
        "included": 100,
        "used": 2,
        "remaining": 98,
        "overage": 0,
        "overage_price": "0.09",
        "overage_cost": "0.00",
    }
    assert anna["channels"]["whatsapp"]["included"] == 1000
    empty = (await client.get("/v1/quota?period=2026-02", headers=key)).json()
    assert all(m["channels"]["sms"]["used"] == 0 for m in empty["members"])
    await expect_problem(
        await client.get("/v1/quota?period=2026-13", headers=key), 422, "validation_error"
    )


async def test_operations_endpoints(client: httpx.AsyncClient, seed: Seed, rt: Runtime) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ok"}
    await client.post("/v1/messages", json=sms(), headers=auth(seed.team_key))
    text = (await client.get("/metrics")).text
    assert 'gateway_messages_accepted_total{channel="sms"} 1' in text
    assert 'gateway_jobs{state="ready"} 1' in text
    assert 'gateway_connector_up{connector="fake1"} 1' in text
    assert "# TYPE gateway_http_requests_total counter" in text
    assert 'handler="create_message",method="POST",status="202"' in text
    rt.connectors["fake1"].connector.healthy = False  # type: ignore[attr-defined]
    down = await client.get("/readyz")
    assert down.status_code == 503 and down.json() == {"status": "unavailable"}
