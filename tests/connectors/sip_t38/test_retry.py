"""Busy, no answer, refused T.38, a call cut mid-fax: the retry schedule, the ladder and
the resume from the first unconfirmed page, through the send job."""

from __future__ import annotations

from datetime import datetime

import pytest

from gateway.process import worker
from tests.connectors.sip_t38.conftest import Gateway
from tests.gateway.conftest import record_retries

pytestmark = pytest.mark.anyio


async def test_busy_is_retried_after_three_minutes(gateway: Gateway,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    retries = record_retries(gateway.rt, monkeypatch)
    gateway.sim.behaviour.busy = True
    message_id, _ = await gateway.submit_fax(pages=1)
    jobs = worker(gateway.rt)
    assert await jobs.run_once()
    msg = await gateway.message(message_id)
    assert msg.status == "queued"
    assert msg.meta["fax"]["dials"] == 1 and msg.meta["fax"]["tries"] == 0
    next_try = datetime.fromisoformat(msg.meta["fax"]["next_try"])
    assert (next_try - gateway.clock.now()).total_seconds() == 180
    assert [round(r[1]) for r in retries] == [180]
    gateway.sim.behaviour.busy = False
    gateway.clock.advance(seconds=180)
    assert await jobs.run_once()
    msg = await gateway.message(message_id)
    assert msg.status == "sent" and msg.meta["fax"]["dials"] == 2


async def test_no_answer_is_retried_after_five_minutes(gateway: Gateway,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    retries = record_retries(gateway.rt, monkeypatch)
    gateway.sim.behaviour.no_answer = True
    message_id, _ = await gateway.submit_fax(pages=1)
    assert await worker(gateway.rt).run_once()
    msg = await gateway.message(message_id)
    assert msg.status == "queued" and msg.error is None
    assert [round(r[1]) for r in retries] == [300]
    assert gateway.sim.received == []


async def test_unallocated_and_rejected_are_never_retried(gateway: Gateway) -> None:
    jobs = worker(gateway.rt)
    for status, code in ((404, "invalid_number"), (603, "rejected")):
        gateway.sim.behaviour.reject = status
        message_id, _ = await gateway.submit_fax(pages=1)
        assert await jobs.run_once()
        msg = await gateway.message(message_id)
        assert msg.status == "failed"
        assert msg.error is not None and msg.error["code"] == code
        assert msg.error["carrier_code"] == f"sip:{status}"


async def test_refused_t38_stays_on_audio(gateway: Gateway) -> None:
    gateway.sim.behaviour.refuse_t38 = True
    message_id, _ = await gateway.submit_fax(pages=1)
    assert await worker(gateway.rt).run_once()
    msg = await gateway.message(message_id)
    assert msg.status == "sent", msg.error
    assert msg.meta["fax"]["report"]["media"] == "g711"


@pytest.mark.parametrize("gateway", [{"t38_only": True}], indirect=True)
async def test_t38_only_never_falls_back(gateway: Gateway) -> None:
    gateway.sim.behaviour.refuse_t38 = True
    message_id, _ = await gateway.submit_fax(pages=1)
    assert await worker(gateway.rt).run_once()
    msg = await gateway.message(message_id)
    assert msg.status == "failed" and msg.error is not None
    assert "t38_only" in msg.error["message"]


async def test_a_cut_call_resumes_from_the_first_unconfirmed_page_one_step_down(
        gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    retries = record_retries(gateway.rt, monkeypatch)
    gateway.sim.behaviour.hangup_after_pages = 1
    message_id, _ = await gateway.submit_fax(pages=3)
    jobs = worker(gateway.rt)
    assert await jobs.run_once()
    msg = await gateway.message(message_id)
    assert msg.status == "queued", msg.error
    fax = msg.meta["fax"]
    assert fax["pages_sent"] == 1 and fax["tries"] == 1 and fax["ladder"] == 1
    assert fax["report"]["t30_code"] != 0
    assert [round(r[1]) for r in retries] == [60]
    gateway.sim.behaviour.hangup_after_pages = None
    gateway.clock.advance(seconds=60)
    assert await jobs.run_once()
    msg = await gateway.message(message_id)
    assert msg.status == "sent", msg.error
    assert msg.meta["fax"]["pages_sent"] == 3
    assert msg.meta["fax"]["report"]["media"] == "g711"  # step 2: G.711 + ECM
    first, second = await gateway.sim.wait_received(2)
    assert first.result is not None and first.result.pages_transferred >= 1
    assert second.result is not None and second.result.pages_transferred == 2
    events = [e for e in await gateway.rt.store.list_events(0, 100) if e.type == "fax.page"]
    assert [e.data["page"] for e in events] == [1, 2, 3]


@pytest.mark.parametrize("gateway", [{"max_tries": 2}], indirect=True)
async def test_after_max_tries_the_fax_fails(gateway: Gateway) -> None:
    gateway.sim.behaviour.hangup_after_pages = 1
    message_id, _ = await gateway.submit_fax(pages=4)
    jobs = worker(gateway.rt)
    assert await jobs.run_once()
    gateway.clock.advance(seconds=60)
    assert await jobs.run_once()
    msg = await gateway.message(message_id)
    assert msg.status == "failed" and msg.error is not None
    assert msg.error["message"].startswith("gave up after 2 tries and 2 dials (tries")
    # Each call confirmed one page before the hang-up (the second resumed at page 2), and
    # the count runs on across tries.
    assert msg.meta["fax"]["tries"] == 2 and msg.meta["fax"]["pages_sent"] == 2


@pytest.mark.parametrize("gateway", [{"max_dials": 2}], indirect=True)
async def test_after_max_dials_the_fax_fails(gateway: Gateway) -> None:
    gateway.sim.behaviour.busy = True
    message_id, _ = await gateway.submit_fax(pages=1)
    jobs = worker(gateway.rt)
    assert await jobs.run_once()
    gateway.clock.advance(seconds=180)
    assert await jobs.run_once()
    msg = await gateway.message(message_id)
    assert msg.status == "failed" and msg.error is not None
    assert msg.error["code"] == "unreachable" and "dials exhausted" in msg.error["message"]


@pytest.mark.parametrize("gateway", [{"job_max_attempts": 2}], indirect=True)
async def test_the_fax_schedule_holds_past_the_jobs_own_attempts(
        gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """Busy five times: every retry after exactly 180 s (no growing job backoff), and the
    job's own attempt limit does not end a fax the fax schedule still allows."""
    retries = record_retries(gateway.rt, monkeypatch)
    gateway.sim.behaviour.busy = True
    message_id, _ = await gateway.submit_fax(pages=1)
    jobs = worker(gateway.rt)
    for _ in range(5):
        assert await jobs.run_once()
        gateway.clock.advance(seconds=180)
    gateway.sim.behaviour.busy = False
    assert await jobs.run_once()
    msg = await gateway.message(message_id)
    assert msg.status == "sent", msg.error
    assert msg.meta["fax"]["dials"] == 6
    assert [(round(r[1]), r[2]) for r in retries] == [(180, True)] * 5
