"""Ledger periods in Europe/Berlin with an injected clock, and charging across a month end."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from gateway.clock import FrozenClock
from gateway.errors import ValidationError
from gateway.quota import check_period, euros, period_of
from gateway.runtime import Runtime
from tests.gateway.conftest import CONTACT, MOBILE_A, Seed, auth

BERLIN = ZoneInfo("Europe/Berlin")


def test_period_follows_berlin_time() -> None:
    # Summer time (UTC+2) at the end of March 2026.
    assert period_of(datetime(2026, 3, 31, 21, 59, 59, tzinfo=UTC), BERLIN) == "2026-03"
    assert period_of(datetime(2026, 3, 31, 22, 0, 0, tzinfo=UTC), BERLIN) == "2026-04"
    # Winter time (UTC+1) at New Year.
    assert period_of(datetime(2026, 12, 31, 22, 59, 59, tzinfo=UTC), BERLIN) == "2026-12"
    assert period_of(datetime(2026, 12, 31, 23, 0, 0, tzinfo=UTC), BERLIN) == "2027-01"


def test_period_validation_and_euros() -> None:
    assert check_period("2026-11") == "2026-11"
    for bad in ("2026-1", "26-11", "2026-00", "2026/11"):
        with pytest.raises(ValidationError):
            check_period(bad)
    assert euros(90_000) == "0.09"
    assert euros(50_000_000) == "50.00"
    assert euros(1_234_567) == "1.234567"


@pytest.mark.anyio
async def test_units_expire_at_the_berlin_month_end(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    body = {"channel": "sms", "from": MOBILE_A, "to": CONTACT, "text": "x"}
    clock.set(datetime(2026, 3, 31, 21, 59, tzinfo=UTC))
    assert (await client.post("/v1/messages", json=body, headers=auth(seed.team_key))).is_success
    clock.set(datetime(2026, 3, 31, 22, 1, tzinfo=UTC))  # 00:01 on 1 April in Berlin
    for _ in range(2):
        await client.post("/v1/messages", json=body, headers=auth(seed.team_key))
    march = (await client.get("/v1/quota?period=2026-03", headers=auth(seed.anna_key))).json()
    april = (await client.get("/v1/quota", headers=auth(seed.anna_key))).json()
    assert april["period"] == "2026-04"
    assert march["members"][0]["channels"]["sms"]["used"] == 1
    assert april["members"][0]["channels"]["sms"]["used"] == 2
    assert april["members"][0]["channels"]["sms"]["remaining"] == 98


@pytest.mark.anyio
async def test_overage_is_priced_and_capped(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    # Acme's credit limit is 10 EUR; SMS overage costs 0.09 EUR: 111 units of overage fit.
    key = auth(seed.team_key)
    long = {"channel": "sms", "from": MOBILE_A, "to": CONTACT, "text": "y" * 1600}  # 10 units
    accepted = 0
    for i in range(30):
        # Another contact each time: 20 per hour to one number is the flood limit.
        to = {"to": f"+4917612345{i:03d}"}
        resp = await client.post("/v1/messages", json={**long, **to}, headers=key)
        if resp.status_code != 202:
            assert resp.json()["code"] == "quota_credit_limit"
            break
        accepted += 1
    assert accepted == 21  # 100 included + 110 overage = 9.90 EUR; one more would be 10.80
    one = {**long, "text": "z"}
    assert (await client.post("/v1/messages", json=one, headers=key)).status_code == 202
    quota = (await client.get("/v1/quota", headers=key)).json()
    anna = next(m for m in quota["members"] if m["member_id"] == seed.anna.id)
    assert anna["channels"]["sms"]["overage"] == 111
    assert quota["overage_cost"] == "9.99"


@pytest.mark.anyio
async def test_concurrent_sends_are_charged_exactly_once(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    import asyncio

    key = auth(seed.team_key)
    body = {"channel": "sms", "from": MOBILE_A, "to": CONTACT, "text": "y" * 1600}  # 10 units
    # Another contact each: 20 per hour to one number is the flood limit.
    bodies = [{**body, "to": f"+4917612345{i:03d}"} for i in range(40)]
    results = await asyncio.gather(
        *(client.post("/v1/messages", json=b, headers=key) for b in bodies)
    )
    codes = [r.status_code for r in results]
    assert set(codes) <= {202, 402}
    accepted = codes.count(202)
    assert accepted == 21  # the same cap as one after another (see above)
    lines, overage = await rt.store.ledger(seed.team.id, "2026-03")
    assert sum(ln.used for ln in lines) == accepted * 10
    assert overage == 110 * 90_000
    listed = await client.get("/v1/messages?limit=200", headers=key)
    assert len(listed.json()["data"]) == accepted
    assert (await rt.store.job_counts())["ready"] == accepted


def test_period_in_a_half_hour_zone() -> None:
    kolkata = ZoneInfo("Asia/Kolkata")  # UTC+5:30: the month starts at 18:30 UTC
    assert period_of(datetime(2026, 3, 31, 18, 29, 59, tzinfo=UTC), kolkata) == "2026-03"
    assert period_of(datetime(2026, 3, 31, 18, 30, 0, tzinfo=UTC), kolkata) == "2026-04"
