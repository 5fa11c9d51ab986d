"""The window rules of ``gateway/window.py``: 24 hours from the contact's last WhatsApp
message, read fresh from the store; templates; what a fallback request must carry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway import window
from gateway.clock import FrozenClock
from gateway.commands import SendRequest, WhatsAppTemplate, convert
from gateway.errors import ValidationError
from gateway.models import Channel, Conversation
from gateway.runtime import Runtime
from tests.gateway.conftest import CONTACT, MOBILE_A, Seed, open_whatsapp_window


def test_open_for_24_hours_from_the_last_inbound_message(clock: FrozenClock) -> None:
    t = clock.now()
    assert window.window_at(None, t) == window.Window(None, None, False)
    w = window.window_at(t, t)
    assert w.open and w.expires_at == t + timedelta(hours=24) and w.last_inbound_at == t
    assert window.window_at(t, t + timedelta(hours=23, minutes=59, seconds=59)).open
    # At exactly 24 hours it has closed: open means "now is before the expiry".
    assert not window.window_at(t, t + timedelta(hours=24)).open
    closed = window.window_at(t - timedelta(hours=30), t)
    assert not closed.open and closed.expires_at == t - timedelta(hours=6)


def test_view_shows_when_it_expires_or_expired(clock: FrozenClock) -> None:
    t = clock.now()
    assert window.window_at(None, t).view() == {"open": False, "expires_at": None}
    assert window.window_at(t, t).view() == {"open": True, "expires_at": "2026-03-16T12:00:00.000Z"}
    later = t + timedelta(days=2)
    assert window.window_at(t, later).view() == {
        "open": False,
        "expires_at": "2026-03-16T12:00:00.000Z",
    }


def test_of_conversation(clock: FrozenClock) -> None:
    t = clock.now()
    conv = Conversation("conv_1", "team_1", "mem_1", MOBILE_A, CONTACT, t, t)
    assert not window.of_conversation(conv, t).open
    assert not window.of_conversation(None, t).open
    conv.last_inbound_whatsapp_at = t - timedelta(hours=1)
    w = window.of_conversation(conv, t)
    assert w.open and w.expires_at == t + timedelta(hours=23)


def test_closed_error_names_the_sms_fallback(clock: FrozenClock) -> None:
    t = clock.now()
    never = window.closed_error(window.window_at(None, t), MOBILE_A, CONTACT, None)
    assert never.status == 422 and never.code == "whatsapp_window_closed"
    assert f"{CONTACT} has not written to {MOBILE_A} on WhatsApp" in never.detail
    assert '"fallback": "sms"' in never.detail and "template" in never.detail
    assert never.extra == {
        "whatsapp_window": {"open": False, "expires_at": None},
        "fallback": "sms",
    }
    expired = window.window_at(t - timedelta(hours=25), t)
    err = window.closed_error(expired, MOBILE_A, CONTACT, None)
    assert f"window with {CONTACT} closed at 2026-03-15T11:00:00.000Z" in err.detail
    why = f"no connector serves sms from {MOBILE_A}"
    no_sms = window.closed_error(expired, MOBILE_A, CONTACT, why)
    assert "fallback" not in no_sms.extra
    assert f"send a template ({why}, so no SMS fallback)" in no_sms.detail


def _template(value: object) -> WhatsAppTemplate:
    return convert(WhatsAppTemplate, value)


def test_parse_template_normalizes_to_metas_shape() -> None:
    got = window.parse_template(
        _template({"name": "order_update", "language": "de"}), Channel.WHATSAPP
    )
    assert got == {"name": "order_update", "language": {"code": "de"}, "components": []}
    body = [{"type": "body", "parameters": [{"type": "text", "text": "4711"}]}]
    got = window.parse_template(
        _template({"name": "x_1", "language": {"code": "en_US"}, "components": body}),
        Channel.WHATSAPP,
    )
    assert got == {"name": "x_1", "language": {"code": "en_US"}, "components": body}
    assert window.parse_template(None, Channel.SMS) is None


@pytest.mark.parametrize(
    ("value", "channel", "says"),
    [
        ({"name": "a", "language": "de"}, Channel.SMS, "only for channel whatsapp"),
        ("order_update", Channel.WHATSAPP, "must be an object"),
        ({"name": "a", "language": "de", "lang": "x"}, Channel.WHATSAPP, "unknown field"),
        ({"name": "Order Update", "language": "de"}, Channel.WHATSAPP, "template.name"),
        ({"language": "de"}, Channel.WHATSAPP, "template.name"),
        ({"name": "a", "language": "German"}, Channel.WHATSAPP, "template.language"),
        ({"name": "a", "language": {"code": "de", "x": 1}}, Channel.WHATSAPP, "language"),
        ({"name": "a", "language": "de", "components": {}}, Channel.WHATSAPP, "components"),
        ({"name": "a", "language": "de", "components": [{"type": "x"}]}, Channel.WHATSAPP, "type"),
        (
            {"name": "a", "language": "de", "components": [{"type": "body", "t": "x" * 17000}]},
            Channel.WHATSAPP,
            "larger than",
        ),
    ],
)
def test_parse_template_refuses_with_a_reason(value: object, channel: Channel, says: str) -> None:
    # The shape is refused by the send command, the rest by parse_template: in the same words.
    body = {"channel": channel.value, "from": MOBILE_A, "to": CONTACT, "template": value}
    with pytest.raises(ValidationError) as exc:
        request = convert(SendRequest, body)
        window.parse_template(request.template, request.channel)
    assert says in exc.value.detail and exc.value.extra == {"field": "template"}


@pytest.mark.parametrize(
    ("text", "attachments", "fallback", "template", "field", "says"),
    [
        ("hi", [], None, {"name": "a"}, "text", "takes its text from the approved template"),
        (None, ["att_1"], None, {"name": "a"}, "attachments", "header media"),
        (None, [], "sms", {"name": "a"}, "fallback", "outside the 24-hour window"),
        ("hi", ["att_1"], "sms", None, "fallback", "cannot carry attachments"),
        ("x" * 1601, [], "sms", None, "text", "1600 characters an SMS fallback"),
    ],
)
def test_check_request(
    text: str | None,
    attachments: list[str],
    fallback: str | None,
    template: object,
    field: str,
    says: str,
) -> None:
    with pytest.raises(ValidationError) as exc:
        window.check_request(text, attachments, fallback, template)
    assert says in exc.value.detail and exc.value.extra == {"field": field}


def test_check_request_lets_good_requests_pass() -> None:
    window.check_request("x" * 1600, [], "sms", None)
    window.check_request("x" * 4096, ["att_1"], None, None)
    window.check_request(None, [], None, {"name": "a"})


def test_request_meta_and_template_of() -> None:
    assert window.request_meta(None, False) == {}
    tpl = {"name": "a", "language": {"code": "de"}, "components": []}
    meta = window.request_meta(tpl, False)
    assert meta == {"whatsapp": {"template": tpl}} and window.template_of(meta) == tpl
    assert window.request_meta(None, True) == {
        "fallback_used": {"from": "whatsapp", "to": "sms", "reason": "whatsapp_window_closed"}
    }
    assert window.template_of({"whatsapp": {"template": "x"}}) is None
    assert window.template_of({"whatsapp": []}) is None


@pytest.mark.anyio
async def test_current_reads_the_store_not_the_cache(
    rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    """The directory caches a conversation's identity; the window must still be fresh, and
    asking for it never creates a conversation."""
    w = await window.current(rt, seed.team.id, MOBILE_A, CONTACT)
    assert not w.open and w.expires_at is None
    assert await rt.store.find_conversation(seed.team.id, MOBILE_A, CONTACT) is None
    cached = await rt.directory.conversation(
        seed.team.id, seed.anna.id, MOBILE_A, CONTACT, clock.now()
    )
    clock.advance(minutes=10)
    await open_whatsapp_window(rt)
    w = await window.current(rt, seed.team.id, MOBILE_A, CONTACT)
    assert w.open and w.last_inbound_at == clock.now()
    assert cached.last_inbound_whatsapp_at is None  # the cached copy is stale, and unused
    clock.advance(hours=24)
    assert not (await window.current(rt, seed.team.id, MOBILE_A, CONTACT)).open
    # Another member number or contact has a window of its own.
    assert not (await window.current(rt, seed.team.id, MOBILE_A, "+4917699999999")).open
