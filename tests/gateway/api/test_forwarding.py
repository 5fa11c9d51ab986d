"""GET/PUT /v1/members/{id}/forwarding on both backends: access, validation, and every
answer checked against the OpenAPI document."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest

from gateway.api.openapi import openapi_document
from gateway.clock import FrozenClock
from gateway.config import SmtpConfig
from gateway.ids import new_id
from gateway.models import Member
from gateway.runtime import Runtime
from tests.gateway.api.test_openapi import Checker
from tests.gateway.conftest import CONTACT, FAX_A, MOBILE_B, Seed, auth

pytestmark = pytest.mark.anyio
PATH = "/v1/members/{id}/forwarding"
DEFAULT = {"enabled": True, "channels": ["sms", "whatsapp"], "email": [], "sms": []}


@pytest.fixture
def check(rt: Runtime) -> Checker:
    """A checker against the document the app serves."""
    return Checker(openapi_document(rt.settings.public_url))


@pytest.fixture
def relay(rt: Runtime) -> None:
    """An [smtp] relay is configured (nothing is sent by these tests)."""
    smtp = SmtpConfig("127.0.0.1", 2525, starttls=False)
    rt.settings = dataclasses.replace(rt.settings, smtp=smtp)


def url(member_id: str) -> str:
    return f"/v1/members/{member_id}/forwarding"


async def put(
    client: httpx.AsyncClient, check: Checker, key: str, member_id: str, body: Any
) -> httpx.Response:
    resp = await client.put(url(member_id), json=body, headers=auth(key))
    check(resp, PATH)
    return resp


async def problem(
    resp: httpx.Response, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert body["code"] == code and body["status"] == status
    assert body.get("field") == field, body
    return body


# -- access ------------------------------------------------------------------------------
async def test_default_rules_forward_nothing(
    client: httpx.AsyncClient, seed: Seed, check: Checker
) -> None:
    """A member never configured: the default document."""
    for key in (seed.team_key, seed.anna_key):
        resp = await client.get(url(seed.anna.id), headers=auth(key))
        assert resp.status_code == 200
        check(resp, PATH)
        assert resp.json() == {"member_id": seed.anna.id, **DEFAULT, "updated_at": None}


async def test_who_may_read_and_change(
    client: httpx.AsyncClient, seed: Seed, check: Checker, relay: None
) -> None:
    """Team keys: any member of the team; member keys: only their own member (403 for a
    colleague); another team's or an unknown member: 404; no key: 401."""
    body = {"email": ["anna.privat@example.com"]}
    assert (await put(client, check, seed.team_key, seed.ben.id, body)).status_code == 200
    assert (await put(client, check, seed.anna_key, seed.anna.id, body)).status_code == 200
    await problem(await put(client, check, seed.anna_key, seed.ben.id, body), 403, "forbidden")
    resp = await client.get(url(seed.ben.id), headers=auth(seed.anna_key))
    check(resp, PATH)
    await problem(resp, 403, "forbidden")
    for key, member_id in ((seed.other_key, seed.anna.id), (seed.team_key, "mem_nobody")):
        resp = await client.get(url(member_id), headers=auth(key))
        check(resp, PATH)
        await problem(resp, 404, "not_found")
        await problem(await put(client, check, key, member_id, body), 404, "not_found")
    resp = await client.get(url(seed.anna.id))
    check(resp, PATH)
    await problem(resp, 401, "unauthorized")
    # Ben's rules were not touched by Anna's key.
    resp = await client.get(url(seed.ben.id), headers=auth(seed.ben_key))
    assert resp.json()["email"] == ["anna.privat@example.com"]


async def test_put_replaces_and_normalizes(
    client: httpx.AsyncClient, seed: Seed, check: Checker, clock: FrozenClock, relay: None
) -> None:
    """Numbers in E.164 (national format read in the team's region), domains lower-case;
    the document is replaced whole, and what GET answers can be PUT back."""
    body = {
        "email": ["Anna.Privat@Example.COM", "buero@acme.example"],
        "sms": ["0176 12345678", "+49 160 12345678"],
        "channels": ["whatsapp"],
    }
    resp = await put(client, check, seed.team_key, seed.anna.id, body)
    assert resp.status_code == 200
    stored = resp.json()
    assert stored == {
        "member_id": seed.anna.id,
        "enabled": True,
        "channels": ["whatsapp"],
        "email": ["Anna.Privat@example.com", "buero@acme.example"],
        "sms": [CONTACT, "+4916012345678"],
        "updated_at": "2026-03-15T12:00:00.000Z",
    }
    got = await client.get(url(seed.anna.id), headers=auth(seed.anna_key))
    assert got.json() == stored
    clock.advance(minutes=1)
    again = await put(client, check, seed.team_key, seed.anna.id, {**stored, "enabled": False})
    assert again.status_code == 200
    assert again.json() == {**stored, "enabled": False, "updated_at": "2026-03-15T12:01:00.000Z"}
    # Fields left out take their defaults.
    reset = await put(client, check, seed.team_key, seed.anna.id, {})
    assert reset.json() == {
        "member_id": seed.anna.id,
        **DEFAULT,
        "updated_at": "2026-03-15T12:01:00.000Z",
    }


