"""Every refusal of a request body or query parameter answers exactly as recorded.

``refusals.json`` holds the answers (status, content type, the whole problem document)
that the hand-written validators gave before the typed commands (``gateway/commands``)
replaced them, for sends, previews, forwarding rules, the policy and the list parameters:
one case per rule, and a few requests that break several rules at once. The typed
commands must keep every one of them.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.mail import SmtpConfig
from gateway.runtime import Runtime
from tests.gateway.conftest import CONTACT, FAX_A, MOBILE_A, MOBILE_B, Seed, auth

pytestmark = pytest.mark.anyio

RECORDED = Path(__file__).with_name("refusals.json")
# Keys of accepted answers that differ from run to run.
VARYING = {"id", "conversation_id", "created_at", "updated_at"}

SMS = {"channel": "sms", "from": MOBILE_B, "to": CONTACT, "text": "hi"}
WA = {"channel": "whatsapp", "from": MOBILE_A, "to": CONTACT}
TEMPLATE = {"name": "order_update", "language": "de"}
# Beyond 64 bits: JSON parsers differ on such numbers.
BIG_NUMBER = {"type": "body", "parameters": [{"type": "text", "text": "4711", "n": 10**25}]}


@pytest.fixture
def backend() -> str:
    """SQLite: the answers do not depend on the store."""
    return "sqlite"


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _wa_template(template: Any) -> bytes:
    return _json({**WA, "template": template})


SEND: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("blank", b"  "),
    ("broken", b'{"channel": '),
    ("trailing", _json(SMS) + b" x"),
    ("not utf-8", b'{"text": "\xff"}'),
    ("bom", b"\xef\xbb\xbf" + _json(SMS)),
    ("nan", b'{"channel": "sms", "text": NaN}'),
    ("infinite", b'{"channel": "sms", "text": 1e400}'),
    ("lone surrogate", b'{"channel": "sms", "text": "\\ud800"}'),
    ("control character", b'{"channel": "sms", "text": "a\x01"}'),
    ("array", b"[]"),
    ("number", b"5"),
    ("null", b"null"),
    ("string", b'"sms"'),
    ("unknown field", _json({**SMS, "colour": "red"})),
    ("unknown fields", _json({**SMS, "zeta": 1, "alpha": 2})),
    ("cover on sms", _json({**SMS, "cover": {"note": "hi"}})),
    ("cover not an object", _json({**SMS, "cover": "hi"})),
    ("unknown before type", _json({"channel": 5, "colour": "red"})),
    ("no channel", _json({k: v for k, v in SMS.items() if k != "channel"})),
    ("channel null", _json({**SMS, "channel": None})),
    ("channel number", _json({**SMS, "channel": 5})),
    ("channel list", _json({**SMS, "channel": ["sms"]})),
    ("channel unknown", _json({**SMS, "channel": "pigeon"})),
    ("channel upper", _json({**SMS, "channel": "SMS"})),
    ("no from", _json({k: v for k, v in SMS.items() if k != "from"})),
    ("from null", _json({**SMS, "from": None})),
    ("from number", _json({**SMS, "from": 4915112345672})),
    ("from empty", _json({**SMS, "from": ""})),
    ("from invalid", _json({**SMS, "from": "12"})),
    ("no to", _json({k: v for k, v in SMS.items() if k != "to"})),
    ("to null", _json({**SMS, "to": None})),
    ("to object", _json({**SMS, "to": {"n": 1}})),
    ("to blank", _json({**SMS, "to": "   "})),
    ("to invalid", _json({**SMS, "to": "12"})),
    ("to letters", _json({**SMS, "to": "call me"})),
    ("text number", _json({**SMS, "text": 5})),
    ("text list", _json({**SMS, "text": ["hi"]})),
    ("text bool", _json({**SMS, "text": True})),
    ("text null", _json({**SMS, "text": None})),
    ("text empty", _json({**SMS, "text": ""})),
    ("text too long", _json({**SMS, "text": "x" * 1601})),
    ("whatsapp text too long", _json({**WA, "text": "x" * 4097})),
    ("attachments string", _json({**SMS, "attachments": "att_1"})),
    ("attachments object", _json({**SMS, "attachments": {}})),
    ("attachments null", _json({**SMS, "attachments": None})),
    ("attachments empty", _json({**SMS, "attachments": []})),
    ("attachment number", _json({**WA, "text": "x", "attachments": [5]})),
    ("attachment null", _json({**WA, "text": "x", "attachments": [None]})),
    ("attachment unknown", _json({**WA, "text": "x", "attachments": ["att_nope"]})),
    ("too many attachments", _json({**SMS, "attachments": ["att_1"]})),
    ("fallback number", _json({**WA, "text": "x", "fallback": 5})),
    ("fallback bool", _json({**WA, "text": "x", "fallback": True})),
    ("fallback fax", _json({**WA, "text": "x", "fallback": "fax"})),
    ("fallback on sms", _json({**SMS, "fallback": "sms"})),
    ("fallback null", _json({**WA, "text": "x", "fallback": None})),
    ("fallback long text", _json({**WA, "text": "x" * 1601, "fallback": "sms"})),
    ("fallback with attachments", _json({**WA, "attachments": ["att_1"], "fallback": "sms"})),
    ("same number", _json({**SMS, "to": MOBILE_B})),
    ("no text", _json({k: v for k, v in SMS.items() if k != "text"})),
    ("not the sender's", _json({**SMS, "from": "+4915112345679"})),
    ("fax from a mobile", _json({**SMS, "channel": "fax"})),
    ("fax", _json({**SMS, "channel": "fax", "from": FAX_A, "to": "+4930123456799"})),
    ("template on sms", _json({**SMS, "text": None, "template": TEMPLATE})),
    ("template number", _wa_template(5)),
    ("template list", _wa_template([])),
    ("template empty", _wa_template({})),
    ("template null", _json({**WA, "text": "x", "template": None})),
    ("template unknown", _wa_template({**TEMPLATE, "zeta": 1, "alpha": 2})),
    ("template no name", _wa_template({"language": "de"})),
    ("template no language", _wa_template({"name": "order_update"})),
    ("template name", _wa_template({**TEMPLATE, "name": "Order Update"})),
    ("template name number", _wa_template({**TEMPLATE, "name": 5})),
    ("template name long", _wa_template({**TEMPLATE, "name": "x" * 513})),
    ("template language", _wa_template({**TEMPLATE, "language": "deutsch"})),
    ("template language number", _wa_template({**TEMPLATE, "language": 5})),
    ("template language object", _wa_template({**TEMPLATE, "language": {"code": "en_US"}})),
    ("template language code", _wa_template({**TEMPLATE, "language": {"code": "x"}})),
    ("template language extra", _wa_template({**TEMPLATE, "language": {"code": "de", "x": 1}})),
    ("template language code number", _wa_template({**TEMPLATE, "language": {"code": 5}})),
    ("template components number", _wa_template({**TEMPLATE, "components": 5})),
    ("template components null", _wa_template({**TEMPLATE, "components": None})),
    ("template component number", _wa_template({**TEMPLATE, "components": [5]})),
    ("template component no type", _wa_template({**TEMPLATE, "components": [{}]})),
    ("template component type", _wa_template({**TEMPLATE, "components": [{"type": "x"}]})),
    ("template components", _wa_template({**TEMPLATE, "components": [BIG_NUMBER]})),
    (
        "template components too large",
        _wa_template({**TEMPLATE, "components": [{"type": "body", "text": "x" * 16_000}]}),
    ),
    ("template with text", _json({**WA, "text": "x", "template": TEMPLATE})),
    ("template with attachments", _json({**WA, "attachments": ["att_1"], "template": TEMPLATE})),
    ("template with fallback", _json({**WA, "fallback": "sms", "template": TEMPLATE})),
    ("template bad name on sms", _json({**SMS, "text": None, "template": {"name": "X"}})),
    ("window closed", _json({**WA, "text": "x"})),
    ("window closed fallback", _json({**WA, "text": "x", "fallback": "sms"})),
    ("two wrong types", _json({"channel": "sms", "text": 5, "from": 5, "to": "x"})),
    ("wrong type and bad number", _json({**SMS, "from": "12", "to": 5})),
    ("wrong type and unknown channel", _json({**SMS, "channel": "pigeon", "to": 5})),
    ("fallback and template shape", _json({**WA, "fallback": "fax", "template": 5})),
]

MEMBER = "/v1/members/{anna}/forwarding"
FORWARDING: list[tuple[str, str, str, bytes]] = [
    ("broken", MEMBER, "team", b"{"),
    ("array", MEMBER, "team", b"[]"),
    ("number", MEMBER, "team", b"5"),
    ("unknown", MEMBER, "team", _json({"colour": 1, "emails": []})),
    ("member_id other", MEMBER, "team", _json({"member_id": "mem_x"})),
    ("member_id number", MEMBER, "team", _json({"member_id": 5})),
    ("member_id null", MEMBER, "team", _json({"member_id": None})),
    ("member_id own", MEMBER, "team", b'{"member_id": "{anna}", "updated_at": 5}'),
    ("enabled string", MEMBER, "team", _json({"enabled": "yes"})),
    ("enabled null", MEMBER, "team", _json({"enabled": None})),
    ("enabled number", MEMBER, "team", _json({"enabled": 1})),
    ("channels string", MEMBER, "team", _json({"channels": "sms"})),
    ("channels null", MEMBER, "team", _json({"channels": None})),
    ("channels too many", MEMBER, "team", _json({"channels": ["sms", "whatsapp", "fax"]})),
    ("channels fax", MEMBER, "team", _json({"channels": ["fax"]})),
    ("channels number", MEMBER, "team", _json({"channels": [5]})),
    ("channels twice", MEMBER, "team", _json({"channels": ["sms", "sms"]})),
    ("channels empty", MEMBER, "team", _json({"channels": []})),
    ("email string", MEMBER, "team", _json({"email": "a@x.example"})),
    ("email null", MEMBER, "team", _json({"email": None})),
    ("email number", MEMBER, "team", _json({"email": [5]})),
    ("email no relay", MEMBER, "team", _json({"email": ["a@x.example"]})),
    ("sms string", MEMBER, "team", _json({"sms": CONTACT})),
    ("sms number", MEMBER, "team", _json({"sms": [5]})),
    ("sms too many", MEMBER, "team", _json({"sms": [CONTACT] * 6})),
    ("sms invalid", MEMBER, "team", _json({"sms": ["12"]})),
    ("sms landline", MEMBER, "team", _json({"sms": ["+4930123456799"]})),
    ("sms own", MEMBER, "team", _json({"sms": [MOBILE_A]})),
    ("sms twice", MEMBER, "team", _json({"sms": [CONTACT, "0176 12345678"]})),
    ("sms", MEMBER, "team", _json({"sms": [CONTACT], "channels": ["whatsapp"]})),
    ("unknown member", "/v1/members/mem_nope/forwarding", "team", _json({"enabled": "x"})),
    ("unknown member broken", "/v1/members/mem_nope/forwarding", "team", b"{"),
    ("another member", MEMBER, "ben", _json({"enabled": "x"})),
    ("two wrong", MEMBER, "team", _json({"sms": [5], "enabled": "x"})),
    ("bad channel and wrong type", MEMBER, "team", _json({"channels": ["fax"], "sms": 5})),
    ("too large", MEMBER, "team", b'{"sms": [' + b" " * 65_536 + b"]}"),
]
RELAYED: list[tuple[str, bytes]] = [
    ("email too many", _json({"email": [f"a{i}@x.example" for i in range(6)]})),
    ("email invalid", _json({"email": ["not an address"]})),
    ("email display name", _json({"email": ["Anna <a@x.example>"]})),
    ("email twice", _json({"email": ["a@x.example", "A@X.example"]})),
    ("email", _json({"email": ["a@x.example"], "enabled": False})),
]

POLICY: list[tuple[str, str, bytes]] = [
    ("broken", "team", b"{"),
    ("array", "team", b"[]"),
    ("string", "team", b'"x"'),
    ("member key", "ben", _json({"member_limit": 5})),
    ("unknown", "team", _json({"colour": 1})),
    ("locked", "team", _json({"locked_prefixes": []})),
    ("countries string", "team", _json({"countries": "DE"})),
    ("countries null", "team", _json({"countries": None})),
    ("countries number", "team", _json({"countries": [5]})),
    ("countries unknown", "team", _json({"countries": ["XX"]})),
    ("countries any and more", "team", _json({"countries": ["*", "DE"]})),
    ("countries too many", "team", _json({"countries": ["DE"] * 1001})),
    ("blocked not a prefix", "team", _json({"blocked_prefixes": ["abc"]})),
    ("blocked number", "team", _json({"blocked_prefixes": [49900]})),
    ("blocked too many", "team", _json({"blocked_prefixes": ["+49"] * 10_001})),
    ("allowed locked", "team", _json({"allowed_prefixes": ["+49900"]})),
    ("both", "team", _json({"allowed_prefixes": ["+49180"], "blocked_prefixes": ["0180"]})),
    ("channels unknown", "team", _json({"destination_channels": ["pigeon"]})),
    ("channels string", "team", _json({"destination_channels": "sms"})),
    ("channels too many", "team", _json({"destination_channels": ["sms"] * 4})),
    ("channels number", "team", _json({"destination_channels": [1]})),
    ("limit zero", "team", _json({"destination_limit": 0})),
    ("limit float", "team", _json({"destination_limit": 1.5})),
    ("limit whole float", "team", _json({"destination_limit": 5.0})),
    ("limit bool", "team", _json({"destination_limit": True})),
    ("limit string", "team", _json({"destination_limit": "5"})),
    ("limit false", "team", _json({"destination_limit": False})),
    ("limit huge", "team", _json({"member_limit": 10**30})),
    ("window zero", "team", _json({"destination_window_seconds": 0})),
    ("window null", "team", _json({"destination_window_seconds": None})),
    ("window long", "team", _json({"member_window_seconds": 31 * 86_400 + 1})),
    ("window float", "team", _json({"member_window_seconds": 1e3})),
    ("country then limit", "team", _json({"countries": ["XX"], "member_limit": 0})),
    ("limit then country", "team", _json({"member_limit": 0, "countries": ["XX"]})),
    ("unknown after bad", "team", _json({"countries": 5, "colour": 1})),
    ("limits off", "team", _json({"destination_limit": None, "member_limit": None})),
    ("reset", "team", b"{}"),
]

QUERIES: list[str] = [
    "/v1/messages?limit=0",
    "/v1/messages?limit=201",
    "/v1/messages?limit=x",
    "/v1/messages?limit=",
    "/v1/messages?cursor=garbage",
    "/v1/messages?channel=email",
    "/v1/messages?direction=sideways",
    "/v1/messages?status=lost",
    "/v1/conversations?cursor=x:y",
    "/v1/conversations?limit=-1",
    "/v1/quota?period=2026-13",
]


def _normal(resp: httpx.Response, ids: dict[str, str]) -> dict[str, Any]:
    text = resp.text
    for value, name in ids.items():
        text = text.replace(value, f"{{{name}}}")
    body = json.loads(text) if text else None
    if resp.status_code < 300 and isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in VARYING}
    return {
        "status": resp.status_code,
        "content_type": resp.headers.get("content-type"),
        "body": body,
    }


async def answers(client: httpx.AsyncClient, seed: Seed, rt: Runtime) -> dict[str, Any]:
    """Every case's answer, ids replaced by their names."""
    ids = {seed.anna.id: "anna", seed.ben.id: "ben", seed.team.id: "team"}
    keys = {"team": seed.team_key, "ben": seed.ben_key}
    out: dict[str, Any] = {}
    up = await client.post(
        "/v1/attachments",
        files={"file": ("a.jpg", b"\xff\xd8jpeg", "image/jpeg")},
        headers=auth(seed.team_key),
    )
    ids[up.json()["id"]] = "att"
    for name, body in SEND:
        body = body.replace(b"att_1", up.json()["id"].encode())
        for path in ("/v1/messages", "/v1/messages/preview"):
            resp = await client.post(path, content=body, headers=auth(seed.team_key))
            out[f"POST {path} {name}"] = _normal(resp, ids)
    for name, path, key, body in FORWARDING:
        body = body.replace(b"{anna}", seed.anna.id.encode())
        resp = await client.put(path.format(anna=seed.anna.id), content=body,
                                headers=auth(keys[key]))  # fmt: skip
        out[f"PUT forwarding {name}"] = _normal(resp, ids)
    relay = SmtpConfig("127.0.0.1", 2525, starttls=False)  # configured, never used here
    rt.settings = dataclasses.replace(rt.settings, smtp=relay)
    for name, body in RELAYED:
        resp = await client.put(MEMBER.format(anna=seed.anna.id), content=body,
                                headers=auth(seed.team_key))  # fmt: skip
        out[f"PUT forwarding {name}"] = _normal(resp, ids)
    for name, key, body in POLICY:
        resp = await client.put("/v1/policy", content=body, headers=auth(keys[key]))
        out[f"PUT policy {name}"] = _normal(resp, ids)
    too_large = b"[" + b" " * (1 << 20) + b"]"
    resp = await client.put("/v1/policy", content=too_large, headers=auth(seed.team_key))
    out["PUT policy too large"] = _normal(resp, ids)
    for query in QUERIES:
        resp = await client.get(query, headers=auth(seed.team_key))
        out[f"GET {query}"] = _normal(resp, ids)
    return out


# A request that breaks a rule of shape (a JSON type, a range) in one field and a rule of
# content (a valid number, a known country) in another is now refused for the shape: the
# typed command checks the whole shape while decoding, before any content is looked at.
REORDERED = {
    "POST /v1/messages wrong type and bad number": ("'to' must be a str", "to"),
    "POST /v1/messages/preview wrong type and bad number": ("'to' must be a str", "to"),
    "PUT policy country then limit": (
        "member_limit: expected a whole number from 1 to 1000000000, or null for no limit",
        "member_limit",
    ),
}


async def test_answers_are_as_recorded(
    client: httpx.AsyncClient, seed: Seed, rt: Runtime
) -> None:
    recorded = json.loads(RECORDED.read_text())
    got = await answers(client, seed, rt)
    assert list(got) == list(recorded)
    for name, (detail, field) in REORDERED.items():
        body = got.pop(name)["body"]
        assert (body["code"], body["detail"], body["field"]) == ("validation_error", detail, field)
    differ = {k: (v, recorded[k]) for k, v in got.items() if v != recorded[k]}
    assert not differ, json.dumps(differ, indent=1)
