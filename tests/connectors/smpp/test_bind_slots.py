"""Bind slots in one process (time injected through LocalCoordination where it matters):
every slot is this process's at once, an API-only process binds nothing, a lost slot ends
its session, and closing gives the slots back."""

from __future__ import annotations

import dataclasses

import pytest

from connectors.base import ConnectorContext
from connectors.smpp.connector import SmppConnector
from connectors.smpp.simulator import SmscSimulator
from gateway.config import ConnectorConfig
from gateway.coordination import LocalCoordination
from tests.connectors.smpp.conftest import Make, eventually

pytestmark = pytest.mark.anyio


async def test_one_process_takes_every_slot_at_once(make: Make, sim: SmscSimulator) -> None:
    c = make(binds=3)
    await c.start()
    assert sim.bound == 3 and c.health().ok
    shared = c.ctx.shared
    assert await shared.slots_held("smpp:sms1", 3) == 3
    await c.aclose()
    assert await shared.slots_held("smpp:sms1", 3) == 0  # given back


async def test_an_api_only_process_binds_nothing(
    context: ConnectorContext, sim: SmscSimulator
) -> None:
    opts = {"host": "127.0.0.1", "port": sim.port, "system_id": "gw", "password": "secret"}
    ctx = dataclasses.replace(context, sends=False)
    c = SmppConnector(ConnectorConfig("sms1", "smpp", frozenset({"sms"}), None, opts), ctx)
    await c.start()
    try:
        assert sim.bound == 0 and sim.binds == []
        assert c.health().ok and "API-only" in c.health().detail
    finally:
        await c.aclose()


async def test_slots_held_elsewhere_leave_the_connector_waiting(
    context: ConnectorContext, sim: SmscSimulator
) -> None:
    shared = LocalCoordination()
    assert await shared.claim_slot("smpp:sms1", 1, "another process", 3600) == 0
    opts = {"host": "127.0.0.1", "port": sim.port, "system_id": "gw", "password": "secret",
            "bind_lease": 0.05}  # fmt: skip
    ctx = dataclasses.replace(context, shared=shared)
    c = SmppConnector(ConnectorConfig("sms1", "smpp", frozenset({"sms"}), None, opts), ctx)
    await c.start()  # starts, without a bind
    try:
        assert sim.bound == 0
        health = c.health()
        assert not health.ok and "held by another process" in health.detail
        assert health.retry_after is not None
        await shared.release_slot("smpp:sms1", 0, "another process")
        await eventually(lambda: sim.bound == 1)  # the slot came free: it binds
        # The slot is taken away (as if its lease had run out and another took it):
        # the session ends at the next renewal.
        shared._slots.clear()
        assert await shared.claim_slot("smpp:sms1", 1, "another process", 3600) == 0
        await eventually(lambda: sim.bound == 0)
    finally:
        await c.aclose()


async def test_the_rate_is_shared_by_the_slots_held(
    context: ConnectorContext, sim: SmscSimulator
) -> None:
    shared = LocalCoordination()
    assert await shared.claim_slot("smpp:sms1", 2, "another process", 3600) == 0
    opts = {"host": "127.0.0.1", "port": sim.port, "system_id": "gw", "password": "secret",
            "binds": 2, "rate": 100}  # fmt: skip
    ctx = dataclasses.replace(context, shared=shared)
    c = SmppConnector(ConnectorConfig("sms1", "smpp", frozenset({"sms"}), None, opts), ctx)
    await c.start()
    try:
        assert sim.bound == 1
        # One of the two slots: half of the 100 submit_sm per second.
        assert c._limiter.interval == pytest.approx(1 / 50)
    finally:
        await c.aclose()
