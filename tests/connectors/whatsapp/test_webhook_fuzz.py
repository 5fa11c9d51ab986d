"""Meta's webhook under fuzz: a validly signed POST of any body — Meta's examples with
parts replaced by any JSON, any JSON at all, nesting of any depth, NaN, lone surrogates,
bytes that are not JSON — is answered 200 or 400 (401 without the signature), never
with an error, and what it hands over can be stored. :func:`webhook.parse` itself never
raises on any JSON document."""

from __future__ import annotations

import contextlib
import copy
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount

from connectors.whatsapp import webhook
from connectors.whatsapp.cloud import WhatsAppCloudConnector
from connectors.whatsapp.simulator import WhatsAppSimulator
from connectors.whatsapp.webhook import sign
from gateway import jsoncodec
from gateway.store.base import MessageFilter
from tests.connectors.whatsapp.conftest import (
    BUSINESS,
    META_PNID,
    USER,
    Gateway,
    RecordingSink,
    payload_doc,
)
from tests.fuzzing import fuzz, json_text, nested, odd_json
from tests.fuzzing import json_values as json_values_any
from tests.gateway.conftest import auth

pytestmark = pytest.mark.anyio
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
EXAMPLES = [
    "text.json",
    "image.json",
    "document.json",
    "unsupported.json",
    "status_sent.json",
    "status_delivered.json",
    "status_failed.json",
    "status_sent_v24.json",
]
KINDS = [
    "text",
    "image",
    "document",
    "audio",
    "video",
    "sticker",
    "location",
    "contacts",
    "interactive",
    "button",
    "order",
    "reaction",
    "unsupported",
    "system",
    "request_welcome",
    "ephemeral",
]

# -- JSON documents ----------------------------------------------------------------------
text = json_text
json_values = (
    st.sampled_from(["16505551234", "1749416383", "wamid.x", "", "0", "-1", "1e400"])
    | json_values_any
)


