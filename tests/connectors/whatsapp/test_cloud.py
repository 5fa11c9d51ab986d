"""The ``whatsapp_cloud`` connector against the simulator: options, webhook routes on
Meta's example payloads, sending, and the mapping of every error class."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from connectors.base import (
    AuthError,
    ConnectorContext,
    ErrorCode,
    NotReadyError,
    OutboundAttachment,
    OutboundMessage,
    PermanentError,
    RetryableError,
)
from connectors.whatsapp import cloud
from connectors.whatsapp.cloud import WhatsAppCloudConnector, parse_options
from connectors.whatsapp.simulator import WhatsAppSimulator
from connectors.whatsapp.throughput import NumberLimiter, PairBackoff
from connectors.whatsapp.webhook import sign
from gateway.blobs import BlobStore
from gateway.clock import FrozenClock
from gateway.config import ConnectorConfig
from gateway.coordination import LocalCoordination
from gateway.errors import ConfigError
from tests.conftest import free_port
from tests.connectors.whatsapp.conftest import (
    BUSINESS,
    META_PNID,
    USER,
    RecordingSink,
    connector_config,
    payload,
    serving,
)

pytestmark = pytest.mark.anyio
JPEG = b"\xff\xd8\xff\xe0" + b"\x10" * 2000
PDF = b"%PDF-1.4\n" + b"x" * 500


class Tick:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.t = 50.0

    def __call__(self) -> float:
        return self.t


def out(text: str | None = "Hallo", **meta: Any) -> OutboundMessage:
    return OutboundMessage("msg_1", "whatsapp", BUSINESS, USER, text, meta=dict(meta))


def attachment(tmp_path: Path, data: bytes, ctype: str, name: str) -> OutboundAttachment:
    path = tmp_path / name
    path.write_bytes(data)
    return OutboundAttachment(
        f"att_{name}", str(path), ctype, len(data), hashlib.sha256(data).hexdigest(), name
    )


# -- options -------------------------------------------------------------------------------
def config(**options: Any) -> ConnectorConfig:
    base = {
        "access_token": "t",
        "app_secret": "s",
        "verify_token": "v",
        "phone_number_ids": {BUSINESS: META_PNID},
    }
    return ConnectorConfig("wa", "whatsapp_cloud", frozenset({"whatsapp"}), None, base | options)


def test_options_defaults_and_numbers() -> None:
    opts = parse_options(config())
    assert opts.graph_url == "https://graph.facebook.com/v25.0"
    assert opts.phone_number_ids == {BUSINESS: META_PNID}
    assert opts.default_throughput == 80.0 and opts.throughput == {}
    table = parse_options(config(throughput={BUSINESS: 1000}, graph_url="http://x/v25.0/"))
    assert table.throughput == {META_PNID: 1000.0} and table.graph_url == "http://x/v25.0"


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"access_token": ""}, r"connectors\[wa\]\.access_token: required"),
        ({"app_secret": None}, r"\.app_secret: required"),
        ({"phone_number_ids": {}}, r"\.phone_number_ids: required"),
        ({"phone_number_ids": {"0151 12345671": "1"}}, r"\.phone_number_ids: .*not a phone"),
        ({"phone_number_ids": {BUSINESS: "abc"}}, r"expected Meta's numeric id"),
        ({"phone_number_ids": {BUSINESS: "1", "+4915112345672": "1"}}, "share a phone_number_id"),
        ({"throughput": 0}, r"\.throughput: expected a positive number"),
        ({"throughput": {"+4915112345672": 5}}, r"not in phone_number_ids"),
        ({"burst": 0}, r"\.burst: expected an integer >= 1"),
        ({"graph_url": "ftp://x"}, r"\.graph_url: expected an http"),
        ({"colour": "red"}, r"\.colour: unknown option"),
    ],
)
def test_bad_options_name_the_key(options: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        parse_options(config(**options))


def test_channels_and_numbers_must_fit() -> None:
    both = ConnectorConfig("wa", "whatsapp_cloud", frozenset({"sms", "whatsapp"}), None, {})
    with pytest.raises(ConfigError, match=r"channels: a whatsapp_cloud connector carries only"):
        parse_options(both)
    cfg = config()
    extra = ConnectorConfig(
        cfg.id, cfg.kind, cfg.channels, frozenset({"+4915112345672"}), cfg.options
    )
    with pytest.raises(ConfigError, match=r"numbers: \+4915112345672 has no entry"):
        parse_options(extra)


# -- start ---------------------------------------------------------------------------------
async def test_start_checks_token_and_numbers(
    sim: WhatsAppSimulator,
    http: httpx.AsyncClient,
    sink: RecordingSink,
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    ctx = ConnectorContext(http, sink, clock, BlobStore(tmp_path), "http://gw.test")
    bad_token = WhatsAppCloudConnector(connector_config(sim, access_token="expired"), ctx)
    with pytest.raises(AuthError, match="190"):
        await bad_token.start()
    assert not bad_token.health().ok
    await bad_token.aclose()
    unknown = WhatsAppCloudConnector(connector_config(sim, phone_number_ids={BUSINESS: "777"}), ctx)
    with pytest.raises(NotReadyError, match="phone_number_id 777"):
        await unknown.start()
    nowhere = WhatsAppCloudConnector(
        connector_config(sim, graph_url=f"http://127.0.0.1:{free_port()}/v25.0"), ctx
    )
    with pytest.raises(NotReadyError, match="unreachable"):
        await nowhere.start()
    good = WhatsAppCloudConnector(connector_config(sim), ctx)
    await good.start()
    assert good.health().ok and good.numbers == frozenset({BUSINESS})


# -- webhook routes ------------------------------------------------------------------------
@pytest.fixture
async def hooks(connector: WhatsAppCloudConnector) -> AsyncIterator[httpx.AsyncClient]:
    """The connector's routes mounted as the gateway does, served in-process."""
    app = Starlette(routes=[Mount("/hooks/wa", routes=list(connector.routes()))])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
        yield client


