"""The outbound policy through the API, on both backends: GET/PUT /v1/policy, refused
sends (destination_blocked, rate_limited) that charge and queue nothing."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest

from gateway.api.app import create_app
from gateway.api.openapi import openapi_document
from gateway.clock import FrozenClock
from gateway.config import parse_settings
from gateway.process import open_runtime
from gateway.runtime import Runtime
from tests.gateway.api.test_openapi import Checker
from tests.gateway.conftest import CONTACT, FAX_A, MOBILE_A, MOBILE_B, Seed, auth

pytestmark = pytest.mark.anyio
PROBLEM = "application/problem+json"
PREMIUM = "+491801234567"  # shared-cost 0180: blocked by default, not locked
SHARED_COST = "+491801234567"
FRENCH = "+33612345678"


def sms(to: str = CONTACT, sender: str = MOBILE_A, text: str = "Hallo") -> dict[str, object]:
    return {"channel": "sms", "from": sender, "to": to, "text": text}


def contact(i: int) -> str:
    return f"+4917612345{i:03d}"


def problem(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = resp.json()
    assert body["code"] == code and body["status"] == status and body["detail"]
    return body


async def put(client: httpx.AsyncClient, seed: Seed, body: object) -> httpx.Response:
    return await client.put("/v1/policy", json=body, headers=auth(seed.team_key))


async def nothing_stored(client: httpx.AsyncClient, rt: Runtime, seed: Seed) -> None:
    """No message, no job, no charge for the team."""
    listed = await client.get("/v1/messages", headers=auth(seed.team_key))
    assert listed.json()["data"] == []
    assert (await rt.store.job_counts())["ready"] == 0
    lines, overage = await rt.store.ledger(seed.team.id, "2026-03")
    assert sum(ln.used for ln in lines) == 0 and overage == 0


# -- GET / PUT /v1/policy ------------------------------------------------------------------
async def test_get_shows_the_defaults(client: httpx.AsyncClient, seed: Seed) -> None:
    for key in (seed.team_key, seed.anna_key):  # member keys may read it
        resp = await client.get("/v1/policy", headers=auth(key))
        assert resp.status_code == 200
        view = resp.json()
        assert view["blocked_prefixes"] == ["+49118", "+49137", "+49180", "+49190", "+49900"]
        assert len(view["countries"]) == 27 and "DE" in view["countries"]
        assert view["destination_channels"] == ["sms", "fax"]
        assert (view["destination_limit"], view["member_limit"]) == (20, 60)
        assert (view["team_fields"], view["updated_at"]) == ([], None)
    problem(await client.get("/v1/policy"), 401, "unauthorized")


async def test_put_replaces_the_override_whole(
    client: httpx.AsyncClient, seed: Seed, clock: FrozenClock
) -> None:
    body = {"countries": ["de", "at"], "blocked_prefixes": ["0900", "+44 9"], "member_limit": None}
    resp = await put(client, seed, body)
    assert resp.status_code == 200, resp.text
    view = resp.json()
    assert view["countries"] == ["AT", "DE"]
    assert view["blocked_prefixes"] == ["+449", "+49900"]  # national: the team's region
    assert view["member_limit"] is None and view["destination_limit"] == 20
    assert view["team_fields"] == ["countries", "blocked_prefixes", "member_limit"]
    assert view["updated_at"] == "2026-03-15T12:00:00.000Z"
    assert (await client.get("/v1/policy", headers=auth(seed.ben_key))).json() == view
    # The next PUT replaces the whole override: what it leaves out is the default again.
    clock.advance(minutes=1)
    view = (await put(client, seed, {"destination_limit": 5})).json()
    assert view["team_fields"] == ["destination_limit"]
    assert len(view["countries"]) == 27 and view["member_limit"] == 60
    view = (await put(client, seed, {})).json()
    assert view["team_fields"] == [] and view["updated_at"] == "2026-03-15T12:01:00.000Z"
    # Another team is not affected.
    other = (await client.get("/v1/policy", headers=auth(seed.other_key))).json()
    assert other["team_fields"] == [] and other["updated_at"] is None


async def test_put_refuses_bad_input_naming_the_field(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    await put(client, seed, {"member_limit": 3})
    cases: list[tuple[object, str | None, str]] = [
        ({"member_limit": 3, "colour": "red"}, "colour", "unknown field"),
        ({"countries": ["DE", "XX"]}, "countries", "'XX' is not an ISO 3166-1"),
        ({"blocked_prefixes": ["0900", "09x"]}, "blocked_prefixes", "'09x'"),
        ({"allowed_prefixes": ["0900"]}, "allowed_prefixes", "+49900 is also a blocked"),
        (
            {"blocked_prefixes": [], "allowed_prefixes": ["0900 12"]},
            "allowed_prefixes",
            "+4990012 is inside the provider-locked prefix +49900",
        ),
        ({"locked_prefixes": []}, "locked_prefixes", "set by the provider"),
        ({"destination_limit": 0}, "destination_limit", "or null for no limit"),
        ({"destination_limit": "20"}, "destination_limit", "whole number"),
        ({"member_limit": True}, "member_limit", "whole number"),
        ({"member_window_seconds": 0}, "member_window_seconds", "whole seconds"),
        ({"destination_channels": ["mms"]}, "destination_channels", "unknown channel"),
        (["member_limit"], None, "must be a JSON object"),
    ]
    for body, field, text in cases:
        err = problem(await put(client, seed, body), 422, "validation_error")
        assert err.get("field") == field and text in err["detail"], err
    resp = await client.put("/v1/policy", content=b"{nope", headers=auth(seed.team_key))
    problem(resp, 400, "malformed_request")
    # Member keys may not change it; nothing changed.
    err = problem(
        await client.put("/v1/policy", json={}, headers=auth(seed.anna_key)), 403, "forbidden"
    )
    assert "team key" in err["detail"]
    view = (await client.get("/v1/policy", headers=auth(seed.team_key))).json()
    assert view["member_limit"] == 3 and view["team_fields"] == ["member_limit"]


# -- destination screening -------------------------------------------------------------------
async def test_blocked_prefix_refuses_and_stores_nothing(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    key = auth(seed.team_key)
    for path in ("/v1/messages", "/v1/messages/preview"):
        err = problem(
            await client.post(path, json=sms(PREMIUM), headers=key), 403, "destination_blocked"
        )
        assert err["detail"] == f"{PREMIUM} matches the blocked prefix +49180"
        assert (err["rule"], err["prefix"]) == ("blocked_prefix", "+49180")
    # National input is normalized first; a fax to a premium number is refused too.
    err = problem(
        await client.post("/v1/messages", json=sms("0180 1234567"), headers=key),
        403,
        "destination_blocked",
    )
    assert err["prefix"] == "+49180"
    fax = {"channel": "fax", "from": FAX_A, "to": PREMIUM, "text": "x"}
    problem(await client.post("/v1/messages", json=fax, headers=key), 403, "destination_blocked")
    await nothing_stored(client, rt, seed)
    quota = (await client.get("/v1/quota", headers=key)).json()
    assert all(ch["used"] == 0 for m in quota["members"] for ch in m["channels"].values())


async def test_country_allowlist(client: httpx.AsyncClient, rt: Runtime, seed: Seed) -> None:
    key = auth(seed.team_key)
    assert (await client.post("/v1/messages", json=sms(FRENCH), headers=key)).status_code == 202
    await put(client, seed, {"countries": ["DE"]})  # effective at once in this process
    err = problem(
        await client.post("/v1/messages", json=sms(FRENCH), headers=key), 403, "destination_blocked"
    )
    assert err["detail"] == f"country FR of {FRENCH} is not in the allowlist"
    assert (err["rule"], err["country"]) == ("country", "FR")
    us = sms("+12125550123")
    problem(
        await client.post("/v1/messages/preview", json=us, headers=key), 403, "destination_blocked"
    )
    await put(client, seed, {"countries": ["*"]})
    assert (await client.post("/v1/messages", json=us, headers=key)).status_code == 202


async def test_allowed_exception_inside_a_blocked_range(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    key = auth(seed.team_key)
    await put(
        client,
        seed,
        {"blocked_prefixes": ["0180", "0900"], "allowed_prefixes": ["0180 1234"]},
    )
    assert (
        await client.post("/v1/messages", json=sms(SHARED_COST), headers=key)
    ).status_code == 202
    other = sms("+491809876543")
    err = problem(
        await client.post("/v1/messages", json=other, headers=key), 403, "destination_blocked"
    )
    assert err["prefix"] == "+49180"


async def test_whatsapp_is_screened_only_with_the_sms_fallback(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    key = auth(seed.anna_key)
    # The number wrote first: free-form WhatsApp to it is possible (its window is open).
    inbound = {"id": "in-1", "channel": "whatsapp", "from": PREMIUM, "to": MOBILE_A, "text": "?"}
    assert (await client.post("/hooks/fake1/inbound", json=inbound)).status_code == 200
    wa = {**sms(PREMIUM), "channel": "whatsapp"}
    assert (await client.post("/v1/messages/preview", json=wa, headers=key)).status_code == 200
    err = problem(
        await client.post("/v1/messages", json={**wa, "fallback": "sms"}, headers=key),
        403,
        "destination_blocked",
    )
    assert err["detail"].endswith("(checked for the SMS fallback)")
    await put(client, seed, {"destination_channels": ["sms", "whatsapp", "fax"]})
    problem(
        await client.post("/v1/messages/preview", json=wa, headers=key), 403, "destination_blocked"
    )


# -- send limits -------------------------------------------------------------------------------
async def test_flood_limit_per_destination(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    key = auth(seed.team_key)
    for i in range(20):
        clock.advance(seconds=1)
        resp = await client.post("/v1/messages", json=sms(text=f"n{i}"), headers=key)
        assert resp.status_code == 202, resp.text
    clock.advance(minutes=10)
    resp = await client.post("/v1/messages", json=sms(text="21st"), headers=key)
    err = problem(resp, 429, "rate_limited")
    # The first send (at 12:00:01) leaves the hour at 13:00:01; it is 12:10:20 now.
    assert resp.headers["retry-after"] == str(3600 - 10 * 60 - 19) == str(err["retry_after"])
    assert (err["limit"], err["max"], err["window_seconds"]) == ("destination", 20, 3600)
    assert f"20 messages per hour to {CONTACT}" in err["detail"]
    # Nothing charged or queued for it; other numbers and the preview are not limited.
    lines, _ = await rt.store.ledger(seed.team.id, "2026-03")
    assert sum(ln.used for ln in lines) == 20
    assert (await rt.store.job_counts())["ready"] == 20
    assert (await client.post("/v1/messages/preview", json=sms(), headers=key)).status_code == 200
    assert (await client.post("/v1/messages", json=sms(contact(1)), headers=key)).status_code == 202
    # Free again exactly when the first send is an hour old.
    clock.advance(seconds=err["retry_after"] - 1)
    problem(await client.post("/v1/messages", json=sms(), headers=key), 429, "rate_limited")
    clock.advance(seconds=1)
    assert (await client.post("/v1/messages", json=sms(), headers=key)).status_code == 202
    problem(await client.post("/v1/messages", json=sms(), headers=key), 429, "rate_limited")


async def test_member_rate_limit(client: httpx.AsyncClient, seed: Seed, clock: FrozenClock) -> None:
    await put(client, seed, {"member_limit": 3, "member_window_seconds": 60})
    key = auth(seed.team_key)
    for i in range(3):
        assert (
            await client.post("/v1/messages", json=sms(contact(i)), headers=key)
        ).status_code == 202
    resp = await client.post("/v1/messages", json=sms(contact(9)), headers=key)
    err = problem(resp, 429, "rate_limited")
    assert (err["limit"], err["max"], resp.headers["retry-after"]) == ("member", 3, "60")
    assert seed.anna.id in err["detail"]
    # Every channel counts; another member has its own budget.
    fax = {"channel": "fax", "from": FAX_A, "to": "+4940123456", "text": "x"}
    problem(await client.post("/v1/messages", json=fax, headers=key), 429, "rate_limited")
    ben = sms(contact(9), sender=MOBILE_B)
    assert (await client.post("/v1/messages", json=ben, headers=key)).status_code == 202
    clock.advance(seconds=60)
    assert (await client.post("/v1/messages", json=fax, headers=key)).status_code == 202


async def test_preview_takes_no_slot(client: httpx.AsyncClient, seed: Seed) -> None:
    await put(client, seed, {"destination_limit": 1})
    key = auth(seed.team_key)
    for _ in range(3):
        assert (
            await client.post("/v1/messages/preview", json=sms(), headers=key)
        ).status_code == 200
    assert (await client.post("/v1/messages", json=sms(), headers=key)).status_code == 202
    problem(await client.post("/v1/messages", json=sms(), headers=key), 429, "rate_limited")


async def test_refusals_for_other_reasons_take_no_slot(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    await put(client, seed, {"destination_limit": 2})
    key = auth(seed.team_key)
    rt.settings = dataclasses.replace(
        rt.settings,
        tariff=dataclasses.replace(
            rt.settings.tariff,
            included=dict.fromkeys(rt.settings.tariff.included, 0),
            overage_price_micros=dict.fromkeys(rt.settings.tariff.overage_price_micros, 10**9),
        ),
    )
    for _ in range(3):
        problem(
            await client.post("/v1/messages", json=sms(), headers=key), 402, "quota_credit_limit"
        )
    problem(
        await client.post("/v1/messages", json=sms(text=""), headers=key), 422, "validation_error"
    )
    rt.settings = dataclasses.replace(rt.settings, tariff=parse_settings({}).tariff)
    for _ in range(2):
        assert (await client.post("/v1/messages", json=sms(), headers=key)).status_code == 202
    problem(await client.post("/v1/messages", json=sms(), headers=key), 429, "rate_limited")


async def test_concurrent_sends_take_exactly_the_limit(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    key = auth(seed.team_key)
    results = await asyncio.gather(
        *(client.post("/v1/messages", json=sms(text=f"n{i}"), headers=key) for i in range(30))
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [202] * 20 + [429] * 10
    assert (await rt.store.job_counts())["ready"] == 20


async def test_a_rate_limited_idempotent_request_can_be_retried(
    client: httpx.AsyncClient, seed: Seed, clock: FrozenClock
) -> None:
    await put(client, seed, {"destination_limit": 1})
    key = auth(seed.team_key)
    assert (await client.post("/v1/messages", json=sms(), headers=key)).status_code == 202
    headers = {**key, "Idempotency-Key": "retry-me"}
    problem(await client.post("/v1/messages", json=sms(), headers=headers), 429, "rate_limited")
    clock.advance(hours=1)
    again = await client.post("/v1/messages", json=sms(), headers=headers)
    assert again.status_code == 202 and "idempotency-replayed" not in again.headers
    replay = await client.post("/v1/messages", json=sms(), headers=headers)
    assert replay.headers["idempotency-replayed"] == "true" and replay.json() == again.json()


async def test_policy_is_cached_per_process(
    rt: Runtime, seed: Seed, client: httpx.AsyncClient, clock: FrozenClock
) -> None:
    """A PUT is seen at once by the process that served it; another process (its own
    runtime on the same store) sees it when its cache entry expires."""
    other = await open_runtime(rt.settings, clock=clock)
    try:
        transport = httpx.ASGITransport(app=create_app(other, workers=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            key = auth(seed.team_key)
            assert (
                await c.post("/v1/messages/preview", json=sms(FRENCH), headers=key)
            ).status_code == 200
            await put(client, seed, {"countries": ["DE"]})
            blocked = await client.post("/v1/messages/preview", json=sms(FRENCH), headers=key)
            problem(blocked, 403, "destination_blocked")
            stale = await c.post("/v1/messages/preview", json=sms(FRENCH), headers=key)
            assert stale.status_code == 200  # still within the other process's cache time
    finally:
        await other.aclose()


# -- the OpenAPI document ----------------------------------------------------------------
async def test_answers_match_the_document(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    check = Checker(openapi_document(rt.settings.public_url))
    team = auth(seed.team_key)
    r = await client.get("/v1/policy", headers=team)
    check(r, "/v1/policy")
    r = await put(client, seed, {"destination_limit": 1, "member_limit": None, "countries": ["DE"]})
    check(r, "/v1/policy")
    check(await client.get("/v1/policy", headers=team), "/v1/policy")
    check(await put(client, seed, {"destination_limit": 0}), "/v1/policy")
    check(await client.put("/v1/policy", json={}, headers=auth(seed.anna_key)), "/v1/policy")
    check(await client.put("/v1/policy", content=b"[", headers=team), "/v1/policy")
    for path in ("/v1/messages", "/v1/messages/preview"):
        r = await client.post(path, json=sms(PREMIUM), headers=team)
        assert r.status_code == 403
        check(r, path)
        r = await client.post(path, json=sms(FRENCH), headers=team)
        assert r.status_code == 403
        check(r, path)
    assert (await client.post("/v1/messages", json=sms(), headers=team)).status_code == 202
    r = await client.post("/v1/messages", json=sms(), headers=team)
    assert r.status_code == 429
    documented = check(r, "/v1/messages")
    assert "Retry-After" in documented["headers"] and "retry-after" in r.headers
