"""Retention on both backends, time injected: events older than ``events_days`` and
expired idempotency records are pruned in small batches; messages are kept; the keys
are configurable and checked."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import httpx
import pytest

from gateway import retention
from gateway.clock import FrozenClock
from gateway.config import Retention, parse_settings
from gateway.errors import ConfigError
from gateway.events import MESSAGE_RECEIVED
from gateway.ids import new_id
from gateway.models import Event
from gateway.runtime import Runtime
from tests.gateway.conftest import CONTACT, MOBILE_A, Seed, auth

pytestmark = pytest.mark.anyio


def event(clock: FrozenClock) -> Event:
    return Event(new_id("evt"), MESSAGE_RECEIVED, "team_a", {}, clock.now())


async def test_events_are_pruned_after_their_days_in_batches(
    rt: Runtime, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = await rt.store.append_events([event(clock) for _ in range(5)])
    clock.advance(days=20)
    middle = await rt.store.append_events([event(clock)])
    clock.advance(days=11)  # the first five are 31 days old, the sixth 11
    new = await rt.store.append_events([event(clock)])
    settings = dataclasses.replace(rt.settings, retention=Retention(events_days=30, batch=2))
    monkeypatch.setattr(rt, "settings", settings)
    calls: list[int] = []
    prune = rt.store.prune_events

    async def counted(before: object, limit: int) -> int:
        n = await prune(before, limit)  # type: ignore[arg-type]
        calls.append(n)
        return n

    monkeypatch.setattr(rt.store, "prune_events", counted)
    swept = await retention.prune_core(rt)
    assert swept["events"] == 5 and calls == [2, 2, 1]  # small batches until one is short
    left = await rt.store.list_events(0, 100)
    assert [e.seq for e in left] == [middle[0].seq, new[0].seq]
    assert old[-1].seq < left[0].seq
    assert (await retention.prune_core(rt))["events"] == 0


async def test_idempotency_records_expire_and_messages_stay(
    rt: Runtime, seed: Seed, client: httpx.AsyncClient, clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    settings = dataclasses.replace(rt.settings, retention=Retention(idempotency_hours=1))
    monkeypatch.setattr(rt, "settings", settings)
    body = {"channel": "sms", "from": MOBILE_A, "to": CONTACT, "text": "hi"}
    headers = {**auth(seed.anna_key), "Idempotency-Key": "k1"}
    first = await client.post("/v1/messages", json=body, headers=headers)
    assert first.status_code == 202, first.text
    again = await client.post("/v1/messages", json=body, headers=headers)
    assert again.headers.get("Idempotency-Replayed") == "true"
    clock.advance(hours=1, seconds=1)
    await retention.prune_core(rt)
    clock.advance(days=31)
    swept = await retention.prune_core(rt)
    assert swept["events"] >= 1  # the send's events are gone
    # Past idempotency_hours the key is free again: a new message, not a replay.
    later = await client.post("/v1/messages", json=body, headers=headers)
    assert later.status_code == 202 and later.json()["id"] != first.json()["id"]
    assert "Idempotency-Replayed" not in later.headers
    # The message itself is kept.
    kept = await client.get(f"/v1/messages/{first.json()['id']}", headers=auth(seed.anna_key))
    assert kept.status_code == 200


async def test_sqlite_deletes_expired_idempotency_rows(
    tmp_path: object, clock: FrozenClock
) -> None:
    from gateway.store import make_store

    store = make_store(f"sqlite:///{tmp_path}/g.db")
    await store.open()
    try:
        for i in range(3):
            await store.idem_claim("team", f"k{i}", "fp", clock.now(), timedelta(minutes=1))
            await store.idem_complete("team", f"k{i}", 200, "{}", clock.now(), timedelta(hours=1))
        assert await store.prune_idempotency(clock.now(), 10) == 0
        clock.advance(hours=2)
        assert await store.prune_idempotency(clock.now(), 2) == 2
        assert await store.prune_idempotency(clock.now(), 2) == 1
    finally:
        await store.aclose()


def test_retention_keys_are_parsed_and_checked() -> None:
    settings = parse_settings({"retention": {"events_days": 7, "idempotency_hours": 2.5}})
    assert settings.retention.events == timedelta(days=7)
    assert settings.retention.idempotency == timedelta(hours=2.5)
    assert settings.retention.webhook_deliveries == timedelta(days=30)  # the default
    assert parse_settings({}).retention == Retention()
    for bad, says in [
        ({"events": 1}, "retention.events: unknown key"),
        ({"events_days": 0}, "retention.events_days: must be greater than 0"),
        ({"batch": 1.5}, "retention.batch: expected int"),
        ({"events_days": True}, "retention.events_days: expected a number"),
    ]:
        with pytest.raises(ConfigError, match=says):
            parse_settings({"retention": bad})
