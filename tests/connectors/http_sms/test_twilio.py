"""The twilio connector against the simulator over real HTTP: options, sends, error table."""

from __future__ import annotations

import email.utils
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from connectors.base import (
    AuthError,
    ConnectorContext,
    ConnectorError,
    NotReadyError,
    OutboundAttachment,
    OutboundMessage,
    PermanentError,
    RetryableError,
)
from connectors.http_sms import signature
from connectors.http_sms.simulator import Simulator
from connectors.http_sms.twilio import (
    TWIML_EMPTY,
    TwilioConnector,
    delivery_error,
    rule_for,
)
from gateway.blobs import BlobStore
from gateway.clock import FrozenClock
from gateway.config import ConnectorConfig
from gateway.errors import ConfigError
from tests.conftest import free_port
from tests.connectors.http_sms.conftest import PUBLIC_URL, Build, RecordingSink

pytestmark = pytest.mark.anyio
TO = "+4917612345678"
FROM = "+4915112345671"


def out(text: str | None = "Hallo", to: str = TO) -> OutboundMessage:
    return OutboundMessage("msg_1", "sms", FROM, to, text)


# -- options ---------------------------------------------------------------------------------
def config(**options: Any) -> ConnectorConfig:
    base = {"account_sid": "AC1", "auth_token": "secret"}
    opts = {k: v for k, v in {**base, **options}.items() if v is not None}
    return ConnectorConfig("tw1", "twilio", frozenset({"sms"}), None, opts)


def context(public_url: str = PUBLIC_URL) -> ConnectorContext:
    return ConnectorContext(
        http=httpx.AsyncClient(),
        sink=RecordingSink(),
        clock=FrozenClock(datetime(2026, 3, 15, tzinfo=UTC)),
        blobs=BlobStore("/nonexistent"),
        public_url=public_url,
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"account_sid": None}, "connectors[tw1].account_sid: required"),
        ({"auth_token": None}, "connectors[tw1].auth_token: required"),
        ({"auth_token": "  "}, "connectors[tw1].auth_token: required (it is empty)"),
        ({"account_sid": 42}, "connectors[tw1].account_sid: expected a string, got 42"),
        ({"base_url": "api.twilio.com"}, "connectors[tw1].base_url: must start with http"),
        ({"timeout": 0}, "connectors[tw1].timeout: expected a number of seconds > 0, got 0"),
        ({"timeout": "5"}, "connectors[tw1].timeout: expected a number of seconds > 0"),
        ({"status_callback": "ftp://x"}, "connectors[tw1].status_callback: must start with"),
        ({"sid": "AC1"}, "connectors[tw1].sid: unknown option of kind twilio (known: "),
    ],
)
async def test_bad_options_name_their_key(options: dict[str, Any], message: str) -> None:
    ctx = context()
    with pytest.raises(ConfigError) as err:
        TwilioConnector(config(**options), ctx)
    assert str(err.value).startswith(message)
    await ctx.http.aclose()


async def test_sms_only() -> None:
    ctx = context()
    cfg = ConnectorConfig("tw1", "twilio", frozenset({"sms", "whatsapp"}), None, config().options)
    with pytest.raises(ConfigError, match=r"connectors\[tw1\].channels: kind twilio carries sms"):
        TwilioConnector(cfg, ctx)
    await ctx.http.aclose()


async def test_defaults_and_urls() -> None:
    ctx = context()
    c = TwilioConnector(config(), ctx)
    assert c.messages_url == "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json"
    assert c.status_callback_url == f"{PUBLIC_URL}/hooks/tw1/status"
    assert c.hook_url("/inbound") == f"{PUBLIC_URL}/hooks/tw1/inbound"
    assert c.timeout == 15.0 and c.health().ok
    off = TwilioConnector(config(status_callback=False, base_url="http://carrier:9/"), ctx)
    assert off.status_callback_url is None
    assert off.messages_url == "http://carrier:9/2010-04-01/Accounts/AC1/Messages.json"
    own = TwilioConnector(config(status_callback="https://cb.example.com/twilio"), ctx)
    assert own.status_callback_url == "https://cb.example.com/twilio"
    assert TwilioConnector(config(), context(public_url="")).status_callback_url is None
    await ctx.http.aclose()


