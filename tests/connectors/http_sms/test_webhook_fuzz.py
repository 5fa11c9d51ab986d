"""Twilio's webhooks under fuzz: any form body, signed or not, under any URL and Host, is
answered 200, 204, 400, 403, 413 or 415 at once, never with an error, and what the
connector hands over can be stored; the signature functions never raise on any URL or
parameters a request can carry."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import Mount

from connectors.base import ConnectorContext
from connectors.http_sms import signature
from connectors.http_sms.simulator import Simulator
from connectors.http_sms.twilio import TwilioConnector
from gateway import jsoncodec
from gateway.blobs import BlobStore
from gateway.clock import FrozenClock
from gateway.config import ConnectorConfig, parse_settings
from gateway.process import open_runtime
from gateway.runtime import Runtime
from tests.connectors.http_sms.conftest import PUBLIC_URL, RecordingSink
from tests.fuzzing import fuzz, read_back
from tests.gateway.conftest import CONTACT, MOBILE_A, seed_directory

pytestmark = pytest.mark.anyio
CLOCK = FrozenClock(datetime(2026, 3, 15, 12, 0, tzinfo=UTC))
TOKEN = "tok"
ANSWERS = {200, 204, 400, 403, 413, 415}

# What a form can carry: text without lone surrogates (it is decoded from UTF-8).
text = st.text(st.characters(exclude_categories=["Cs"]), max_size=30)
numbers = st.sampled_from(
    ["0", "1", "-1", "255", "256", " 7 ", "1e3", "10" * 12, "9" * 40, "1" * 4301, "²", "0x10"]
)
NAMES = [
    "MessageSid",
    "SmsSid",
    "SmsMessageSid",
    "MessageStatus",
    "SmsStatus",
    "ErrorCode",
    "From",
    "To",
    "Body",
    "NumMedia",
    "NumSegments",
    "MediaUrl0",
    "MediaContentType0",
    "MediaUrl1",
    "FromCountry",
    "MessagingServiceSid",
]
values = (
    text
    | numbers
    | st.sampled_from(["SM" + "a" * 32, MOBILE_A, CONTACT, "delivered", "failed", "undelivered"])
)
forms = st.lists(st.tuples(st.sampled_from(NAMES) | text, values), max_size=12)
raw_bodies = st.binary(max_size=120) | st.sampled_from(
    [b"Body=%zz", b"Body=%ff%fe", b"%", b"=&=&&", b"a=1;b=2", b"Body=" + b"a" * 70_000]
)
hosts = st.sampled_from(
    ["gw.example.com", "[", "[::1]", "[::1]:99999", "h:abc", "h:1:2", "a b", "x@y", "é.example"]
)
urls = st.one_of(
    text,
    st.builds(
        lambda scheme, host, port, path, query: f"{scheme}://{host}{port}{path}{query}",
        st.sampled_from(["http", "https", "ftp", ""]),
        hosts | text,
        st.sampled_from(["", ":80", ":443", ":0", ":99999", ":x", ":"]),
        st.sampled_from(["", "/", "/hooks/tw1/status"]) | text,
        st.sampled_from(["", "?a=1&b=2", "?"]) | text,
    ),
)


@fuzz(200)
@given(urls, st.lists(st.tuples(text, text), max_size=6), st.none() | text, text)
def test_signature_functions_never_raise(
    url: str, params: list[tuple[str, str]], given_sig: str | None, token: str
) -> None:
    variants = signature.url_variants(url)
    assert variants[0] == url and len(set(variants)) == len(variants)
    good = signature.compute(token, url, params)
    assert signature.verify(token, url, params, good)
    assert signature.verify(token, url, params, given_sig) in (True, False)


# -- the routes ----------------------------------------------------------------------------
def connector(sink: RecordingSink, public_url: str) -> TwilioConnector:
    """A twilio connector whose carrier is never called."""
    options = {"account_sid": "AC1", "auth_token": TOKEN}
    config = ConnectorConfig("tw1", "twilio", frozenset({"sms"}), None, options)
    ctx = ConnectorContext(None, sink, CLOCK, BlobStore("/nonexistent"), public_url)  # type: ignore[arg-type]
    return TwilioConnector(config, ctx)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """A webhook request: route, body, content type, Host, query, and how it is signed."""
    path = draw(st.sampled_from(["/status", "/inbound"]))
    pairs = draw(forms)
    raw = draw(st.integers(0, 4)) == 0
    return {
        "path": path,
        "pairs": pairs,
        "body": draw(raw_bodies) if raw else urlencode(pairs).encode(),
        "raw": raw,
        "content_type": draw(
            st.sampled_from(
                [
                    "application/x-www-form-urlencoded",
                    "application/x-www-form-urlencoded; charset=utf-8",
                    "APPLICATION/X-WWW-FORM-URLENCODED",
                    "application/json",
                    "",
                ]
            )
        ),
        "host": draw(hosts),
        "query": draw(st.sampled_from(["", "a=1", "%ff=1", "x"])),
        "public_url": draw(st.sampled_from([PUBLIC_URL, ""])),
        "signed": draw(st.sampled_from(["right", "right", "none", "wrong"])),
    }


async def post(c: TwilioConnector, req: dict[str, Any]) -> httpx.Response:
    """Send ``req`` to the connector's routes in-process (bounded: no answer may hang)."""
    app = Starlette(routes=[Mount("/hooks/tw1", routes=list(c.routes()))])
    path = f"/hooks/tw1{req['path']}"
    query = f"?{req['query']}" if req["query"] else ""
    base = c.hook_url(req["path"]) or f"http://{req['host']}{path}"
    headers = {"Host": req["host"].encode(), "Content-Type": req["content_type"].encode()}
    if req["signed"] != "none":
        token = c.auth_token if req["signed"] == "right" else "guess"
        sig = signature.compute(token, base + query, req["pairs"])
        headers["X-Twilio-Signature"] = sig.encode()
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client,
        asyncio.timeout(10),
    ):
        return await client.post(path + query, content=req["body"], headers=headers)