def _paths(doc: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside ``doc``."""
    out = [here]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*here, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, (*here, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


@st.composite
def message_objects(draw: st.DrawFn) -> dict[str, Any]:
    """An inbound message of any type, its type's object made of any JSON."""
    kind = draw(st.sampled_from(KINDS))
    msg: dict[str, Any] = {
        "from": draw(st.sampled_from(["16505551234", "+16505551234", "0123", ""]) | json_values),
        "id": draw(st.sampled_from(["wamid.A", "wamid.B"]) | json_values),
        "timestamp": draw(
            st.sampled_from(["1749416383", "99999999999", "-62135596801", "253402300800"])
            | json_values
        ),
        "type": kind,
        kind: draw(json_values),
    }
    for extra in draw(st.lists(st.sampled_from(["context", "errors", "referral"]), max_size=2)):
        msg[extra] = draw(json_values)
    return msg


@st.composite
def documents(draw: st.DrawFn) -> Any:
    """Meta's examples with up to four parts replaced, or messages of every type."""
    doc = copy.deepcopy(payload_doc(draw(st.sampled_from(EXAMPLES))))
    if draw(st.booleans()):
        value = doc["entry"][0]["changes"][0]["value"]
        value["messages"] = draw(st.lists(message_objects(), min_size=1, max_size=3))
    paths = _paths(doc)
    for _ in range(draw(st.integers(0, 4))):
        path = draw(st.sampled_from(paths))
        with contextlib.suppress(KeyError, IndexError, TypeError):  # the path is gone
            doc = _replace(doc, path, draw(json_values))
        paths = _paths(doc)
    return doc


SENTINEL = "@@odd@@"


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """Raw webhook bodies: serialised documents, with something odd spliced in, or bytes."""
    kind = draw(st.sampled_from(["document", "spliced", "any_json", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "any_json":
        return json.dumps(draw(json_values)).encode()
    doc = draw(documents())
    if kind == "spliced":  # a sentinel in place of one value, then replaced in the text
        doc = _replace(doc, draw(st.sampled_from(_paths(doc))), SENTINEL)
    raw = json.dumps(doc, ensure_ascii=draw(st.booleans()))
    if kind == "spliced":
        odd = draw(odd_json)
        raw = raw.replace(f'"{SENTINEL}"', odd)
    return raw.encode("utf-8", "surrogatepass")


def storable(sink: RecordingSink) -> None:
    """What the connector handed over can be written by the stores."""
    for m in sink.inbound_messages:
        jsoncodec.dumps({"text": m.text, "meta": m.meta, "from": m.from_, "id": m.carrier_id})
    for r in sink.statuses:
        jsoncodec.dumps({"id": r.carrier_id, "error": r.error, "at": r.at.isoformat()})


# -- parse() -------------------------------------------------------------------------------
@fuzz(300)
@given(documents() | json_values)
def test_parse_never_raises(doc: Any) -> None:
    parsed = webhook.parse(doc, connector_id="wa", numbers_by_id={META_PNID: BUSINESS}, now=NOW)
    sink = RecordingSink()
    sink.inbound_messages = [p.message for p in parsed.inbound]
    sink.statuses = parsed.statuses
    storable(sink)
    for item in parsed.inbound:
        assert item.message.from_.startswith("+") and item.message.to == BUSINESS
        assert item.message.received_at.tzinfo is not None
        if item.media is not None:
            webhook.MediaRef.from_dict(item.media.to_dict())


@fuzz(300)
@given(text | st.text(), st.binary(max_size=64), st.none() | st.text())
def test_verify_signature_never_raises(secret: str, body: bytes, header: str | None) -> None:
    assert webhook.verify_signature(secret, body, header) in (True, False)
    if secret:
        assert webhook.verify_signature(secret, body, sign(secret, body))


# -- the route, with a recording sink -----------------------------------------------------
class DeferringSink(RecordingSink):
    """A recording sink with durable jobs (media is deferred, not downloaded here)."""

    def __init__(self) -> None:
        super().__init__()
        self.deferred: list[tuple[str, dict[str, Any]]] = []

    async def defer(self, kind: str, payload: dict[str, Any]) -> None:
        """Remember the job."""
        jsoncodec.dumps(payload)
        self.deferred.append((kind, payload))


@pytest.fixture
def sink() -> DeferringSink:
    """The connector's sink (overrides the plain recording one)."""
    return DeferringSink()


@pytest.fixture
async def hooks(connector: WhatsAppCloudConnector) -> AsyncIterator[httpx.AsyncClient]:
    """The connector's routes mounted as the gateway does, served in-process."""
    app = Starlette(routes=[Mount("/hooks/wa", routes=list(connector.routes()))])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
        yield client


@fuzz(200)
@given(bodies(), st.sampled_from(["signed", "signed", "signed", "unsigned", "wrong"]))
async def test_any_signed_body_is_answered_200_or_400(
    hooks: httpx.AsyncClient, sim: WhatsAppSimulator, sink: DeferringSink, body: bytes, how: str
) -> None:
    sink.inbound_messages.clear()
    sink.statuses.clear()
    headers = {}
    if how != "unsigned":
        headers["X-Hub-Signature-256"] = sign(sim.app_secret if how == "signed" else "x", body)
    resp = await hooks.post("/hooks/wa/", content=body, headers=headers)
    assert resp.status_code == (401 if how != "signed" else resp.status_code)
    assert resp.status_code in (200, 400, 401), resp.text
    if resp.status_code != 200:
        assert sink.inbound_messages == [] and sink.statuses == []
    storable(sink)


@fuzz(100)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["hub.mode", "hub.challenge", "hub.verify_token"]) | text,
            st.binary(max_size=12) | st.sampled_from([b"subscribe", b"\xed\xa0\x80", b"%"]),
        ),
        max_size=5,
    )
)
async def test_any_verification_query_is_answered_200_or_403(
    hooks: httpx.AsyncClient, sim: WhatsAppSimulator, pairs: list[tuple[str, bytes]]
) -> None:
    query = "&".join(f"{quote(k)}={''.join(f'%{b:02X}' for b in v)}" for k, v in pairs)
    resp = await hooks.get(f"/hooks/wa/?{query}")
    assert resp.status_code in (200, 403)
    if resp.status_code == 200:
        assert dict(pairs).get("hub.verify_token") == sim.verify_token.encode()