# -- sending ---------------------------------------------------------------------------------
async def test_send_posts_the_form_and_records_sid_status_segments(
    build: Build, sim: Simulator
) -> None:
    c = build(messaging_service_sid="MG" + "0" * 32)
    await c.start()
    result = await c.send(out("a" * 161))
    [got] = sim.sends
    assert (got.to, got.from_, got.body) == (TO, FROM, "a" * 161)
    assert got.status_callback == f"{PUBLIC_URL}/hooks/tw1/status"
    assert got.messaging_service_sid == "MG" + "0" * 32
    assert result.carrier_id == got.sid and got.sid is not None
    assert result.carrier_id.startswith("SM") and len(result.carrier_id) == 34
    assert result.segments == 2  # 153 + 8 septets; the carrier sends it as a string
    assert result.meta == {"carrier_status": "queued", "messaging_service_sid": "MG" + "0" * 32}


async def test_send_without_status_callback(build: Build, sim: Simulator) -> None:
    c = build(status_callback=False)
    await c.send(out("Grüße aus Köln 😀"))
    assert sim.sends[0].status_callback is None
    assert sim.sends[0].segments == 1
    await sim.settle()
    assert sim.callbacks == []


async def test_text_only(build: Build, sim: Simulator) -> None:
    c = build()
    with pytest.raises(PermanentError) as err:
        await c.send(out(None))
    assert err.value.code == "content_invalid"
    msg = out()
    msg.attachments.append(OutboundAttachment("att_1", "/x", "image/png", 1, "00"))
    with pytest.raises(PermanentError, match="no MMS"):
        await c.send(msg)
    assert sim.sends == []


def http_date(at: datetime) -> str:
    return email.utils.format_datetime(at, usegmt=True)


NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)

# (status, Twilio code, Retry-After) → (exception, normalized code, carrier code, retry_after)
ERROR_TABLE = [
    pytest.param(401, 20003, None, AuthError, "auth_failed", "20003", None, id="401-20003"),
    pytest.param(403, None, None, AuthError, "auth_failed", "http_403", None, id="403"),
    pytest.param(404, 20404, None, AuthError, "auth_failed", "20404", None, id="404-account"),
    pytest.param(302, None, None, AuthError, "auth_failed", "http_302", None, id="redirect"),
    pytest.param(
        429, 20429, "7", RetryableError, "throttled", "20429", 7.0, id="429-retry-after-seconds"
    ),
    pytest.param(
        429,
        20429,
        http_date(NOW + timedelta(seconds=30)),
        RetryableError,
        "throttled",
        "20429",
        30.0,
        id="429-retry-after-date",
    ),
    pytest.param(429, None, None, RetryableError, "throttled", "http_429", None, id="429-bare"),
    pytest.param(500, None, None, RetryableError, "carrier_error", "http_500", None, id="500"),
    pytest.param(
        503, None, "120", RetryableError, "carrier_error", "http_503", 120.0, id="503-retry-after"
    ),
    pytest.param(
        500, 21211, None, RetryableError, "carrier_error", "21211", None, id="5xx-beats-code"
    ),
    pytest.param(400, 21211, None, PermanentError, "invalid_number", "21211", None, id="21211"),
    pytest.param(400, 21614, None, PermanentError, "invalid_number", "21614", None, id="21614"),
    pytest.param(400, 21610, None, PermanentError, "blocked", "21610", None, id="21610-stop"),
    pytest.param(400, 21408, None, PermanentError, "blocked", "21408", None, id="21408-region"),
    pytest.param(400, 21612, None, PermanentError, "blocked", "21612", None, id="21612-route"),
    pytest.param(400, 21617, None, PermanentError, "content_invalid", "21617", None, id="21617"),
    pytest.param(400, 30007, None, PermanentError, "blocked", "30007", None, id="30007"),
    pytest.param(400, 21611, None, RetryableError, "throttled", "21611", None, id="21611-queue"),
    pytest.param(400, 21999, None, PermanentError, "rejected", "21999", None, id="unknown-code"),
    pytest.param(418, None, None, PermanentError, "rejected", "http_418", None, id="unknown-4xx"),
    pytest.param(408, None, None, RetryableError, "timeout", "http_408", None, id="408"),
]