async def post(
    client: httpx.AsyncClient, body: bytes, secret: str | None, **headers: str
) -> httpx.Response:
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    return await client.post("/hooks/wa/", content=body, headers=headers)


async def test_get_verification(hooks: httpx.AsyncClient, sim: WhatsAppSimulator) -> None:
    query = {
        "hub.mode": "subscribe",
        "hub.challenge": "1158201444",
        "hub.verify_token": sim.verify_token,
    }
    ok = await hooks.get("/hooks/wa/", params=query)
    assert ok.status_code == 200 and ok.text == "1158201444"
    assert ok.headers["content-type"].startswith("text/plain")
    wrong = await hooks.get("/hooks/wa/", params={**query, "hub.verify_token": "guess"})
    assert wrong.status_code == 403
    mode = await hooks.get("/hooks/wa/", params={**query, "hub.mode": "unsubscribe"})
    assert mode.status_code == 403
    assert (await hooks.get("/hooks/wa/")).status_code == 403


async def test_signature_failures_hand_over_nothing(
    hooks: httpx.AsyncClient, sim: WhatsAppSimulator, sink: RecordingSink
) -> None:
    body = payload("text.json")
    assert (await post(hooks, body, None)).status_code == 401
    assert (await post(hooks, body, "another-secret")).status_code == 401
    reserialised = json.dumps(json.loads(body), separators=(",", ":")).encode()
    signature = sign(sim.app_secret, body)
    resp = await hooks.post(
        "/hooks/wa/", content=reserialised, headers={"X-Hub-Signature-256": signature}
    )
    assert resp.status_code == 401
    assert sink.inbound_messages == [] and sink.statuses == []
    assert (await post(hooks, body, sim.app_secret)).status_code == 200
    assert len(sink.inbound_messages) == 1