def storable(sink: RecordingSink) -> None:
    """What the connector handed over can be written by the stores."""
    for m in sink.messages:
        jsoncodec.dumps({"meta": m.meta, "text": m.text, "from": m.from_, "to": m.to})
        jsoncodec.dumps({"segments": m.segments, "id": m.carrier_id})
        assert 1 <= m.segments <= 255
    for r in sink.reports:
        jsoncodec.dumps({"id": r.carrier_id, "error": r.error})


@pytest.fixture
def sink() -> RecordingSink:
    """What the connectors handed over (emptied by each example)."""
    return RecordingSink()


@pytest.fixture
def connectors(sink: RecordingSink) -> dict[str, TwilioConnector]:
    """Connectors with and without public_url, by public_url."""
    return {url: connector(sink, url) for url in (PUBLIC_URL, "")}


@fuzz(200)
@given(requests())
async def test_any_request_gets_a_clean_answer(
    connectors: dict[str, TwilioConnector], sink: RecordingSink, req: dict[str, Any]
) -> None:
    sink.messages.clear()
    sink.reports.clear()
    resp = await post(connectors[req["public_url"]], req)
    assert resp.status_code in ANSWERS, resp.text
    if resp.status_code in (403, 413, 415):
        assert sink.messages == [] and sink.reports == []
    storable(sink)


async def test_a_huge_num_media_is_answered_at_once() -> None:
    # range(NumMedia) looped 10**18 times: the request never got an answer.
    sink = RecordingSink()
    pairs = [("MessageSid", "SM1"), ("From", CONTACT), ("To", MOBILE_A), ("NumMedia", "9" * 18)]
    req = {
        "path": "/inbound",
        "pairs": pairs,
        "body": urlencode(pairs).encode(),
        "content_type": "application/x-www-form-urlencoded",
        "host": "gw.example.com",
        "query": "",
        "public_url": PUBLIC_URL,
        "signed": "right",
    }
    resp = await post(connector(sink, PUBLIC_URL), req)
    assert resp.status_code == 200
    [message] = sink.messages
    assert message.attachments == [] and message.meta == {}


@pytest.mark.parametrize("given_segments", ["9" * 40, "256", "0", "-3"])
async def test_an_absurd_num_segments_is_counted_from_the_text(given_segments: str) -> None:
    # 10**40 segments reached the store, which cannot encode an integer past 64 bits.
    sink = RecordingSink()
    pairs = [
        ("MessageSid", "SM1"),
        ("From", CONTACT),
        ("To", MOBILE_A),
        ("Body", "Hallo"),
        ("NumSegments", given_segments),
    ]
    req = {
        "path": "/inbound",
        "pairs": pairs,
        "body": urlencode(pairs).encode(),
        "content_type": "application/x-www-form-urlencoded",
        "host": "gw.example.com",
        "query": "",
        "public_url": PUBLIC_URL,
        "signed": "right",
    }
    assert (await post(connector(sink, PUBLIC_URL), req)).status_code == 200
    assert [m.segments for m in sink.messages] == [1]


@pytest.mark.parametrize("host", ["[", "[::1", "h]"])
def test_urls_urlsplit_refuses_are_tried_as_given(host: str) -> None:
    # urlsplit raises ValueError ("Invalid IPv6 URL") for these Host headers, which reach
    # the signed URL when public_url is empty.
    url = f"http://{host}/hooks/tw1/inbound"
    assert signature.url_variants(url) == [url]
    assert signature.verify(TOKEN, url, [], signature.compute(TOKEN, url, []))


# -- into a real gateway ----------------------------------------------------------------------
@pytest.fixture
async def rt(tmp_path: Path, sim: Simulator) -> AsyncIterator[Runtime]:
    """A runtime on SQLite with the seeded team and a twilio connector (the simulator)."""
    settings = parse_settings(
        {"gateway": {"store": f"sqlite:///{tmp_path}/gw.db", "blobs": str(tmp_path / "b")}}
    )
    options = {
        "base_url": sim.base_url,
        "account_sid": sim.account_sid,
        "auth_token": sim.auth_token,
        "public_url": PUBLIC_URL,
    }
    tw = ConnectorConfig("tw1", "twilio", frozenset({"sms"}), None, options)
    runtime = await open_runtime(dataclasses.replace(settings, connectors=(tw,)), clock=CLOCK)
    try:
        await runtime.wait_started()
        await seed_directory(runtime, CLOCK)
        yield runtime
    finally:
        await runtime.aclose()


@fuzz(40)
@given(requests(), st.sampled_from([MOBILE_A, MOBILE_A, CONTACT, "+49", "x"]), st.integers(0, 99))
async def test_any_request_into_a_real_gateway(
    rt: Runtime, req: dict[str, Any], to: str, n: int
) -> None:
    c = rt.connectors["tw1"].connector
    assert isinstance(c, TwilioConnector)
    # An inbound SMS to a member underneath the fuzzed fields (which may override it).
    pairs = [("MessageSid", f"SM{n}"), ("From", CONTACT), *req["pairs"], ("To", to)]
    req = {**req, "public_url": PUBLIC_URL, "pairs": pairs}
    if not req["raw"]:
        req["body"] = urlencode(req["pairs"]).encode()
    resp = await post(c, req)
    assert resp.status_code in ANSWERS, resp.text
    await read_back(rt)
