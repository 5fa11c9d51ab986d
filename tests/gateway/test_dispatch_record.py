"""Recording a send the carrier took while the store cannot be reached, on both backends.

Found by ``bench/chaos.py``: Redis killed after the SMSC answered a submit_sm but before
the worker recorded it (``complete_send``) made the job run again once its lease expired,
and the SMSC got the message twice. Now the worker keeps trying to record it while it
holds the job's lease (which its heartbeat renews), and stops before the lease runs out.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway import dispatch
from gateway.clock import FrozenClock
from gateway.process import worker
from gateway.runtime import Runtime
from tests.gateway.conftest import Seed
from tests.gateway.test_dispatch import fake, send, stored

pytestmark = pytest.mark.anyio
TIMEOUT = 30.0  # seconds a test waits for something that must happen


def store_down(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, down: Any, during_outage: Any = None
) -> list[Exception | None]:
    """``complete_send`` fails as an unreachable Redis does while ``down()`` holds (calling
    ``during_outage()`` on each failure), then works; returns the outcome of every call
    (None: it went through)."""
    real = rt.store.complete_send
    outcomes: list[Exception | None] = []

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if down():
            if during_outage is not None:
                during_outage()
            exc = RedisConnectionError("Error 111 connecting to 127.0.0.1:6379")
            outcomes.append(exc)
            raise exc
        outcomes.append(None)
        return await real(*args, **kwargs)

    monkeypatch.setattr(rt.store, "complete_send", flaky)
    monkeypatch.setattr(dispatch, "RECORD_RETRY_FIRST", 0.01)
    monkeypatch.setattr(dispatch, "RECORD_RETRY_MAX", 0.02)
    return outcomes


async def test_a_send_is_recorded_once_the_store_is_back(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    msg = await send(client, seed)
    calls = 0

    def down() -> bool:
        nonlocal calls
        calls += 1
        return calls <= 3

    outcomes = store_down(rt, monkeypatch, down)
    assert await worker(rt).run_once()
    assert [o is None for o in outcomes] == [False, False, False, True]
    assert [m.id for m in fake(rt).sent] == [msg["id"]]  # sent once
    assert (await stored(rt, msg["id"])).status == "sent"
    assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}


async def test_it_gives_up_before_the_lease_runs_out(
    client: httpx.AsyncClient,
    rt: Runtime,
    seed: Seed,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Recording never outlives the lease (another worker may take the job over then)."""
    await send(client, seed)
    # A lease of 1.3 s that nobody renews, a margin of 1 s, 0.1 s passing per failed try:
    # the third try leaves 1 s, and there it stops.
    outcomes = store_down(rt, monkeypatch, lambda: True, lambda: clock.advance(seconds=0.1))
    (job,) = await rt.store.lease_jobs(clock.now(), "w", timedelta(seconds=1.3), 1)
    assert job.lease_until is not None
    with pytest.raises(RedisConnectionError):
        await dispatch.send_job(rt, job)
    assert len(outcomes) == 3
    assert job.lease_until - clock.now() >= timedelta(seconds=dispatch.RECORD_MARGIN)


async def test_it_keeps_trying_while_the_heartbeat_keeps_the_lease(
    client: httpx.AsyncClient,
    rt: Runtime,
    seed: Seed,
    clock: FrozenClock,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker's heartbeat renews the lease while the send is being recorded (the
    handler sees it in ``job.lease_until``): the tries go on past the first lease."""
    msg = await send(client, seed)
    short = dataclasses.replace(rt.settings, job_visibility_seconds=0.3)  # a beat every 0.1 s
    monkeypatch.setattr(rt, "settings", short)
    monkeypatch.setattr(dispatch, "RECORD_MARGIN", 0.05)
    renewed: list[datetime] = []
    renew = rt.store.renew_job

    async def counted(job_id: str, token: str, until: datetime) -> bool:
        granted = await renew(job_id, token, until)
        if granted:
            renewed.append(until)
        return granted

    monkeypatch.setattr(rt.store, "renew_job", counted)
    start, advanced = clock.now(), [-1]

    def time_passes() -> None:
        # 0.1 s once per renewal: the lease stays held only because the heartbeat renews it
        # (a beat is due once 0.05 s of its 0.3 s have passed).
        if advanced[-1] < len(renewed):
            advanced.append(len(renewed))
            clock.advance(seconds=0.1)

    outcomes = store_down(rt, monkeypatch, lambda: len(renewed) < 5, time_passes)
    async with asyncio.timeout(TIMEOUT):
        assert await worker(rt).run_once()
    assert outcomes[-1] is None and all(o is not None for o in outcomes[:-1])
    first_lease = start + timedelta(seconds=0.3)
    assert clock.now() > first_lease  # recorded after the lease it started with had ended
    assert len(renewed) == 5 and renewed == sorted(renewed)
    assert [m.id for m in fake(rt).sent] == [msg["id"]]  # sent once
    assert (await stored(rt, msg["id"])).status == "sent"
    assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}