async def test_too_large_and_malformed(
    hooks: httpx.AsyncClient, sim: WhatsAppSimulator, sink: RecordingSink
) -> None:
    big = b"{" + b" " * (3 * 1024 * 1024) + b"}"
    assert (await post(hooks, big, sim.app_secret)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted while read
        for _ in range(4):
            yield b" " * (1024 * 1024)

    streamed = await hooks.post(
        "/hooks/wa/", content=chunks(), headers={"X-Hub-Signature-256": "x"}
    )
    assert streamed.status_code == 413
    broken = b'{"object": "whatsapp_business_account", '
    assert (await post(hooks, broken, sim.app_secret)).status_code == 400
    assert sink.inbound_messages == [] and sink.statuses == []


@pytest.mark.parametrize(
    ("name", "inbound", "statuses"),
    [
        ("text.json", ["Does it come in another color?"], []),
        ("unsupported.json", ["[unsupported WhatsApp message: edit]"], []),
        ("status_sent.json", [], ["sent"]),
        ("status_sent_v24.json", [], ["sent"]),
        ("status_delivered.json", [], ["delivered"]),
        ("status_failed.json", [], ["failed"]),
    ],
)
async def test_metas_examples_through_the_webhook(
    hooks: httpx.AsyncClient,
    sim: WhatsAppSimulator,
    sink: RecordingSink,
    name: str,
    inbound: list[str],
    statuses: list[str],
) -> None:
    body = payload(name)
    resp = await post(hooks, body, sim.app_secret)
    assert resp.status_code == 200 and resp.json() == {"ok": True}
    assert [m.text for m in sink.inbound_messages] == inbound
    assert [s.status for s in sink.statuses] == statuses
    for m in sink.inbound_messages:
        assert (m.from_, m.to, m.channel, m.connector_id) == (
            "+16505551234",
            BUSINESS,
            "whatsapp",
            "wa",
        )
    if name == "status_failed.json":
        assert sink.statuses[0].error is not None
        assert sink.statuses[0].error["carrier_code"] == "131049"
    # Meta re-sends: the same body again hands over nothing new.
    assert (await post(hooks, body, sim.app_secret)).status_code == 200
    assert len(sink.inbound_messages) == len(inbound) and len(sink.statuses) == len(statuses)


@pytest.mark.parametrize(
    ("name", "text", "media_id"),
    [
        ("image.json", "Taj Mahal", "1003383421387256"),
        ("document.json", "my receipt", "622684793477189"),
    ],
)
async def test_metas_media_examples_are_downloaded_before_handing_over(
    hooks: httpx.AsyncClient,
    sim: WhatsAppSimulator,
    sink: RecordingSink,
    connector: WhatsAppCloudConnector,
    name: str,
    text: str,
    media_id: str,
) -> None:
    # (Both examples carry the same wamid: one connector would take the second for a
    # duplicate.) Meta's example media ids do not exist here: kept, without media.
    resp = await post(hooks, payload(name), sim.app_secret)
    assert resp.status_code == 200
    for task in list(connector._tasks):
        await task
    (msg,) = sink.inbound_messages
    assert msg.text == text and msg.attachments == []
    error = msg.meta["whatsapp"]["media_error"]
    assert error["media_id"] == media_id and error["refused"] is False
    assert "#100" in error["reason"]


async def test_a_duplicate_failed_and_reordered_statuses_are_handed_over_once(
    hooks: httpx.AsyncClient, sim: WhatsAppSimulator, sink: RecordingSink
) -> None:
    doc = json.loads(payload("status_sent_v24.json"))
    st = doc["entry"][0]["changes"][0]["value"]["statuses"]
    base = dict(st[0])
    st[:] = [{**base, "status": s} for s in ("read", "sent", "delivered", "read", "sent")]
    body = json.dumps(doc).encode()
    assert (await post(hooks, body, sim.app_secret)).status_code == 200
    assert [s.status for s in sink.statuses] == ["read", "sent", "delivered"]


# -- sending -------------------------------------------------------------------------------
async def test_text_send(connector: WhatsAppCloudConnector, sim: WhatsAppSimulator) -> None:
    result = await connector.send(
        out("Grüße", whatsapp={"context": "wamid.PREV", "preview_url": True})
    )
    (sent,) = sim.sends
    assert result.carrier_id == sent.wamid and result.carrier_id.startswith("wamid.")
    assert result.meta == {"wa_id": USER.lstrip("+")} and result.segments == 1
    assert sent.payload == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": USER,
        "context": {"message_id": "wamid.PREV"},
        "type": "text",
        "text": {"body": "Grüße", "preview_url": True},
    }


