"""The dispatcher and the inbound path through the fake connector, on both backends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from connectors.base import StatusReport
from gateway.clock import FrozenClock
from gateway.models import Message
from gateway.process import worker
from gateway.runtime import Runtime
from tests.connectors.fake import FakeConnector
from tests.gateway.conftest import CONTACT, MOBILE_A, Seed, auth

pytestmark = pytest.mark.anyio


def fake(rt: Runtime) -> FakeConnector:
    connector = rt.connectors["fake1"].connector
    assert isinstance(connector, FakeConnector)
    return connector


async def send(client: httpx.AsyncClient, seed: Seed, text: str = "Hallo") -> dict[str, Any]:
    body = {"channel": "sms", "from": MOBILE_A, "to": CONTACT, "text": text}
    resp = await client.post("/v1/messages", json=body, headers=auth(seed.team_key))
    assert resp.status_code == 202, resp.text
    data: dict[str, Any] = resp.json()
    return data


async def stored(rt: Runtime, message_id: str) -> Message:
    msg = await rt.store.get_message(message_id)
    assert msg is not None
    return msg


async def used(rt: Runtime, seed: Seed) -> int:
    lines, _ = await rt.store.ledger(seed.team.id, "2026-03")
    return sum(ln.used for ln in lines)


async def test_send_reaches_the_connector(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    msg = await send(client, seed)
    assert await worker(rt).run_once()
    assert [m.id for m in fake(rt).sent] == [msg["id"]]
    after = await stored(rt, msg["id"])
    assert after.status == "sent" and after.carrier_id == f"fake-{msg['id']}"
    history = [h.status for h in await rt.store.status_history(msg["id"])]
    assert history == ["accepted", "sending", "sent"]
    assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}
    assert not await worker(rt).run_once()


async def test_short_retry_inside_one_run(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    fake(rt).script = ["retry", "ok"]
    msg = await send(client, seed)
    assert await worker(rt).run_once()
    assert (await stored(rt, msg["id"])).status == "sent"


async def test_durable_retry_then_success(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    fake(rt).script = ["retry:30"]  # retry_after above the short-retry bound
    msg = await send(client, seed)
    assert await worker(rt).run_once()
    assert (await stored(rt, msg["id"])).status == "queued"
    assert not await worker(rt).run_once()  # not due yet
    clock.advance(seconds=31)
    assert await worker(rt).run_once()
    after = await stored(rt, msg["id"])
    assert after.status == "sent"
    assert [h.status for h in await rt.store.status_history(msg["id"])] == [
        "accepted",
        "sending",
        "queued",
        "sending",
        "sent",
    ]


async def test_permanent_error_fails_and_gives_units_back(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    fake(rt).script = ["permanent"]
    msg = await send(client, seed, "x" * 200)
    assert await used(rt, seed) == 2
    assert await worker(rt).run_once()
    after = await stored(rt, msg["id"])
    assert after.status == "failed"
    assert after.error == {
        "code": "invalid_number",
        "message": "number unknown",
        "carrier_code": "1",
        "retryable": False,
    }
    assert await used(rt, seed) == 0
    got = await client.get(f"/v1/messages/{msg['id']}", headers=auth(seed.team_key))
    assert got.json()["error"]["code"] == "invalid_number"


async def test_retries_exhausted_fail_the_message(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    attempts = rt.settings.job_max_attempts
    fake(rt).script = ["retry:30"] * attempts
    msg = await send(client, seed)
    for _ in range(attempts):
        assert await worker(rt).run_once()
        clock.advance(hours=2)
    after = await stored(rt, msg["id"])
    assert after.status == "failed" and after.error and after.error["retryable"] is True
    assert await used(rt, seed) == 0
    assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}


async def test_auth_error_keeps_the_message_queued(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    fake(rt).script = ["auth"]
    msg = await send(client, seed)
    assert await worker(rt).run_once()
    assert (await stored(rt, msg["id"])).status == "queued"
    assert (await client.get("/readyz")).status_code == 503
    # While the connector is unhealthy, the job waits without using up attempts.
    for _ in range(rt.settings.job_max_attempts + 2):
        clock.advance(minutes=2)
        assert await worker(rt).run_once()
    job = await rt.store.list_dead_jobs(10)
    assert job == []
    assert (await stored(rt, msg["id"])).status == "queued"
    fake(rt).healthy = True  # the operator fixed the token
    clock.advance(minutes=2)
    assert await worker(rt).run_once()
    assert (await stored(rt, msg["id"])).status == "sent"


async def test_crashing_connector_is_retried_not_lost(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    fake(rt).script = ["crash"]
    msg = await send(client, seed)
    assert await worker(rt).run_once()
    counts = await rt.store.job_counts()
    assert counts["ready"] == 1
    clock.advance(minutes=1)
    assert await worker(rt).run_once()
    assert (await stored(rt, msg["id"])).status == "sent"


async def test_delivery_reports_move_forward_only(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    msg = await send(client, seed)
    await worker(rt).run_once()
    carrier_id = f"fake-{msg['id']}"
    for status in ("delivered", "sent", "read", "delivered"):
        resp = await client.post("/hooks/fake1/status", json={"id": carrier_id, "status": status})
        assert resp.json() == {"known": True}
    after = await stored(rt, msg["id"])
    assert after.status == "read"
    unknown = await client.post("/hooks/fake1/status", json={"id": "nope", "status": "read"})
    assert unknown.json() == {"known": False}
    statuses = [
        e.data["status"] for e in await rt.store.list_events(0, 100) if e.type == "message.status"
    ]
    assert statuses == ["sending", "sent", "delivered", "read"]


async def test_inbound_lands_in_the_shared_conversation_once(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    out = await send(client, seed)
    body = {"id": "in-1", "from": CONTACT, "to": MOBILE_A, "text": "Danke!", "channel": "whatsapp"}
    first = (await client.post("/hooks/fake1/inbound", json=body)).json()
    second = (await client.post("/hooks/fake1/inbound", json=body)).json()
    assert first["message_id"] and first == second
    msg = await stored(rt, first["message_id"])
    assert msg.direction == "inbound" and msg.status == "received" and msg.units == 0
    assert msg.conversation_id == out["conversation_id"]
    conv = await rt.store.get_conversation(msg.conversation_id)
    assert conv is not None and conv.last_inbound_whatsapp_at == clock.now()
    received = [e for e in await rt.store.list_events(0, 100) if e.type == "message.received"]
    assert len(received) == 1 and received[0].data["id"] == msg.id
    inbox = await client.get(
        f"/v1/messages?conversation_id={out['conversation_id']}", headers=auth(seed.anna_key)
    )
    assert [m["direction"] for m in inbox.json()["data"]] == ["inbound", "outbound"]
    # A number nobody owns: not stored.
    stray = {**body, "id": "in-2", "to": "+4915199999999"}
    assert (await client.post("/hooks/fake1/inbound", json=stray)).json() == {"message_id": None}
    assert await used(rt, seed) == 1  # inbound is free


async def test_connector_lifecycle(rt: Runtime) -> None:
    connector = fake(rt)
    assert connector.started
    assert rt.route("sms", MOBILE_A) is connector
    assert rt.route("fax", "+4930123456701") is rt.connectors["faxfake"].connector
    await rt.aclose()
    assert connector.closed


async def test_worker_loop_runs_until_stopped(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    import asyncio

    stop = asyncio.Event()
    task = asyncio.create_task(worker(rt, concurrency=2).run(stop))
    msgs = [await send(client, seed, f"n{i}") for i in range(5)]
    for _ in range(200):
        statuses = {(await stored(rt, m["id"])).status for m in msgs}
        if statuses == {"sent"}:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert statuses == {"sent"}
    assert sorted(m.id for m in fake(rt).sent) == sorted(m["id"] for m in msgs)
    assert timedelta(seconds=rt.settings.job_visibility_seconds) > timedelta(0)


async def test_a_send_job_buried_by_dying_workers_fails_its_message(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    from gateway.dispatch import fail_dead_sends

    msg = await send(client, seed)
    visibility = timedelta(seconds=rt.settings.job_visibility_seconds)
    for i in range(rt.settings.job_max_attempts):  # each lease "dies" without an answer
        assert await rt.store.lease_job(clock.now(), f"doomed-{i}", visibility) is not None
        clock.advance(seconds=visibility.total_seconds() + 1)
    assert await rt.store.lease_job(clock.now(), "last", visibility) is None
    assert (await rt.store.job_counts())["dead"] == 1
    assert await fail_dead_sends(rt) == 1
    after = await stored(rt, msg["id"])
    assert after.status == "failed" and after.error and "died" in after.error["message"]
    assert await used(rt, seed) == 0
    assert await fail_dead_sends(rt) == 0  # once
    assert len(await rt.store.list_dead_jobs(10)) == 1  # still listed for the operator


async def test_multi_part_message_is_delivered_when_every_part_is(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    fake(rt).parts = 3
    msg = await send(client, seed, "a" * 307)
    assert await worker(rt).run_once()
    sink = rt.connectors["fake1"].connector.ctx.sink  # type: ignore[attr-defined]
    now = rt.clock.now()
    ids = [f"fake-{msg['id']}-{i}" for i in (1, 2, 3)]
    for part in (ids[1], ids[1], ids[0]):  # a duplicate receipt counts once
        after = await sink.status(StatusReport("fake1", part, "delivered", now))
        assert after is not None and after.status == "sent"
    after = await sink.status(StatusReport("fake1", ids[2], "delivered", now))
    assert after is not None and after.status == "delivered"
    assert sorted(after.meta["parts_delivered"]) == ids


async def test_one_failed_part_fails_the_message(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    fake(rt).parts = 2
    msg = await send(client, seed, "a" * 200)
    assert await worker(rt).run_once()
    sink = rt.connectors["fake1"].connector.ctx.sink  # type: ignore[attr-defined]
    now = rt.clock.now()
    await sink.status(StatusReport("fake1", f"fake-{msg['id']}-1", "delivered", now))
    error = {"code": "unreachable", "message": "UNDELIV", "carrier_code": "1", "retryable": False}
    after = await sink.status(StatusReport("fake1", f"fake-{msg['id']}-2", "failed", now, error))
    assert after is not None and after.status == "failed" and after.error == error


async def test_a_report_that_overtakes_its_send_is_applied_later(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    msg = await send(client, seed)
    sink = rt.connectors["fake1"].connector.ctx.sink  # type: ignore[attr-defined]
    early = StatusReport("fake1", f"fake-{msg['id']}", "delivered", clock.now())
    assert await sink.status(early) is None  # parked: the send has not been stored yet
    assert await worker(rt).run_once()  # the send job (due now); the report job is not due
    assert (await stored(rt, msg["id"])).status == "sent"
    clock.advance(seconds=3)
    assert await worker(rt).run_once()
    assert (await stored(rt, msg["id"])).status == "delivered"
    assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}


async def test_a_report_for_an_unknown_id_is_dropped_after_its_tries(
    rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    sink = rt.connectors["fake1"].connector.ctx.sink  # type: ignore[attr-defined]
    assert await sink.status(StatusReport("fake1", "nobody", "delivered", clock.now())) is None
    runs = 0
    for _ in range(20):
        clock.advance(seconds=120)
        runs += await worker(rt).run_once()
    assert runs == 5
    assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}
