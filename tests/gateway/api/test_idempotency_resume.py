"""A send with an Idempotency-Key whose first attempt died half-way, on both backends.

Found by ``bench/chaos.py``: an API process killed between storing a message and storing
the key's answer left the key claimed, so every retry answered 409 for five minutes, and
the first retry after the claim expired stored (and charged) the message a second time.
The same happened when the store's answer was lost (Redis killed while the send's script
ran). Now the message id is reserved with the key: a retry resumes the first attempt and
answers the message it stored, or stores it once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway.api.idempotency import RESUMABLE_CLAIM_TTL
from gateway.auth import Principal
from gateway.commands import SendRequest, convert
from gateway.ids import new_id
from gateway.outbound import submit
from gateway.runtime import Runtime
from tests.gateway.api.test_messages import expect_problem, sms
from tests.gateway.conftest import Seed, auth

pytestmark = pytest.mark.anyio
PERIOD = "2026-03"  # the frozen clock's month


async def used_units(rt: Runtime, seed: Seed) -> int:
    lines, _ = await rt.store.ledger(seed.team.id, PERIOD)
    return sum(ln.used for ln in lines)


async def stored_ids(client: httpx.AsyncClient, seed: Seed) -> list[str]:
    page = (await client.get("/v1/messages?limit=200", headers=auth(seed.team_key))).json()
    return [m["id"] for m in page["data"]]


def fingerprint_of(body: bytes) -> str:
    """The fingerprint ``idempotent`` computes for a POST /v1/messages with ``body``."""
    import hashlib

    digest = hashlib.sha256()
    for part in (b"POST", b"/v1/messages", body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


async def test_a_send_stored_by_an_attempt_that_died_is_answered_not_sent_again(
    client: httpx.AsyncClient, seed: Seed, rt: Runtime
) -> None:
    """The first attempt claimed the key and stored the message, then its process died
    before it stored the answer: the retry answers that message (no 409, no second one)."""
    body = httpx.Request("POST", "/", json=sms("first try")).content
    ref = new_id("msg")
    now = rt.clock.now()
    key = "order-died-after-store"
    claimed = await rt.store.idem_claim(
        seed.team.id, key, fingerprint_of(body), now, RESUMABLE_CLAIM_TTL, ref
    )
    assert claimed is None
    principal = Principal(seed.team.id, None, "key")
    first = await submit(rt, principal, convert(SendRequest, sms("first try")), message_id=ref)
    assert (await used_units(rt, seed)) == 1

    headers = {**auth(seed.team_key), "Idempotency-Key": key, "Content-Type": "application/json"}
    retry = await client.post("/v1/messages", content=body, headers=headers)
    assert retry.status_code == 202, retry.text
    assert retry.json()["id"] == first.message.id == ref
    again = await client.post("/v1/messages", content=body, headers=headers)
    assert again.status_code == 202 and again.json()["id"] == ref
    assert again.headers["idempotency-replayed"] == "true"
    assert await stored_ids(client, seed) == [ref]
    assert await used_units(rt, seed) == 1
    assert (await rt.store.job_counts())["ready"] == 1  # one send job


async def test_a_send_whose_attempt_died_before_storing_is_stored_once_at_the_retry(
    client: httpx.AsyncClient, seed: Seed, rt: Runtime
) -> None:
    """The first attempt claimed the key and died before storing anything: the retry
    stores the message at once, under the id reserved with the key."""
    body = httpx.Request("POST", "/", json=sms("never stored")).content
    ref = new_id("msg")
    key = "order-died-before-store"
    fp = fingerprint_of(body)
    assert (
        await rt.store.idem_claim(seed.team.id, key, fp, rt.clock.now(), RESUMABLE_CLAIM_TTL, ref)
        is None
    )
    headers = {**auth(seed.team_key), "Idempotency-Key": key, "Content-Type": "application/json"}
    retry = await client.post("/v1/messages", content=body, headers=headers)
    assert retry.status_code == 202, retry.text
    assert retry.json()["id"] == ref
    assert await stored_ids(client, seed) == [ref]
    assert await used_units(rt, seed) == 1


def failing_once(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, *, after_storing: bool
) -> Callable[[], int]:
    """Make the next ``submit_outbound`` fail as an unreachable Redis does, before it
    reached the store or after the store did the work (the answer lost on the way)."""
    real = rt.store.submit_outbound
    calls = 0

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            if after_storing:
                await real(*args, **kwargs)
            raise RedisConnectionError("Connection reset by peer")
        return await real(*args, **kwargs)

    monkeypatch.setattr(rt.store, "submit_outbound", flaky)
    return lambda: calls


@pytest.mark.parametrize("after_storing", [False, True], ids=["lost-request", "lost-answer"])
async def test_a_send_the_store_dropped_is_retried_safely(
    client: httpx.AsyncClient,
    seed: Seed,
    rt: Runtime,
    monkeypatch: pytest.MonkeyPatch,
    after_storing: bool,
) -> None:
    """The store went away during the send: 503 (not 500), and the retry with the same key
    answers 202 with exactly one message stored and charged, whether the store had done the
    work or not."""
    calls = failing_once(rt, monkeypatch, after_storing=after_storing)
    headers = {**auth(seed.team_key), "Idempotency-Key": f"order-{after_storing}"}
    first = await client.post("/v1/messages", json=sms("flaky"), headers=headers)
    body = await expect_problem(first, 503, "store_unavailable")
    assert first.headers["retry-after"] == "1"
    assert "Idempotency-Key" in str(body["detail"])
    retry = await client.post("/v1/messages", json=sms("flaky"), headers=headers)
    assert retry.status_code == 202, retry.text
    assert calls() == 2
    assert await stored_ids(client, seed) == [retry.json()["id"]]
    assert await used_units(rt, seed) == 1
    again = await client.post("/v1/messages", json=sms("flaky"), headers=headers)
    assert again.json()["id"] == retry.json()["id"]


async def test_concurrent_duplicates_get_the_one_message(
    client: httpx.AsyncClient, seed: Seed, rt: Runtime
) -> None:
    """Requests with one key racing each other all answer the one message."""
    import asyncio

    headers = {**auth(seed.team_key), "Idempotency-Key": "order-race"}
    results = await asyncio.gather(
        *(client.post("/v1/messages", json=sms("race"), headers=headers) for _ in range(8))
    )
    assert {r.status_code for r in results} == {202}
    assert len({r.json()["id"] for r in results}) == 1
    assert await used_units(rt, seed) == 1
    assert (await rt.store.job_counts())["ready"] == 1


async def test_the_fast_path_answers_503_when_the_store_is_unreachable(
    client: httpx.AsyncClient, seed: Seed, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an Idempotency-Key (the fast path) an unreachable store is a 503 problem
    too, and nothing was stored."""
    failing_once(rt, monkeypatch, after_storing=False)
    resp = await client.post("/v1/messages", json=sms("fast"), headers=auth(seed.team_key))
    await expect_problem(resp, 503, "store_unavailable")
    assert resp.headers["retry-after"] == "1"
    assert await stored_ids(client, seed) == []
    ok = await client.post("/v1/messages", json=sms("fast"), headers=auth(seed.team_key))
    assert ok.status_code == 202