async def test_template_goes_outside_the_window(
    connector: WhatsAppCloudConnector, sim: WhatsAppSimulator
) -> None:
    template = {"name": "order_update", "language": "de", "components": [{"type": "body"}]}
    await connector.send(out("Ihre Bestellung", whatsapp={"template": template}))
    (sent,) = sim.sends
    assert sent.payload["type"] == "template"
    assert sent.payload["template"] == {
        "name": "order_update",
        "language": {"code": "de"},
        "components": [{"type": "body"}],
    }
    assert "text" not in sent.payload
    deliveries = [p.status["status"] for p in sim._pending]
    assert deliveries == ["sent", "delivered", "read"]  # no 131047: templates may go


async def test_free_form_outside_the_window_fails_later_like_meta(
    connector: WhatsAppCloudConnector, sim: WhatsAppSimulator
) -> None:
    await connector.send(out("Hallo"))
    (pending,) = sim._pending
    assert pending.status["status"] == "failed" and pending.status["errors"][0]["code"] == 131047


@pytest.mark.parametrize(
    ("meta", "text", "says"),
    [
        ({"template": {"language": "de"}}, None, "needs a 'name'"),
        ({"template": {"name": "x"}}, None, "needs a 'language'"),
        ({"template": {"name": "x", "language": "de", "components": "no"}}, None, "must be a list"),
        ({"context": 5}, "x", "must be a wamid"),
        ({}, "x" * 4097, "at most 4096 characters"),
        ({}, None, "needs text, an attachment or a template"),
    ],
)
async def test_bad_messages_are_refused_before_meta(
    connector: WhatsAppCloudConnector,
    sim: WhatsAppSimulator,
    meta: dict[str, Any],
    text: str | None,
    says: str,
) -> None:
    with pytest.raises(PermanentError, match=says) as err:
        await connector.send(out(text, whatsapp=meta))
    assert err.value.code == ErrorCode.CONTENT_INVALID
    assert sim.sends == []


async def test_4096_characters_go(
    connector: WhatsAppCloudConnector, sim: WhatsAppSimulator
) -> None:
    await connector.send(out("x" * 4096))
    assert sim.sends[0].payload["text"]["body"] == "x" * 4096


async def test_a_number_it_does_not_serve(connector: WhatsAppCloudConnector) -> None:
    msg = OutboundMessage("m", "whatsapp", "+4915112345672", USER, "x")
    with pytest.raises(PermanentError, match="not a business number of connector wa"):
        await connector.send(msg)


async def test_media_is_uploaded_then_sent_by_id(
    connector: WhatsAppCloudConnector, sim: WhatsAppSimulator, tmp_path: Path
) -> None:
    image = attachment(tmp_path, JPEG, "image/jpeg", "photo.jpg")
    msg = out("look")
    msg.attachments = [image]
    await connector.send(msg)
    (media_id,) = sim.media
    assert sim.media[media_id].data == JPEG
    assert sim.sends[0].payload["image"] == {"id": media_id, "caption": "look"}
    await connector.send(msg)  # the same bytes again: the media id is reused
    assert len(sim.media) == 1 and sim.sends[1].payload["image"]["id"] == media_id
    doc = attachment(tmp_path, PDF, "application/pdf", "invoice.pdf")
    msg.attachments, msg.text = [doc], None
    await connector.send(msg)
    assert sim.sends[2].payload["type"] == "document"
    assert sim.sends[2].payload["document"]["filename"] == "invoice.pdf"
    assert "caption" not in sim.sends[2].payload["document"]


