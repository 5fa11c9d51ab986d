"""The Graph API answering 500 for a minute, through the whole gateway, on both stores.

The gateway's clock (the send jobs' schedule) and the simulator's (the outage) are one
frozen clock stepped a second at a time, so the minute takes a few seconds. Every message
reaches WhatsApp exactly once afterwards, each wait before a retry is the send job's
backoff (5 s, 20 s, 80 s … less its jitter, never more than its cap), and the messages go
out within the backoff in force when the outage ended.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from gateway import dispatch
from gateway.clock import FrozenClock
from gateway.process import worker
from gateway.retry import backoff
from tests.connectors.whatsapp.conftest import BUSINESS, Gateway
from tests.gateway.conftest import auth, record_retries

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
OUTAGE = timedelta(seconds=60)


def send_backoff(attempt: int, rand: float) -> float:
    """The send job's wait after ``attempt`` failures, with its jitter drawn as ``rand``."""
    return backoff(
        attempt,
        base=dispatch.SEND_RETRY_FIRST,
        cap=dispatch.SEND_RETRY_MAX,
        factor=dispatch.SEND_RETRY_FACTOR,
        rand=lambda: rand,
    )


async def test_graph_api_answering_500_for_a_minute(
    gateway: Gateway, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt, sim = gateway.rt, gateway.sim
    monkeypatch.setattr(dispatch, "SHORT_RETRY_FIRST", 0.01)  # the in-run retries: fast
    retries = record_retries(rt, monkeypatch)
    start = clock.now()
    sim.fail_until(start + OUTAGE)  # every send: 500, Graph error 131000
    users = [f"+491761234567{i}" for i in range(3)]
    ids = []
    for user in users:
        body = {
            "channel": "whatsapp",
            "from": BUSINESS,
            "to": user,
            "template": {"name": "hello_world", "language": "de"},
        }
        resp = await gateway.client.post(
            "/v1/messages", json=body, headers=auth(gateway.seed.team_key)
        )
        assert resp.status_code == 202, resp.text
        ids.append(resp.json()["id"])

    jobs = worker(rt)
    sent_at: dict[str, datetime] = {}
    for _ in range(600):  # simulated seconds, far more than the schedule needs
        while await jobs.run_once():
            pass
        for mid in ids:
            msg = await rt.store.get_message(mid)
            assert msg is not None and msg.status != "failed", msg
            if msg.status == "sent" and mid not in sent_at:
                sent_at[mid] = clock.now()
        if len(sent_at) == len(ids):
            break
        clock.advance(seconds=1)
    assert len(sent_at) == len(ids), f"not all sent after the outage: {sent_at}"

    accepted = [s for s in sim.sends if s.wamid is not None]
    refused = [s for s in sim.sends if s.error is not None]
    assert sorted(s.to for s in accepted) == sorted(u[1:] for u in users)  # once each
    assert refused and {s.error for s in refused} == {131000}
    assert all(s.at < start + OUTAGE for s in refused)
    # Each job's waits are the send job's backoff, in order, never over its cap.
    by_job: dict[str, list[float]] = {}
    for job_id, wait, refund in retries:
        assert not refund
        by_job.setdefault(job_id, []).append(wait)
    assert len(by_job) == len(ids)
    for waits in by_job.values():
        for n, wait in enumerate(waits, 1):
            assert send_backoff(n, 1.0) <= wait <= send_backoff(n, 0.0), (n, waits)
        assert max(waits) <= dispatch.SEND_RETRY_MAX
    # Recovery: within the backoff the jobs had reached when the outage ended.
    in_force = max(max(w) for w in by_job.values())
    recovery = (max(sent_at.values()) - (start + OUTAGE)).total_seconds()
    assert 0 <= recovery <= in_force, (recovery, in_force)
