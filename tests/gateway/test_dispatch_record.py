"""Recording a send the carrier took while the store cannot be reached, on both backends.

Found by ``bench/chaos.py``: Redis killed after the SMSC answered a submit_sm but before
the worker recorded it (``complete_send``) made the job run again once its lease expired,
and the SMSC got the message twice. Now the worker keeps trying to record it while the
lease lasts.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from gateway import dispatch
from gateway.jobs import Worker
from gateway.runtime import Runtime
from tests.gateway.conftest import Seed
from tests.gateway.test_dispatch import fake, send, stored

pytestmark = pytest.mark.anyio


def store_down_for(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, failures: int
) -> list[Exception | None]:
    """``complete_send`` fails ``failures`` times as an unreachable Redis does, then works;
    returns the outcome of every call (None: it went through)."""
    real = rt.store.complete_send
    outcomes: list[Exception | None] = []

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if len(outcomes) < failures:
            exc = RedisConnectionError("Error 111 connecting to 127.0.0.1:6379")
            outcomes.append(exc)
            raise exc
        outcomes.append(None)
        return await real(*args, **kwargs)

    monkeypatch.setattr(rt.store, "complete_send", flaky)
    monkeypatch.setattr(dispatch, "RECORD_RETRY_FIRST", 0.01)
    return outcomes


async def test_a_send_is_recorded_once_the_store_is_back(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    msg = await send(client, seed)
    outcomes = store_down_for(rt, monkeypatch, failures=3)
    assert await Worker(rt).run_once()
    assert [o is None for o in outcomes] == [False, False, False, True]
    assert [m.id for m in fake(rt).sent] == [msg["id"]]  # sent once
    assert (await stored(rt, msg["id"])).status == "sent"
    assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}


async def test_it_gives_up_before_the_lease_runs_out(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recording never outlives the lease (another worker may take the job over then)."""
    await send(client, seed)
    outcomes = store_down_for(rt, monkeypatch, failures=10**6)
    # A lease of 1.3 s with a margin of 1 s leaves 0.3 s of tries.
    (job,) = await rt.store.lease_jobs(rt.clock.now(), "w", timedelta(seconds=1.3), 1)
    with pytest.raises(RedisConnectionError):
        await dispatch.send_job(rt, job)
    assert 2 <= len(outcomes) <= 10