async def test_media_limits_are_checked_before_upload(
    connector: WhatsAppCloudConnector, sim: WhatsAppSimulator, tmp_path: Path
) -> None:
    big = attachment(tmp_path, b"\xff" * (5 * 1024 * 1024 + 1), "image/jpeg", "big.jpg")
    gif = attachment(tmp_path, b"GIF89a", "image/gif", "a.gif")
    audio = attachment(tmp_path, b"ID3" + b"\x00" * 100, "audio/mpeg", "a.mp3")
    image = attachment(tmp_path, JPEG, "image/jpeg", "ok.jpg")
    cases: list[tuple[list[OutboundAttachment], str | None, str]] = [
        ([big], None, "over WhatsApp's limit"),
        ([gif], None, "cannot send 'image/gif'"),
        ([audio], "hello", "audio carries no text"),
        ([image], "x" * 1025, "at most 1024 characters"),
        ([image, image], None, "one attachment per message"),
    ]
    for atts, text, says in cases:
        msg = out(text)
        msg.attachments = atts
        with pytest.raises(PermanentError, match=says):
            await connector.send(msg)
    assert sim.media == {} and sim.sends == []


async def test_the_limiter_is_applied_per_business_number(
    connector: WhatsAppCloudConnector, sim: WhatsAppSimulator
) -> None:
    tick = Tick()
    connector.limiter = NumberLimiter(
        {}, default_rate=1000.0, burst=1, shared=LocalCoordination(tick)
    )
    for _ in range(3):
        await connector.send(out("x"))
    # Three slots were taken on this number's budget: the next waits 3 ms.
    assert await connector.limiter.reserve(META_PNID) == pytest.approx(0.003)
    assert await connector.limiter.reserve("another number") == 0.0


# -- the error classes ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "kind", "normal", "after"),
    [
        (131047, PermanentError, ErrorCode.WINDOW_CLOSED, None),
        (131026, PermanentError, ErrorCode.UNREACHABLE, None),
        (130429, RetryableError, ErrorCode.THROTTLED, 1.0),
        (131048, PermanentError, ErrorCode.BLOCKED, None),
        (4, RetryableError, ErrorCode.THROTTLED, 60.0),
        (80007, RetryableError, ErrorCode.THROTTLED, 60.0),
        (100, PermanentError, ErrorCode.CONTENT_INVALID, None),
        (131008, PermanentError, ErrorCode.CONTENT_INVALID, None),
        (131009, PermanentError, ErrorCode.CONTENT_INVALID, None),
        (1, RetryableError, ErrorCode.CARRIER_ERROR, None),
        (2, RetryableError, ErrorCode.CARRIER_ERROR, None),
        (131000, RetryableError, ErrorCode.CARRIER_ERROR, None),
        (131016, RetryableError, ErrorCode.CARRIER_ERROR, None),
        (131057, RetryableError, ErrorCode.CARRIER_ERROR, 60.0),
        (131049, RetryableError, ErrorCode.REJECTED, 86_400.0),
        (131050, PermanentError, ErrorCode.BLOCKED, None),
        (130403, PermanentError, ErrorCode.BLOCKED, None),
        (132001, PermanentError, ErrorCode.CONTENT_INVALID, None),
        (131052, PermanentError, ErrorCode.CONTENT_INVALID, None),
        (131053, PermanentError, ErrorCode.CONTENT_INVALID, None),
        (424242, PermanentError, ErrorCode.CARRIER_ERROR, None),
    ],
)
async def test_send_errors_map_by_code(
    connector: WhatsAppCloudConnector,
    sim: WhatsAppSimulator,
    code: int,
    kind: type[Exception],
    normal: str,
    after: float | None,
) -> None:
    sim.fail_next(code)
    with pytest.raises(kind) as err:
        await connector.send(out())
    exc = err.value
    assert type(exc) is kind
    assert isinstance(exc, PermanentError | RetryableError)
    assert exc.code == normal and exc.carrier_code == str(code)
    assert getattr(exc, "retry_after", None) == after
    assert connector.health().ok
    # The next send goes through.
    assert (await connector.send(out())).carrier_id.startswith("wamid.")


