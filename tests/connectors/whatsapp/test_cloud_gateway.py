"""The connector inside a real gateway (Runtime + API on uvicorn, both store backends)
with the simulator calling back: duplicates and reordering end in one message with the
right final status, media arrives through a durable job, auth errors keep messages
queued."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from typing import Any

import pytest

from connectors.whatsapp.cloud import MEDIA_JOB
from connectors.whatsapp.webhook import sign
from gateway.auth import create_key
from gateway.models import Message
from gateway.process import worker
from tests.connectors.whatsapp.conftest import BUSINESS, USER, Gateway, payload
from tests.gateway.conftest import auth, open_whatsapp_window

pytestmark = pytest.mark.anyio
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40


async def messages(g: Gateway, **params: str) -> list[dict[str, Any]]:
    resp = await g.client.get("/v1/messages", params=params, headers=auth(g.seed.team_key))
    assert resp.status_code == 200, resp.text
    data: list[dict[str, Any]] = resp.json()["data"]
    return data


async def stored(g: Gateway, message_id: str) -> Message:
    msg = await g.rt.store.get_message(message_id)
    assert msg is not None
    return msg


async def send(g: Gateway, text: str = "Hallo zurück", **extra: Any) -> str:
    body = {"channel": "whatsapp", "from": BUSINESS, "to": USER, "text": text, **extra}
    resp = await g.client.post("/v1/messages", json=body, headers=auth(g.seed.team_key))
    assert resp.status_code == 202, resp.text
    message_id: str = resp.json()["id"]
    assert await worker(g.rt).run_once()
    return message_id


async def history(g: Gateway, message_id: str) -> list[str]:
    return [h.status for h in await g.rt.store.status_history(message_id)]


async def test_inbound_text_and_its_duplicates_are_one_message(gateway: Gateway) -> None:
    g = gateway
    wamid = await g.sim.inject_inbound(USER, BUSINESS, "Grüße aus Köln", times=3)
    assert [d.status_code for d in g.sim.deliveries] == [200, 200, 200]
    assert b"\\u00fc" in g.sim.deliveries[0].body  # signed over ASCII-escaped JSON
    (msg,) = await messages(g)
    assert msg["direction"] == "inbound" and msg["status"] == "received"
    assert (msg["from"], msg["to"], msg["text"]) == (USER, BUSINESS, "Grüße aus Köln")
    full = await stored(g, msg["id"])
    assert full.carrier_id == wamid and full.meta["whatsapp"]["profile_name"] == "Simulated User"


async def test_metas_text_example_is_stored_once(gateway: Gateway) -> None:
    g = gateway
    body = payload("text.json")
    for _ in range(2):
        resp = await g.client.post(
            "/hooks/wa/",
            content=body,
            headers={"X-Hub-Signature-256": sign(g.sim.app_secret, body)},
        )
        assert resp.status_code == 200
    # Meta is given the bare path: it must be served too, not redirected (307).
    bare = await g.client.post(
        "/hooks/wa", content=body, headers={"X-Hub-Signature-256": sign(g.sim.app_secret, body)}
    )
    assert bare.status_code == 200
    verify = {"hub.mode": "subscribe", "hub.challenge": "42", "hub.verify_token": "nope"}
    assert (await g.client.get("/hooks/wa", params=verify)).status_code == 403
    # A second process would not have the connector's memory: the store dedupes too.
    g.connector._seen_inbound = type(g.connector._seen_inbound)()
    resp = await g.client.post(
        "/hooks/wa/", content=body, headers={"X-Hub-Signature-256": sign(g.sim.app_secret, body)}
    )
    assert resp.status_code == 200
    (msg,) = await messages(g)
    assert msg["from"] == "+16505551234" and msg["text"] == "Does it come in another color?"
    assert msg["created_at"] == "2025-06-08T20:59:43.000Z"


async def test_a_bad_signature_stores_nothing(gateway: Gateway) -> None:
    g = gateway
    body = payload("text.json")
    for headers in ({}, {"X-Hub-Signature-256": sign("guessed", body)}):
        resp = await g.client.post("/hooks/wa/", content=body, headers=headers)
        assert resp.status_code == 401
    assert await messages(g) == []
    assert await g.rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}


async def test_duplicated_batched_reordered_statuses_end_in_read(gateway: Gateway) -> None:
    g = gateway
    await g.sim.inject_inbound(USER, BUSINESS, "Hallo")
    g.sim.status_modes = {"duplicates", "out_of_order"}
    g.sim.batch_size = 10
    first, second = await send(g, "eins"), await send(g, "zwei")
    deliveries = await g.sim.flush()
    # One POST carries all six statuses (sent, read, delivered of both), posted twice.
    assert len(deliveries) == 2 and all(d.status_code == 200 for d in deliveries)
    assert len(deliveries[0].doc["entry"][0]["changes"][0]["value"]["statuses"]) == 6
    for message_id in (first, second):
        msg = await stored(g, message_id)
        assert msg.status == "read" and msg.error is None
        assert await history(g, message_id) == ["accepted", "sending", "sent", "read"]
    assert len(await messages(g, direction="outbound")) == 2


async def test_skipped_delivered_still_ends_in_read(gateway: Gateway) -> None:
    g = gateway
    await g.sim.inject_inbound(USER, BUSINESS, "Hallo")
    g.sim.status_modes = {"skip_delivered"}
    message_id = await send(g)
    await g.sim.flush()
    assert (await stored(g, message_id)).status == "read"
    assert "delivered" not in await history(g, message_id)


async def test_asynchronous_failure_and_late_reports_after_it(gateway: Gateway) -> None:
    g = gateway
    await g.sim.inject_inbound(USER, BUSINESS, "Hallo")
    g.sim.fail_async(131026)
    g.sim.status_modes = {"duplicates"}
    message_id = await send(g)
    await g.sim.flush()
    msg = await stored(g, message_id)
    assert msg.status == "failed"
    assert msg.error is not None
    assert (msg.error["code"], msg.error["carrier_code"], msg.error["retryable"]) == (
        "unreachable",
        "131026",
        False,
    )
    # A late "delivered" (Meta's order is not guaranteed) changes nothing.
    g.sim._queue("106540352242922", str(msg.carrier_id), USER.lstrip("+"), "delivered", None)
    await g.sim.flush()
    assert (await stored(g, message_id)).status == "failed"
    assert await history(g, message_id) == ["accepted", "sending", "sent", "failed"]


async def test_the_simulators_window_closes_like_metas(gateway: Gateway) -> None:
    # The gateway saw the contact write (through another connector), Meta did not: Meta
    # accepts the free-form message, then reports 131047.
    g = gateway
    await open_whatsapp_window(g.rt, BUSINESS, USER)
    message_id = await send(g)
    await g.sim.flush()
    msg = await stored(g, message_id)
    assert msg.status == "failed"
    assert msg.error is not None and msg.error["code"] == "whatsapp_window_closed"
    assert msg.error["carrier_code"] == "131047"


async def test_auth_error_keeps_the_message_queued_and_readyz_unhealthy(gateway: Gateway) -> None:
    g = gateway
    await g.sim.inject_inbound(USER, BUSINESS, "Hallo")
    good = g.sim.access_token
    g.sim.access_token = "rotated"  # the connector's token no longer works
    message_id = await send(g)
    msg = await stored(g, message_id)
    assert msg.status == "queued" and msg.error is None
    (job,) = [j for j in [await _send_job(g, message_id)] if j is not None]
    assert job.attempts == 0  # the attempt was given back
    ready = await g.client.get("/readyz")
    assert ready.status_code == 503 and ready.json() == {"status": "unavailable"}
    # Why: for the operator's eyes only (the public probe shows no carrier's words).
    _, operator = await create_key(g.rt.store, g.rt.clock, "", operator=True)
    health = await g.client.get("/v1/health", headers=auth(operator))
    detail = health.json()["checks"]["connectors"]["wa"]
    assert detail["ok"] is False and "(190)" in detail["detail"]
    # While unhealthy the dispatcher does not even try (and uses no attempt).
    g.rt.clock.advance(seconds=61)  # type: ignore[attr-defined]
    sends_before = len(g.sim.sends)
    assert await worker(g.rt).run_once()
    assert len(g.sim.sends) == sends_before
    assert (await stored(g, message_id)).status == "queued"
    # The token is fixed at Meta: the probe notices, and the message goes out.
    g.sim.access_token = good
    assert await g.connector.probe()
    assert (await g.client.get("/readyz")).status_code == 200
    g.rt.clock.advance(seconds=61)  # type: ignore[attr-defined]
    assert await worker(g.rt).run_once()
    assert (await stored(g, message_id)).status == "sent"


async def _send_job(g: Gateway, message_id: str) -> Any:
    # The send job is the only job: find it through a lease-free look at the store.
    for state_job in await _all_jobs(g):
        if state_job.payload.get("message_id") == message_id:
            return state_job
    return None


async def _all_jobs(g: Gateway) -> list[Any]:
    jobs = []
    counts = await g.rt.store.job_counts()
    assert counts["ready"] >= 1
    # Lease with a clock far ahead, look, and give the attempt back.
    far = g.rt.clock.now() + timedelta(days=1)
    job = await g.rt.store.lease_job(far, "peek", timedelta(seconds=1))
    if job is not None:
        jobs.append(job)
        await g.rt.store.retry_job(job.id, job.token or "", job.run_at, "peek", refund=True)
        job.attempts -= 1
    return jobs


async def test_inbound_media_arrives_through_a_durable_job(gateway: Gateway) -> None:
    g = gateway
    g.sim.expire_next_urls = 1  # the first URL is already gone: a fresh one is fetched
    wamid = await g.sim.inject_inbound(
        USER, BUSINESS, "das Foto", media=JPEG, mime_type="image/jpeg"
    )
    assert g.sim.deliveries[-1].status_code == 200
    # Answered before the download: the message waits in a job, safe from a crash.
    assert await messages(g) == []
    assert await g.rt.store.job_counts() == {"ready": 1, "leased": 0, "dead": 0}
    assert await worker(g.rt).run_once()
    assert g.sim.url_requests == 2
    (msg,) = await messages(g)
    assert msg["text"] == "das Foto" and len(msg["attachments"]) == 1
    att = await g.client.get(
        f"/v1/attachments/{msg['attachments'][0]}", headers=auth(g.seed.team_key)
    )
    assert att.json()["sha256"] == hashlib.sha256(JPEG).hexdigest()
    assert att.json()["size"] == len(JPEG) and att.json()["content_type"] == "image/jpeg"
    content = await g.client.get(
        f"/v1/attachments/{msg['attachments'][0]}/content", headers=auth(g.seed.team_key)
    )
    assert content.content == JPEG
    assert (await stored(g, msg["id"])).carrier_id == wamid
    # Meta re-sends the webhook: no second job, no second message.
    await g.sim.post_body(g.sim.deliveries[-1].body, "inbound")
    assert await g.rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}


async def test_corrupt_media_is_refused_and_the_message_kept(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    g = gateway
    original = g.sim._store_media

    def corrupting(data: bytes, mime: str, pnid: str) -> Any:
        item = original(data, mime, pnid)
        g.sim.corrupt_media.add(item.id)
        return item

    g.sim._store_media = corrupting  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="connectors.whatsapp"):
        await g.sim.inject_inbound(USER, BUSINESS, "kaputt", media=JPEG, mime_type="image/jpeg")
        assert await worker(g.rt).run_once()
    (msg,) = await messages(g)
    assert msg["text"] == "kaputt" and msg["attachments"] == []
    error = (await stored(g, msg["id"])).meta["whatsapp"]["media_error"]
    assert error["refused"] is True and "SHA-256 mismatch" in error["reason"]
    assert any("refused" in r.getMessage() and "SHA-256" in r.getMessage() for r in caplog.records)
    assert not g.rt.blobs.exists(hashlib.sha256(JPEG).hexdigest())


async def test_media_that_cannot_be_fetched_yet_is_retried_then_given_up(gateway: Gateway) -> None:
    g = gateway
    g.sim.expire_next_urls = 3  # three 404s: this attempt fails
    await g.sim.inject_inbound(USER, BUSINESS, None, media=JPEG, mime_type="image/jpeg")
    assert await worker(g.rt).run_once()
    assert await messages(g) == []
    jobs = await _all_jobs(g)
    assert jobs[0].kind == MEDIA_JOB and jobs[0].attempts == 1
    assert "media download failed" in str(jobs[0].last_error)
    g.rt.clock.advance(seconds=6)  # type: ignore[attr-defined]
    assert await worker(g.rt).run_once()
    (msg,) = await messages(g)
    assert len(msg["attachments"]) == 1 and msg["text"] is None


async def test_outbound_attachment_through_the_api(gateway: Gateway) -> None:
    g = gateway
    await g.sim.inject_inbound(USER, BUSINESS, "Hallo")
    up = await g.client.post(
        "/v1/attachments",
        files={"file": ("photo.jpg", JPEG, "image/jpeg")},
        headers=auth(g.seed.team_key),
    )
    assert up.status_code == 201, up.text
    message_id = await send(g, "hier", attachments=[up.json()["id"]])
    assert (await stored(g, message_id)).status == "sent"
    (media_id,) = g.sim.media
    assert g.sim.media[media_id].data == JPEG
    assert g.sim.sends[-1].payload["image"] == {"id": media_id, "caption": "hier"}
