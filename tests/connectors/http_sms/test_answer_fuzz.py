"""The carrier's answers to a send under fuzz: whatever status, headers and body a
Twilio-compatible carrier answers with (JSON of any shape and depth, NaN, lone
surrogates, bytes), ``send`` returns a result the gateway can store or raises a
``ConnectorError`` — never anything else, which the worker could only retry blindly."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.base import ConnectorContext, ConnectorError, OutboundMessage
from connectors.http_sms.twilio import TwilioConnector
from gateway import jsoncodec
from gateway.blobs import BlobStore
from gateway.clock import FrozenClock
from gateway.config import ConnectorConfig
from tests.connectors.http_sms.conftest import RecordingSink
from tests.fuzzing import fuzz, json_values, nested, odd_json

pytestmark = pytest.mark.anyio
CLOCK = FrozenClock(datetime(2026, 3, 15, 12, 0, tzinfo=UTC))
MESSAGE = OutboundMessage("msg_1", "sms", "+4915112345671", "+4917612345678", "Hallo")
KEYS = ["sid", "status", "num_segments", "error_code", "code", "message", "detail"]
KEYS += ["messaging_service_sid", "more_info"]

shaped = st.dictionaries(
    st.sampled_from(KEYS),
    json_values
    | st.sampled_from(["SM" + "a" * 32, "queued", "failed", "undelivered", "21211", "20003"])
    | st.sampled_from([2**63, 2**64 - 1, -1, 0, 256, "9" * 30]),
    max_size=6,
)


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    """A carrier's answer body: Twilio-shaped JSON, any JSON, odd JSON, or bytes."""
    kind = draw(st.sampled_from(["shaped", "any", "odd", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=100))
    if kind == "any":
        return json.dumps(draw(json_values)).encode()
    doc = draw(shaped)
    if kind == "shaped":
        return json.dumps(doc).encode()
    raw = json.dumps({**doc, "sid": "@odd@"})
    return raw.replace('"@odd@"', draw(odd_json)).encode("utf-8", "surrogatepass")


retry_afters = st.sampled_from(
    ["", "0", "5", "-5", "1e309", "nan", "inf", "9" * 400, "Wed, 21 Oct 2015 07:28:00 GMT"]
) | st.text(st.characters(max_codepoint=0xFF), max_size=30)


def connector(handler: Any) -> TwilioConnector:
    """A twilio connector whose carrier is ``handler`` (an httpx mock transport)."""
    options = {"account_sid": "AC1", "auth_token": "tok", "base_url": "http://127.0.0.1:9"}
    config = ConnectorConfig("tw1", "twilio", frozenset({"sms"}), None, options)
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    ctx = ConnectorContext(http, RecordingSink(), CLOCK, BlobStore("/nonexistent"), "")
    return TwilioConnector(config, ctx)


@fuzz(300)
@given(
    st.sampled_from([200, 201, 202, 204, 301, 400, 401, 404, 429, 500, 503])
    | st.integers(100, 599),
    bodies(),
    st.none() | retry_afters,
)
async def test_any_answer_is_a_result_or_a_connector_error(
    status: int, body: bytes, retry_after: str | None
) -> None:
    headers = {"Retry-After": retry_after.encode("latin-1")} if retry_after is not None else {}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body, headers=headers)

    c = connector(answer)
    try:
        result = await c.send(MESSAGE)
    except ConnectorError as exc:
        assert exc.message
        # Not bounded above: "Retry-After: 999…" gives inf (reported to the retry helpers).
        after = getattr(exc, "retry_after", None)
        assert after is None or after >= 0
        return
    finally:
        await c.ctx.http.aclose()
    assert result.carrier_id and (result.segments is None or 0 <= result.segments <= 255)
    jsoncodec.dumps({"id": result.carrier_id, "meta": result.meta, "n": result.segments})


@pytest.mark.parametrize(
    "body",
    [
        nested(100_000).encode(),  # httpx's json.loads raised RecursionError
        ('{"sid": "SM1", "status": "queued", "x": ' + nested(500) + "}").encode(),
        b'{"sid": "SM1", "status": "queued", "num_segments": 99999999999999999999}',
    ],
)
async def test_a_2xx_whose_body_cannot_be_stored_is_taken_as_accepted(body: bytes) -> None:
    c = connector(lambda request: httpx.Response(201, content=body))
    result = await c.send(MESSAGE)
    await c.ctx.http.aclose()
    jsoncodec.dumps({"id": result.carrier_id, "meta": result.meta, "n": result.segments})
    assert result.segments is None