async def test_130429_pauses_the_business_number(
    connector: WhatsAppCloudConnector, sim: WhatsAppSimulator
) -> None:
    tick = Tick()
    connector.limiter = NumberLimiter(
        {}, default_rate=80.0, burst=1, shared=LocalCoordination(tick)
    )
    sim.fail_next(130429)
    with pytest.raises(RetryableError):
        await connector.send(out())
    assert await connector.limiter.reserve(META_PNID) >= 1.0


async def test_131056_backs_off_the_recipient_4_to_the_n(
    connector: WhatsAppCloudConnector, sim: WhatsAppSimulator
) -> None:
    tick = Tick()
    connector.pairs = PairBackoff(LocalCoordination(tick), wall=tick)
    sim.fail_next(131056)
    with pytest.raises(RetryableError) as first:
        await connector.send(out())
    assert first.value.retry_after == 4.0  # type: ignore[attr-defined]
    # Within the backoff the recipient is not tried at all.
    with pytest.raises(RetryableError, match="pair rate limit") as local:
        await connector.send(out())
    assert local.value.retry_after == 4.0  # type: ignore[attr-defined]
    assert len(sim.sends) == 1
    # Other recipients are not held back.
    await connector.send(OutboundMessage("m2", "whatsapp", BUSINESS, "+4917699999999", "x"))
    tick.t += 4
    sim.fail_next(131056)
    with pytest.raises(RetryableError) as second:
        await connector.send(out())
    assert second.value.retry_after == 16.0  # type: ignore[attr-defined]
    tick.t += 16
    await connector.send(out())  # success resets
    assert await connector.pairs.hits(META_PNID, USER) == 0