# -- the exact bodies that answered 500, into a real gateway ---------------------------------
def _text_message(body_json: str, context_json: str = "{}") -> bytes:
    doc = payload_doc("text.json")
    msg = doc["entry"][0]["changes"][0]["value"]["messages"][0]
    msg["text"] = {"body": "@BODY@"}
    msg["context"] = "@CONTEXT@"
    raw = json.dumps(doc).replace('"@BODY@"', body_json).replace('"@CONTEXT@"', context_json)
    return raw.encode()


REGRESSIONS = {
    # json.loads raised RecursionError.
    "deep_array": b"[" * 100_000 + b"]" * 100_000,
    "deep_object": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    # Parsed, then the store could not encode it (orjson stops at 254 levels).
    "deep_context": _text_message('"hi"', '{"quoted": ' + nested(300) + "}"),
    # Parsed, then the store could not encode the text (a lone surrogate).
    "lone_surrogate": _text_message('"\\ud83d"'),
    # Not JSON (the standard library took them, as nan and inf).
    "nan": _text_message("NaN"),
    "infinity": _text_message("1e400"),
}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_bodies_that_answered_500_are_refused_with_400(gateway: Gateway) -> None:
    for name, body in REGRESSIONS.items():
        headers = {"X-Hub-Signature-256": sign(gateway.sim.app_secret, body)}
        resp = await gateway.client.post("/hooks/wa/", content=body, headers=headers)
        assert (resp.status_code, resp.text) == (400, "malformed JSON"), name
    page = await gateway.rt.store.list_messages(MessageFilter(gateway.seed.team.id), None, 10)
    assert page.items == []


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@fuzz(30)
@given(bodies())
async def test_any_signed_body_into_a_real_gateway(gateway: Gateway, body: bytes) -> None:
    headers = {"X-Hub-Signature-256": sign(gateway.sim.app_secret, body)}
    resp = await gateway.client.post("/hooks/wa/", content=body, headers=headers)
    assert resp.status_code in (200, 400), resp.text
    # What was stored can be read back (and answered to).
    for path in ("/v1/messages", "/v1/conversations"):
        listed = await gateway.client.get(path, headers=auth(gateway.seed.team_key))
        assert listed.status_code == 200, listed.text


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("timestamp", ["253402300799", "253402214400", "4102444800"])
async def test_a_timestamp_from_the_future_is_taken_as_the_time_of_arrival(
    gateway: Gateway, timestamp: str
) -> None:
    # 9999-12-31 was stored: the window's end (+24 h) overflowed, and every later read of
    # the conversation and every WhatsApp send to the contact answered 500. 2100-01-01
    # kept the window open for 74 years.
    doc = payload_doc("text.json")
    msg = doc["entry"][0]["changes"][0]["value"]["messages"][0]
    msg["from"], msg["timestamp"] = USER[1:], timestamp
    body = json.dumps(doc).encode()
    headers = {"X-Hub-Signature-256": sign(gateway.sim.app_secret, body)}
    assert (
        await gateway.client.post("/hooks/wa/", content=body, headers=headers)
    ).status_code == 200
    key = auth(gateway.seed.team_key)
    [conversation] = (await gateway.client.get("/v1/conversations", headers=key)).json()["data"]
    [message] = (await gateway.client.get("/v1/messages", headers=key)).json()["data"]
    assert message["created_at"] == "2026-03-15T12:00:00.000Z"  # the gateway's clock
    reply = {"channel": "whatsapp", "from": BUSINESS, "to": USER, "text": "Gern"}
    assert (await gateway.client.post("/v1/messages", json=reply, headers=key)).status_code == 202
    assert conversation["remote_number"] == USER


@pytest.mark.parametrize("code", ["²", "1" * 4301, "--5"])
def test_a_failed_status_with_a_code_int_cannot_read(code: str) -> None:
    # int() raised ValueError inside parse(): the whole batch answered 500.
    doc = payload_doc("status_failed.json")
    doc["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"][0]["code"] = code
    parsed = webhook.parse(doc, connector_id="wa", numbers_by_id={META_PNID: BUSINESS}, now=NOW)
    [report] = parsed.statuses
    assert report.status == "failed" and report.error is not None
    assert report.error["carrier_code"] is None and report.error["code"] == "carrier_error"
