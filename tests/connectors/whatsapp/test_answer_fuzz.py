"""The Graph API's answers under fuzz: whatever status and body Meta (or a proxy) answers a
send or a media download with, ``send`` returns a result the gateway can store or raises a
``ConnectorError``, and ``media.download`` returns checked bytes or raises a
``ConnectorError`` (``MediaRefused`` for media it will not take) — nothing else."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.base import ConnectorContext, ConnectorError, OutboundMessage
from connectors.whatsapp import errors, media
from connectors.whatsapp.cloud import WhatsAppCloudConnector
from gateway import jsoncodec
from gateway.blobs import BlobStore
from gateway.clock import FrozenClock
from gateway.config import ConnectorConfig
from tests.connectors.whatsapp.conftest import BUSINESS, META_PNID, USER, RecordingSink
from tests.fuzzing import fuzz, json_values, nested, numeric_strings, odd_json

pytestmark = pytest.mark.anyio
CLOCK = FrozenClock(datetime(2026, 3, 15, 12, 0, tzinfo=UTC))
GRAPH = "http://127.0.0.1:9/v25.0"
MESSAGE = OutboundMessage("msg_1", "whatsapp", BUSINESS, USER, "Hallo")
STATUSES = st.sampled_from([200, 201, 400, 401, 403, 404, 429, 500, 503]) | st.integers(100, 599)
codes = st.sampled_from([131047, 130429, 131056, 190, 4, 1, 131049, 0]) | numeric_strings


@st.composite
def graph_bodies(draw: st.DrawFn) -> bytes:
    """Graph-shaped answers (success and error) with any values, any JSON, odd JSON, bytes."""
    kind = draw(st.sampled_from(["ok", "error", "any", "odd", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=80))
    if kind == "any":
        return json.dumps(draw(json_values)).encode()
    if kind == "ok":
        doc: Any = {
            "messaging_product": "whatsapp",
            "contacts": draw(st.just([{"input": USER, "wa_id": "4917"}]) | json_values),
            "messages": draw(st.just([{"id": "wamid.A"}]) | json_values),
        }
    else:
        error = {"code": draw(codes | json_values), "message": draw(json_values)}
        for key in draw(st.lists(st.sampled_from(["error_subcode", "fbtrace_id", "error_data"]))):
            error[key] = draw(codes | json_values)
        doc = {"error": error}
    raw = json.dumps(doc)
    if kind == "odd":
        raw = json.dumps({"error": {"code": "@odd@"}}).replace('"@odd@"', draw(odd_json))
    return raw.encode("utf-8", "surrogatepass")


def client(handler: Any) -> httpx.AsyncClient:
    """An HTTP client whose every request is answered by ``handler``."""
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


def connector(http: httpx.AsyncClient) -> WhatsAppCloudConnector:
    """A connector for BUSINESS whose Graph API is ``http``'s handler."""
    options = {
        "graph_url": GRAPH,
        "access_token": "token",
        "app_secret": "secret",
        "verify_token": "verify",
        "phone_number_ids": {BUSINESS: META_PNID},
    }
    config = ConnectorConfig("wa", "whatsapp_cloud", frozenset({"whatsapp"}), None, options)
    ctx = ConnectorContext(http, RecordingSink(), CLOCK, BlobStore("/nonexistent"), "")
    return WhatsAppCloudConnector(config, ctx)


@fuzz(250)
@given(STATUSES, graph_bodies())
async def test_any_send_answer_is_a_result_or_a_connector_error(status: int, body: bytes) -> None:
    http = client(lambda request: httpx.Response(status, content=body))
    c = connector(http)
    try:
        result = await c.send(MESSAGE)
    except ConnectorError as exc:
        assert exc.message
        return
    finally:
        await c.aclose()
        await http.aclose()
    jsoncodec.dumps({"id": result.carrier_id, "meta": result.meta})


media_urls = st.sampled_from(
    [
        f"{GRAPH}/file",
        "https://cdn.example/f",
        "http://[",
        "ftp://x",
        "https://a b/",
        "https://c/\x01",
    ]
)
media_ids = st.sampled_from(["m1", "m\x00", "a b", "../x", "?q=1", "#", ""]) | st.text(max_size=8)


@fuzz(250)
@given(
    media_ids,
    STATUSES,
    st.dictionaries(
        st.sampled_from(["url", "mime_type", "sha256", "file_size", "id"]),
        json_values | media_urls,
    )
    .map(json.dumps)
    .map(str.encode)
    | graph_bodies(),
    STATUSES,
    st.binary(max_size=40),
    st.none() | st.text(max_size=70) | numeric_strings,
)
async def test_any_download_answer_is_media_or_a_connector_error(
    media_id: str,
    meta_status: int,
    meta: bytes,
    file_status: int,
    data: bytes,
    webhook_sha256: str | None,
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if str(request.url).startswith(f"{GRAPH}/file") or request.url.host != "127.0.0.1":
            return httpx.Response(file_status, content=data)
        return httpx.Response(meta_status, content=meta)

    http = client(answer)
    try:
        got = await media.download(
            http, GRAPH, "token", media_id, webhook_sha256=webhook_sha256, max_bytes=32
        )
    except ConnectorError as exc:
        assert exc.message
        return
    finally:
        await http.aclose()
    assert len(got.data) <= 32 and got.sha256 == hashlib.sha256(got.data).hexdigest()


@pytest.mark.parametrize("code", ["²", "1" * 4301, "-²"])
def test_error_codes_int_cannot_read_are_no_codes(code: str) -> None:
    # "²".isdigit() holds and int("²") raised ValueError: from a send's answer and from a
    # failed status webhook alike.
    graph = errors.parse_graph_error(400, {"error": {"code": code, "error_subcode": code}})
    assert graph.code is None and graph.subcode is None
    assert errors.parse_status_errors([{"code": code}]).code is None


async def download(meta: dict[str, Any], media_id: str = "m1") -> media.Downloaded:
    """``media.download`` of ``media_id`` whose Graph answer is ``meta``, its file b"x"."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v25.0/file":
            return httpx.Response(200, content=b"x")
        return httpx.Response(200, json=meta)

    async with client(answer) as http:
        return await media.download(http, GRAPH, "token", media_id)


async def test_a_file_size_int_cannot_read_is_no_size() -> None:
    got = await download({"url": f"{GRAPH}/file", "file_size": "²"})  # int("²") raised
    assert got.data == b"x"


@pytest.mark.parametrize("url", ["http://[/file", "https://cdn.example/a\x01b"])
async def test_a_download_url_that_is_no_url_is_refused(url: str) -> None:
    # urlsplit raised ValueError for the first, httpx InvalidURL for the second.
    with pytest.raises(media.MediaRefused, match="refusing"):
        await download({"url": url})


async def test_a_media_id_that_makes_no_url_is_refused() -> None:
    with pytest.raises(media.MediaRefused, match="media id"):  # httpx raised InvalidURL
        await download({"url": f"{GRAPH}/file"}, media_id="m\x00")


async def test_a_nested_send_answer_is_an_unreadable_answer() -> None:
    body = nested(100_000).encode()  # httpx's json.loads raised RecursionError
    async with client(lambda request: httpx.Response(200, content=body)) as http:
        result = await connector(http).send(MESSAGE)
    assert result.carrier_id == "unknown:msg_1" and result.meta == {"wamid_missing": True}