# -- validation --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "status", "code", "field", "detail"),
    [
        ({"email": ["a@example.com", "nope"]}, 422, "validation_error", "email[1]",
         "email[1]: not an email address"),
        ({"email": ["Anna <a@example.com>"]}, 422, "validation_error", "email[0]",
         "email[0]: not an email address"),
        ({"email": [42]}, 422, "validation_error", "email[0]", "email[0]: not an email"),
        ({"email": ["a@example.com", "A@EXAMPLE.com"]}, 422, "validation_error", "email[1]",
         "the same address as email[0]"),
        ({"email": [f"a{i}@example.com" for i in range(6)]}, 422, "validation_error", "email",
         "at most 5"),
        ({"email": "a@example.com"}, 422, "validation_error", "email", "must be a list"),
        ({"sms": ["12"]}, 422, "invalid_number", "sms[0]", "sms[0]: '12' is not"),
        ({"sms": ["030 12345678"]}, 422, "invalid_number", "sms[0]", "not a mobile number"),
        ({"sms": [CONTACT, "0176 12345678"]}, 422, "validation_error", "sms[1]",
         "the same number as sms[0]"),
        ({"sms": ["0151 12345671"]}, 422, "validation_error", "sms[0]",
         "the member's own number"),
        ({"sms": [FAX_A]}, 422, "invalid_number", "sms[0]", "not a mobile number"),
        ({"sms": [f"+49160123456{i:02d}" for i in range(6)]}, 422, "validation_error", "sms",
         "at most 5"),
        ({"channels": ["fax"]}, 422, "validation_error", "channels[0]", "must be one of"),
        ({"channels": ["sms", "sms"]}, 422, "validation_error", "channels[1]", "twice"),
        ({"enabled": "yes"}, 422, "validation_error", "enabled", "true or false"),
        ({"emails": []}, 422, "validation_error", "emails", "unknown field"),
        ({"member_id": "mem_other"}, 422, "validation_error", "member_id", "does not match"),
        (["a@example.com"], 422, "validation_error", None, "JSON object"),
    ],
)  # fmt: skip
async def test_bad_rules_are_refused_and_change_nothing(
    client: httpx.AsyncClient,
    seed: Seed,
    check: Checker,
    relay: None,
    body: Any,
    status: int,
    code: str,
    field: str | None,
    detail: str,
) -> None:
    """Each refusal names the field (with its index) and says why; the stored rules stay."""
    ok = await put(client, check, seed.team_key, seed.anna.id, {"sms": [MOBILE_B]})
    assert ok.status_code == 200
    resp = await put(client, check, seed.team_key, seed.anna.id, body)
    answer = await problem(resp, status, code, field)
    assert detail in answer["detail"]
    got = await client.get(url(seed.anna.id), headers=auth(seed.team_key))
    assert got.json()["sms"] == [MOBILE_B]


async def test_email_needs_a_relay(client: httpx.AsyncClient, seed: Seed, check: Checker) -> None:
    """Without [smtp] email forwarding is refused at once (SMS forwarding still works)."""
    resp = await put(client, check, seed.team_key, seed.anna.id, {"email": ["a@example.com"]})
    body = await problem(resp, 422, "smtp_not_configured", "email")
    assert "no SMTP relay configured" in body["detail"]
    resp = await put(client, check, seed.team_key, seed.anna.id, {"sms": [CONTACT]})
    assert resp.status_code == 200


async def test_sms_forwarding_needs_the_sms_addon(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, check: Checker, clock: FrozenClock
) -> None:
    """A member without the sms (or whatsapp) add-on cannot forward by SMS."""
    carl = Member(
        new_id("mem"), seed.team.id, "Carl", "carl@example.com", "+4915212345673", None,
        frozenset(), True, clock.now(),
    )  # fmt: skip
    await rt.store.create_member(carl, 10)
    resp = await put(client, check, seed.team_key, carl.id, {"sms": [CONTACT]})
    body = await problem(resp, 403, "addon_missing")
    assert "sms add-on" in body["detail"]
    # Ben has sms only; Anna has whatsapp, which includes sms.
    assert (await put(client, check, seed.team_key, seed.ben.id, {"sms": [CONTACT]})).is_success
    assert (await put(client, check, seed.team_key, seed.anna.id, {"sms": [CONTACT]})).is_success


async def test_malformed_and_oversized_bodies(
    client: httpx.AsyncClient, seed: Seed, check: Checker
) -> None:
    """Not JSON: 400; larger than 64 KiB: 413."""
    headers = {**auth(seed.team_key), "Content-Type": "application/json"}
    resp = await client.put(url(seed.anna.id), content=b"{nope", headers=headers)
    check(resp, PATH)
    await problem(resp, 400, "malformed_request")
    resp = await client.put(url(seed.anna.id), content=b" " * (65 * 1024), headers=headers)
    check(resp, PATH)
    await problem(resp, 413, "payload_too_large")


async def test_unknown_methods(client: httpx.AsyncClient, seed: Seed) -> None:
    """Only GET and PUT are served."""
    for method in ("POST", "DELETE", "PATCH"):
        resp = await client.request(method, url(seed.anna.id), headers=auth(seed.team_key))
        assert resp.status_code == 405, method
        assert resp.json()["code"] == "method_not_allowed"
