"""API keys: expiry, members deactivated (reads refused too), operator keys, and a
revocation that ends a key on every process sharing the store within ``EPOCH_CHECK``
seconds — not after the 30 s the resolver caches a key for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from gateway import auth
from gateway.api.app import create_app
from gateway.auth import EPOCH_CHECK, KeyCache, create_key, keys_changed, revoke_key
from gateway.clock import FrozenClock
from gateway.errors import Forbidden, Unauthorized, ValidationError
from gateway.runtime import Runtime
from tests.gateway.conftest import Seed, runtime_on
from tests.gateway.conftest import auth as bearer

pytestmark = pytest.mark.anyio


class Ticks:
    """A monotonic clock the test steps (the key cache's look at the epoch)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def second(url: str, tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Runtime]:
    """Another process's runtime on the same store (Redis: shared by both)."""
    async with runtime_on(url, tmp_path, clock) as runtime:
        yield runtime


def client_of(rt: Runtime, ticks: Ticks) -> httpx.AsyncClient:
    app = create_app(rt, workers=False)
    app.state.keys._monotonic = ticks  # the fast path shares this very cache
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw.test")


@pytest.mark.parametrize("backend", ["redis"], indirect=True)
async def test_a_revocation_ends_a_key_on_every_process_within_the_epoch_check(
    rt: Runtime, second: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    ticks = Ticks()
    key, secret = await create_key(rt.store, clock, seed.team.id, seed.ben.id)
    body = {"channel": "sms", "from": seed.ben.mobile, "to": "+4917612345678", "text": "x"}
    async with client_of(rt, ticks) as a, client_of(second, ticks) as b:
        for c in (a, b):  # both processes cache the key
            assert (await c.get("/v1/messages", headers=bearer(secret))).status_code == 200
            assert (
                await c.post("/v1/messages", json=body, headers=bearer(secret))
            ).status_code == 202
        assert await revoke_key(second.store, seed.team.id, key.id)
        ticks.now += EPOCH_CHECK  # half a second later; the keys' 30 s are far from over
        for c in (a, b):
            r = await c.get("/v1/messages", headers=bearer(secret))
            assert r.status_code == 401 and r.json()["detail"] == "unknown API key"
            r = await c.post("/v1/messages", json=body, headers=bearer(secret))  # fast path
            assert r.status_code == 401
        # Other keys keep working (and are looked up again once).
        assert (await a.get("/v1/messages", headers=bearer(seed.ben_key))).status_code == 200
    assert not await revoke_key(rt.store, seed.team.id, key.id)


@pytest.mark.parametrize("backend", ["sqlite", "redis"], indirect=True)
async def test_a_deactivated_members_keys_stop_for_reads_too(
    rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    ticks = Ticks()
    async with client_of(rt, ticks) as c:
        assert (await c.get("/v1/messages", headers=bearer(seed.ben_key))).status_code == 200
        await rt.store.set_member_active(seed.ben.id, False, 10)
        await keys_changed(rt.store)  # what the portal's deactivation does
        ticks.now += EPOCH_CHECK
        for path in ("/v1/messages", "/v1/conversations", "/v1/quota"):
            r = await c.get(path, headers=bearer(seed.ben_key))
            assert r.status_code == 401, path
            assert r.json()["detail"] == "this API key's member is deactivated"
        assert (await c.get("/v1/messages", headers=bearer(seed.team_key))).status_code == 200
        await rt.store.set_member_active(seed.ben.id, True, 10)
        assert (await c.get("/v1/messages", headers=bearer(seed.ben_key))).status_code == 200


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_key_with_an_expiry_stops_then(rt: Runtime, seed: Seed, clock: FrozenClock) -> None:
    _, secret = await create_key(
        rt.store, clock, seed.team.id, expires_at=clock.now() + timedelta(hours=1)
    )
    keys = KeyCache(rt.store, clock=clock)
    assert (await keys.resolve(f"Bearer {secret}")).team_id == seed.team.id
    clock.advance(minutes=59)
    await keys.resolve(f"Bearer {secret}")  # cached, still valid
    clock.advance(minutes=1)
    with pytest.raises(Unauthorized, match="expired"):
        await keys.resolve(f"Bearer {secret}")
    with pytest.raises(ValidationError):
        await create_key(rt.store, clock, seed.team.id, expires_at=clock.now())


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_operator_keys_serve_the_operator_routes_only(
    rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    _, secret = await create_key(rt.store, clock, "", operator=True)
    keys = KeyCache(rt.store, clock=clock)
    assert (await keys.resolve(f"Bearer {secret}", operator=True)).operator
    with pytest.raises(Unauthorized):
        await keys.resolve(f"Bearer {secret}")
    with pytest.raises(Forbidden):
        await keys.resolve(f"Bearer {seed.team_key}", operator=True)
    with pytest.raises(ValidationError):
        await create_key(rt.store, clock, seed.team.id, operator=True)
    assert auth.OPERATOR_ONLY.startswith("this route takes an operator key")


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_the_epoch_is_read_once_per_interval(
    rt: Runtime, seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = Ticks()
    keys = KeyCache(rt.store, clock=rt.clock, monotonic=ticks)
    reads = []
    real = rt.store.get_setting

    async def get_setting(scope: str) -> object:
        reads.append(scope)
        return await real(scope)

    monkeypatch.setattr(rt.store, "get_setting", get_setting)
    header = f"Bearer {seed.team_key}"
    await asyncio.gather(*(keys.resolve(header) for _ in range(20)))
    ticks.now += EPOCH_CHECK / 2
    await asyncio.gather(*(keys.resolve(header) for _ in range(20)))
    assert reads == [auth.EPOCH_SCOPE]
    ticks.now += EPOCH_CHECK / 2
    await asyncio.gather(*(keys.resolve(header) for _ in range(20)))
    assert reads == [auth.EPOCH_SCOPE] * 2