async def test_a_backoff_that_began_while_waiting_for_a_slot_holds_the_send(
    connector: WhatsAppCloudConnector, sim: WhatsAppSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recipient is looked at again after the wait for a throughput slot: another
    process's 131056 meanwhile holds this send back too."""
    tick = Tick()
    connector.pairs = PairBackoff(LocalCoordination(tick), wall=tick)
    connector.limiter = NumberLimiter({}, default_rate=1000.0, burst=1,
                                      shared=LocalCoordination(tick))
    acquire = connector.limiter.acquire

    async def meanwhile(key: str) -> float:
        waited = await acquire(key)
        if waited > 0:  # another process is answered 131056 for this pair meanwhile
            await connector.pairs.hit(META_PNID, USER)
        return waited

    monkeypatch.setattr(connector.limiter, "acquire", meanwhile)
    await connector.send(out())  # takes the one slot: the next send waits 1 ms
    with pytest.raises(RetryableError, match="pair rate limit") as held:
        await connector.send(out())
    assert held.value.retry_after == 4.0  # type: ignore[attr-defined]
    assert len(sim.sends) == 1


@pytest.mark.parametrize("code", [190, 0, 3, 10, 200, 299, 131005])
async def test_auth_errors_make_the_connector_unhealthy_until_the_token_works(
    connector: WhatsAppCloudConnector, sim: WhatsAppSimulator, code: int
) -> None:
    sim.fail_next(code)
    with pytest.raises(AuthError) as err:
        await connector.send(out())
    assert err.value.carrier_code == str(code)
    health = connector.health()
    assert not health.ok
    assert f"({code})" in health.detail and "messages stay queued" in health.detail
    assert connector._probe_task is not None  # it re-checks by itself
    assert await connector.probe()
    assert connector.health().ok


async def test_a_refused_token_probe_stays_unhealthy(
    connector: WhatsAppCloudConnector, sim: WhatsAppSimulator
) -> None:
    good = sim.access_token
    sim.access_token = "rotated-at-meta"
    with pytest.raises(AuthError):
        await connector.send(out())
    assert not await connector.probe()
    assert not connector.health().ok
    sim.access_token = good
    await connector.send(out())  # any successful call clears it too
    assert connector.health().ok


async def test_no_code_and_no_answer(
    connector: WhatsAppCloudConnector,
    sim: WhatsAppSimulator,
    http: httpx.AsyncClient,
    sink: RecordingSink,
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    for status, kind, normal in [
        (502, RetryableError, ErrorCode.CARRIER_ERROR),
        (503, RetryableError, ErrorCode.CARRIER_ERROR),
        (429, RetryableError, ErrorCode.THROTTLED),
        (401, AuthError, ErrorCode.AUTH_FAILED),
        (400, PermanentError, ErrorCode.REJECTED),
    ]:
        sim.fail_next_http(status)
        with pytest.raises(kind) as err:
            await connector.send(out())
        assert type(err.value) is kind and err.value.code == normal  # type: ignore[attr-defined]
        assert err.value.carrier_code is None  # type: ignore[attr-defined]
    ctx = ConnectorContext(http, sink, clock, BlobStore(tmp_path), "http://gw.test")
    nowhere = WhatsAppCloudConnector(
        connector_config(sim, graph_url=f"http://127.0.0.1:{free_port()}/v25.0"), ctx
    )
    with pytest.raises(RetryableError, match="unreachable"):
        await nowhere.send(out())


async def test_a_2xx_without_a_wamid_counts_as_sent(
    sim: WhatsAppSimulator,
    http: httpx.AsyncClient,
    sink: RecordingSink,
    clock: FrozenClock,
    tmp_path: Path,
) -> None:
    sim.fail_next_http(200, b"<html>ok</html>")
    ctx = ConnectorContext(http, sink, clock, BlobStore(tmp_path), "http://gw.test")
    conn = WhatsAppCloudConnector(connector_config(sim), ctx)
    result = await conn.send(out())
    assert result.carrier_id == "unknown:msg_1" and result.meta == {"wamid_missing": True}


# -- inbound media without durable jobs (a sink without ``defer``) --------------------------
async def test_inbound_media_in_process(
    sim: WhatsAppSimulator, connector: WhatsAppCloudConnector, sink: RecordingSink
) -> None:
    app = Starlette(routes=[Mount("/hooks/wa", routes=list(connector.routes()))])
    async with serving(app) as base:
        sim.webhook_url = f"{base}/hooks/wa/"
        wamid = await sim.inject_inbound(
            USER,
            BUSINESS,
            "the invoice",
            media=PDF,
            mime_type="application/pdf",
            filename="inv.pdf",
        )
        for task in list(connector._tasks):
            await task
    (msg,) = sink.inbound_messages
    assert msg.carrier_id == wamid and msg.text == "the invoice"
    (att,) = msg.attachments
    assert (att.data, att.content_type, att.filename) == (PDF, "application/pdf", "inv.pdf")
    assert cloud.MEDIA_JOB == "whatsapp_media"


async def test_a_failed_hand_over_is_taken_again_when_meta_retries(
    sim: WhatsAppSimulator, http: httpx.AsyncClient, clock: FrozenClock, tmp_path: Path
) -> None:
    class FlakySink(RecordingSink):
        fail = True

        async def inbound(self, message: Any) -> Any:
            if self.fail:
                self.fail = False
                raise ConnectionError("store down")
            return await super().inbound(message)

    sink = FlakySink()
    ctx = ConnectorContext(http, sink, clock, BlobStore(tmp_path), "http://gw.test")
    conn = WhatsAppCloudConnector(connector_config(sim), ctx)
    app = Starlette(routes=[Mount("/hooks/wa", routes=list(conn.routes()))])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
        body = payload("text.json")
        assert (await post(client, body, sim.app_secret)).status_code == 500
        assert (await post(client, body, sim.app_secret)).status_code == 200
    assert [m.text for m in sink.inbound_messages] == ["Does it come in another color?"]
