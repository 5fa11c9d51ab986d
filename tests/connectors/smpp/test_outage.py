"""The SMSC down for a minute, through the whole gateway, on both stores.

The send jobs' schedule runs on the gateway's frozen clock, stepped a second at a time
(the minute takes seconds); the connector's own reconnect timer is real time, with
``reconnect_min``/``reconnect_max`` shortened to 0.3/0.5 s. One message is on the wire
when the SMSC drops the connection (the submit never reached it), the others are queued
while it is down. Afterwards every message reaches the SMSC exactly once, no retry used
up an attempt while the connector was known to be down, and each wait stayed within the
dispatcher's bounds.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from connectors.smpp.simulator import SmscSimulator
from gateway.auth import Principal
from gateway.clock import FrozenClock
from gateway.commands import SendRequest, convert
from gateway.config import ConnectorConfig, parse_settings
from gateway.dispatch import AUTH_RETRY, SEND_RETRY_FIRST, UNHEALTHY_RETRY_MIN
from gateway.outbound import submit
from gateway.process import open_runtime, worker
from gateway.retry import JITTER
from gateway.runtime import Runtime
from tests.connectors.smpp.conftest import eventually
from tests.gateway.conftest import MOBILE_B, record_retries, seed_directory

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
OUTAGE = timedelta(seconds=60)
RECONNECT_MAX = 0.5


@pytest.fixture
async def rt(
    url: str, tmp_path: Path, clock: FrozenClock, smsc: SmscSimulator
) -> AsyncIterator[Runtime]:
    settings = parse_settings({"gateway": {"store": url, "blobs": str(tmp_path / "blobs")}})
    options = {
        "host": "127.0.0.1",
        "port": smsc.port,
        "system_id": "gateway",
        "password": "secret",
        "rate": 0,
        "reconnect_min": 0.3,
        "reconnect_max": RECONNECT_MAX,
    }
    smpp = ConnectorConfig("sms1", "smpp", frozenset({"sms"}), None, options)
    runtime = await open_runtime(dataclasses.replace(settings, connectors=(smpp,)), clock=clock)
    await runtime.wait_started()
    try:
        yield runtime
    finally:
        await runtime.aclose()


async def test_smsc_down_for_a_minute(
    rt: Runtime, smsc: SmscSimulator, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed = await seed_directory(rt, clock)
    principal = Principal(seed.team.id, None, "test")
    retries = record_retries(rt, monkeypatch)
    jobs = worker(rt)

    async def send(n: int) -> str:
        body = {"channel": "sms", "from": MOBILE_B, "to": "+4917612345678", "text": f"n{n}"}
        return (await submit(rt, principal, convert(SendRequest, body))).message.id

    # On the wire when the SMSC goes: the connection drops before it took the submit, and
    # the SMSC is gone before the connector's first reconnect (reconnect_min later).
    smsc.drop_on_submit(1, accept=False)
    ids = [await send(0)]
    first = asyncio.create_task(jobs.run_once())
    await eventually(lambda: not rt.health()["sms1"].ok)
    await smsc.stop()
    assert await first  # its tries in the run failed: a durable retry
    start = clock.now()
    ids += [await send(n) for n in range(1, 6)]

    async def tick() -> None:
        while await jobs.run_once():
            pass
        clock.advance(seconds=1)
        await asyncio.sleep(0.01)  # real time for the connector's reconnect attempts

    while clock.now() < start + OUTAGE:
        await tick()
    await smsc.start()  # the same port
    loop = asyncio.get_running_loop()
    back_real = loop.time()
    await eventually(lambda: rt.health()["sms1"].ok)  # the bind's own (real) timer
    rebind = loop.time() - back_real
    back = clock.now()
    sent_at: dict[str, datetime] = {}
    for _ in range(300):
        for mid in ids:
            msg = await rt.store.get_message(mid)
            assert msg is not None and msg.status != "failed", msg
            if msg.status in ("sent", "delivered") and mid not in sent_at:
                sent_at[mid] = clock.now()
        if len(sent_at) == len(ids):
            break
        await tick()
    assert len(sent_at) == len(ids), "not every message was sent after the SMSC came back"

    texts = sorted(s.text for s in smsc.submits if s.status == 0)
    assert texts == sorted(f"n{n}" for n in range(6))  # exactly once each
    # The message on the wire got the send job's backoff once (an attempt used); every
    # other wait was for a connector known to be down: refunded, between the bounds.
    [used] = [wait for _, wait, refund in retries if not refund]
    assert SEND_RETRY_FIRST * (1 - JITTER) <= used <= SEND_RETRY_FIRST  # its first backoff
    down = [wait for _, wait, refund in retries if refund]
    assert down and all(
        UNHEALTHY_RETRY_MIN.total_seconds() <= w <= AUTH_RETRY.total_seconds() for w in down
    )
    # Recovery: the bind returns within reconnect_max (real time, plus a connect), then
    # every queued send goes at its next try: at most the longest wait it was given, on
    # the gateway clock.
    assert rebind < RECONNECT_MAX + 2.0, rebind
    recovery = (max(sent_at.values()) - back).total_seconds()
    assert recovery <= max(down), (recovery, max(down))