@pytest.mark.parametrize(
    ("status", "code", "retry_after", "exc", "normalized", "carrier_code", "after"), ERROR_TABLE
)
async def test_error_table(
    build: Build,
    sim: Simulator,
    clock: FrozenClock,
    status: int,
    code: int | None,
    retry_after: str | None,
    exc: type[ConnectorError],
    normalized: str,
    carrier_code: str,
    after: float | None,
) -> None:
    clock.set(NOW)
    c = build()
    sim.fail_next(
        1, status=status, code=code, message="the carrier's words", retry_after=retry_after
    )
    with pytest.raises(ConnectorError) as err:
        await c.send(out())
    assert type(err.value) is exc
    assert err.value.code == normalized and err.value.carrier_code == carrier_code
    assert f"HTTP {status}" in err.value.message and "the carrier's words" in err.value.message
    if isinstance(err.value, RetryableError):
        assert err.value.retry_after == after
    assert c.health().ok is (exc is not AuthError)
    # The fault was for one send only: the next one goes through.
    assert (await c.send(out())).carrier_id.startswith("SM")


async def test_the_simulators_own_validation(build: Build, sim: Simulator) -> None:
    c = build()
    with pytest.raises(PermanentError) as err:
        await c.send(out(to="0176 1234"))
    assert (err.value.code, err.value.carrier_code) == ("invalid_number", "21211")
    assert "Invalid 'To' Phone Number: 0176 1234" in err.value.message
    with pytest.raises(PermanentError) as err:
        await c.send(out("x" * 1601))
    assert (err.value.code, err.value.carrier_code) == ("content_invalid", "21617")


async def test_wrong_credentials(build: Build, sim: Simulator, clock: FrozenClock) -> None:
    c = build(auth_token="not-the-token", auth_retry=120)
    with pytest.raises(AuthError) as err:
        await c.start()
    assert err.value.carrier_code == "20003"
    with pytest.raises(AuthError):
        await c.send(out())
    assert sim.sends == []  # refused before anything was accepted
    health = c.health()
    assert not health.ok and "credentials" in health.detail and "20003" in health.detail
    clock.advance(seconds=119)
    assert not c.health().ok
    clock.advance(seconds=2)
    assert c.health().ok  # the next send is the probe


async def test_carrier_unreachable(build: Build) -> None:
    c = build(base_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(NotReadyError, match="carrier unreachable"):
        await c.start()
    with pytest.raises(RetryableError) as err:
        await c.send(out())
    assert err.value.code == "carrier_error" and "unreachable" in err.value.message
    assert c.health().ok  # not the credentials: messages keep being tried


async def test_timeout(build: Build, sim: Simulator) -> None:
    c = build(timeout=0.1)
    sim.stall_next(1, seconds=0.5)
    with pytest.raises(RetryableError) as err:
        await c.send(out())
    assert err.value.code == "timeout" and "0.1 s" in err.value.message


@pytest.mark.parametrize("include_sid", [True, False])
async def test_unreadable_2xx_is_taken_as_accepted(
    build: Build, sim: Simulator, include_sid: bool
) -> None:
    c = build()
    sim.garble_next(1, include_sid=include_sid)
    result = await c.send(out())
    [got] = sim.sends
    assert got.sid is not None
    assert result.carrier_id == (got.sid if include_sid else "unknown-msg_1")
    assert result.segments is None
    assert result.meta["carrier_status"] is None
    assert "<TwilioResponse>" in result.meta["carrier_response_unreadable"]


# -- webhooks at the connector (the gateway-level path is in test_webhooks) -----------------
def hooks_app(c: TwilioConnector) -> Starlette:
    return Starlette(routes=[Mount(f"/hooks/{c.id}", routes=list(c.routes()))])


@pytest.fixture
def offline(http: httpx.AsyncClient, sink: RecordingSink, clock: FrozenClock) -> Offline:
    """Connectors for webhook tests: no carrier needed."""
    return Offline(http, sink, clock)


class Offline:
    """Builds a connector whose carrier is never called."""

    def __init__(self, http: httpx.AsyncClient, sink: RecordingSink, clock: FrozenClock) -> None:
        self.http, self.sink, self.clock = http, sink, clock

    def __call__(self, public_url: str = PUBLIC_URL, **options: Any) -> TwilioConnector:
        ctx = ConnectorContext(
            self.http, self.sink, self.clock, BlobStore("/nonexistent"), public_url
        )
        return TwilioConnector(config(auth_token="tok", **options), ctx)


async def post_signed(
    client: httpx.AsyncClient, token: str, path: str, params: dict[str, str], signed_url: str
) -> httpx.Response:
    sig = signature.compute(token, signed_url, params)
    return await client.post(path, data=params, headers={"X-Twilio-Signature": sig})


@pytest.mark.parametrize(
    ("carrier_status", "error_code", "expected"),
    [
        ("accepted", None, None),
        ("queued", None, None),
        ("sending", None, None),
        ("scheduled", None, None),
        ("partially_delivered", None, None),
        ("receiving", None, None),  # not a status of outbound messages: ignored
        ("sent", None, ("sent", None)),
        ("delivered", None, ("delivered", None)),
        ("read", None, ("read", None)),
        ("undelivered", "30003", ("failed", "unreachable")),
        ("undelivered", "30005", ("failed", "invalid_number")),
        ("undelivered", "30006", ("failed", "invalid_number")),
        ("failed", "30007", ("failed", "blocked")),
        ("undelivered", "30008", ("failed", "unknown")),
        ("undelivered", "30036", ("failed", "expired")),
        ("undelivered", "39999", ("failed", "carrier_error")),
        ("undelivered", None, ("failed", "unknown")),
        ("failed", None, ("failed", "carrier_error")),
        ("canceled", None, ("failed", "rejected")),
    ],
)
async def test_status_callbacks_map_to_gateway_statuses(
    offline: Offline,
    sink: RecordingSink,
    carrier_status: str,
    error_code: str | None,
    expected: tuple[str, str | None] | None,
) -> None:
    c = offline()
    params = {"MessageSid": "SM" + "1" * 32, "MessageStatus": carrier_status}
    if error_code:
        params["ErrorCode"] = error_code
    transport = httpx.ASGITransport(app=hooks_app(c))
    async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:8000") as client:
        resp = await post_signed(
            client, c.auth_token, "/hooks/tw1/status", params, f"{PUBLIC_URL}/hooks/tw1/status"
        )
    assert resp.status_code == 204
    if expected is None:
        assert sink.reports == []
        return
    [report] = sink.reports
    assert (report.connector_id, report.carrier_id, report.status) == (
        "tw1",
        params["MessageSid"],
        expected[0],
    )
    if expected[1] is None:
        assert report.error is None
    else:
        assert report.error is not None and report.error["code"] == expected[1]
        assert report.error["carrier_code"] == (error_code or carrier_status)


async def test_webhook_refusals(offline: Offline, sink: RecordingSink) -> None:
    c = offline()
    params = {"MessageSid": "SM1", "From": TO, "To": FROM, "Body": "hi"}
    transport = httpx.ASGITransport(app=hooks_app(c))
    async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:8000") as client:
        good = f"{PUBLIC_URL}/hooks/tw1/inbound"
        as_json = await client.post(
            "/hooks/tw1/inbound",
            json=params,
            headers={"X-Twilio-Signature": signature.compute(c.auth_token, good, {})},
        )
        assert as_json.status_code == 415 and "application/x-www-form-urlencoded" in as_json.text
        unsigned = await client.post("/hooks/tw1/inbound", data=params)
        assert unsigned.status_code == 403 and "missing" in unsigned.text
        internal = "http://10.0.0.5:8000/hooks/tw1/inbound"
        wrong = await post_signed(client, c.auth_token, "/hooks/tw1/inbound", params, internal)
        assert wrong.status_code == 403 and "does not match" in wrong.text
        other_route = f"{PUBLIC_URL}/hooks/tw1/status"  # signed for another hook
        wrong = await post_signed(client, c.auth_token, "/hooks/tw1/inbound", params, other_route)
        assert wrong.status_code == 403
        huge = {"Body": "x" * 70_000}
        too_big = await post_signed(client, c.auth_token, "/hooks/tw1/inbound", huge, good)
        assert too_big.status_code == 413
        bad_utf8 = await client.post(
            "/hooks/tw1/inbound",
            content=b"Body=%FF",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert bad_utf8.status_code == 400
        incomplete = await post_signed(
            client, c.auth_token, "/hooks/tw1/inbound", {"Body": "hi"}, good
        )
        assert incomplete.status_code == 400 and "MessageSid, From and To" in incomplete.text
        no_status = await post_signed(
            client, c.auth_token, "/hooks/tw1/status", {"MessageSid": "SM1"}, other_route
        )
        assert no_status.status_code == 400
        ok = await post_signed(client, c.auth_token, "/hooks/tw1/inbound", params, good)
        assert ok.status_code == 200
    assert len(sink.messages) == 1 and sink.reports == []


async def test_inbound_normalized(offline: Offline, sink: RecordingSink) -> None:
    c = offline()
    params = {
        "MessageSid": "SM" + "2" * 32,
        "From": TO,
        "To": FROM,
        "Body": "",
        "NumSegments": "3",
        "NumMedia": "2",
        "MediaUrl0": "https://api.example/m0",
        "MediaContentType0": "image/jpeg",
        "MediaUrl1": "https://api.example/m1",
        "MediaContentType1": "image/png",
        "FromCountry": "DE",
    }
    query = "?tenant=a%20b"
    transport = httpx.ASGITransport(app=hooks_app(c))
    async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:8000") as client:
        resp = await post_signed(
            client,
            c.auth_token,
            "/hooks/tw1/inbound" + query,
            params,
            f"{PUBLIC_URL}/hooks/tw1/inbound{query}",
        )
    assert resp.status_code == 200, resp.text
    assert resp.text == TWIML_EMPTY and resp.headers["content-type"].startswith("text/xml")
    [msg] = sink.messages
    assert (msg.channel, msg.carrier_id, msg.from_, msg.to) == (
        "sms",
        params["MessageSid"],
        TO,
        FROM,
    )
    assert msg.text is None and msg.segments == 3
    assert [(a.content_type, a.reference) for a in msg.attachments] == [
        ("image/jpeg", "https://api.example/m0"),
        ("image/png", "https://api.example/m1"),
    ]
    assert msg.meta["media"][1] == {"url": "https://api.example/m1", "content_type": "image/png"}
    assert msg.meta["FromCountry"] == "DE"


async def test_without_public_url_the_request_url_is_signed(
    offline: Offline, sink: RecordingSink
) -> None:
    c = offline(public_url="")
    params = {"MessageSid": "SM3", "From": TO, "To": FROM, "Body": "hi"}
    transport = httpx.ASGITransport(app=hooks_app(c))
    async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:8000") as client:
        seen = "http://10.0.0.5:8000/hooks/tw1/inbound"
        assert (
            await post_signed(client, c.auth_token, "/hooks/tw1/inbound", params, seen)
        ).status_code == 200
    assert [m.carrier_id for m in sink.messages] == ["SM3"]


async def test_custom_status_callback_url_is_what_is_verified(
    offline: Offline, sink: RecordingSink
) -> None:
    c = offline(status_callback="https://cb.example.com/twilio?c=tw1")
    params = {"MessageSid": "SM4", "MessageStatus": "delivered"}
    transport = httpx.ASGITransport(app=hooks_app(c))
    async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:8000") as client:
        resp = await post_signed(
            client, c.auth_token, "/hooks/tw1/status", params, "https://cb.example.com/twilio?c=tw1"
        )
    assert resp.status_code == 204
    assert [r.status for r in sink.reports] == ["delivered"]


# -- the table's pure parts (Retry-After: tests/gateway/test_retry.py) --------------------
def test_rule_order() -> None:
    assert rule_for(503, "21211").outcome == "retry"
    assert rule_for(429, None).code == "throttled"
    assert rule_for(400, "21610").code == "blocked"
    assert rule_for(401, "21610").code == "blocked"  # a known code says more than the status
    assert rule_for(400, None).code == "rejected"
    assert rule_for(None, "30005").code == "invalid_number"
    assert delivery_error("undelivered", "30003") == {
        "code": "unreachable",
        "message": "destination handset unreachable (carrier undelivered, error 30003)",
        "carrier_code": "30003",
        "retryable": True,
    }


async def test_inbound_segments_counted_when_the_carrier_omits_them(
    offline: Offline, sink: RecordingSink
) -> None:
    c = offline()
    url = f"{PUBLIC_URL}/hooks/tw1/inbound"
    transport = httpx.ASGITransport(app=hooks_app(c))
    async with httpx.AsyncClient(transport=transport, base_url="http://10.0.0.5:8000") as client:
        for sid, extra in (("SM5", {}), ("SM6", {"NumSegments": "garbage"})):
            params = {"MessageSid": sid, "From": TO, "To": FROM, "Body": "a" * 200, **extra}
            resp = await post_signed(client, c.auth_token, "/hooks/tw1/inbound", params, url)
            assert resp.status_code == 200
    assert [m.segments for m in sink.messages] == [2, 2]
