"""A member's WhatsApp number may be a landline (or another mobile) number, on both
backends: WhatsApp is routed by it in and out, and the SMS fallback goes from the member's
mobile number — at acceptance and at send time; a member without a mobile number has no
fallback, and the answer says why."""

from __future__ import annotations

import httpx
import pytest

from connectors.base import InboundMessage
from gateway.admin import create_member
from gateway.auth import create_key
from gateway.clock import FrozenClock
from gateway.errors import Conflict, ValidationError
from gateway.ids import new_id
from gateway.inbound import Inbound
from gateway.models import Addon, Channel
from gateway.process import worker
from gateway.runtime import Runtime
from tests.connectors.fake import FakeConnector
from tests.gateway.conftest import CONTACT, FAX_A, Seed, auth

pytestmark = pytest.mark.anyio
MOBILE_C = "+4915112345673"
LANDLINE_C = "+4930123456702"  # Carla's WhatsApp number: a Berlin landline
LANDLINE_D = "+4930123456703"  # Dora's: no mobile number at all
OTHER = "+4917612345679"


async def inbound(rt: Runtime, to: str, contact: str = CONTACT) -> object:
    msg = InboundMessage(
        "fake1", "whatsapp", f"wamid.{new_id('x')}", contact, to, "Hallo", rt.clock.now()
    )
    return await Inbound(rt).inbound(msg)


async def test_whatsapp_on_a_landline_number(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    both = frozenset({Addon.WHATSAPP.value, Addon.SMS.value})
    carla = await create_member(
        rt.store, clock, seed.team.id, "Carla", "c@example.com", MOBILE_C, None, both, LANDLINE_C
    )
    assert carla.whatsapp == LANDLINE_C and carla.number_for(Channel.SMS) == MOBILE_C
    assert (await rt.store.member_by_number(LANDLINE_C)) == carla
    assert (await rt.store.member_by_number(MOBILE_C)) == carla
    _, key = await create_key(rt.store, clock, seed.team.id, carla.id)

    # In: WhatsApp to the landline reaches Carla; WhatsApp to her mobile is not hers.
    got = await inbound(rt, LANDLINE_C)
    assert got is not None and got.member_id == carla.id  # type: ignore[attr-defined]
    assert await inbound(rt, MOBILE_C) is None

    # Out: from the landline while the window is open; never from the mobile.
    wa = {"channel": "whatsapp", "to": CONTACT, "text": "Gern!"}
    r = await client.post("/v1/messages", json={**wa, "from": LANDLINE_C}, headers=auth(key))
    assert r.status_code == 202 and r.json()["from"] == LANDLINE_C, r.text
    r = await client.post("/v1/messages", json={**wa, "from": MOBILE_C}, headers=auth(key))
    assert r.status_code == 403 and r.json()["code"] == "sender_not_owned"

    # A contact without an open window: the fallback SMS goes from the mobile number.
    closed = {**wa, "from": LANDLINE_C, "to": OTHER}
    r = await client.post("/v1/messages", json=closed, headers=auth(key))
    assert r.status_code == 422 and r.json()["fallback"] == "sms"
    r = await client.post("/v1/messages", json={**closed, "fallback": "sms"}, headers=auth(key))
    assert r.status_code == 202, r.text
    assert (r.json()["channel"], r.json()["from"]) == ("sms", MOBILE_C)

    # At send time: the window closes while the message waits; the SMS goes from the mobile.
    fake: FakeConnector = rt.connectors["fake1"].connector  # type: ignore[assignment]
    fake.sent.clear()
    queued = await client.post(
        "/v1/messages", json={**wa, "from": LANDLINE_C, "fallback": "sms"}, headers=auth(key)
    )
    assert queued.status_code == 202 and queued.json()["channel"] == "whatsapp"
    clock.advance(hours=25)
    while await worker(rt).run_once():
        pass
    moved = await rt.store.get_message(queued.json()["id"])
    assert moved is not None and (moved.channel, moved.from_) == ("sms", MOBILE_C)
    assert [(m.channel, m.from_) for m in fake.sent if m.text == "Gern!"][-1] == (
        "sms",
        MOBILE_C,
    )


async def test_no_mobile_number_no_fallback(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock
) -> None:
    dora = await create_member(
        rt.store, clock, seed.team.id, "Dora", "d@example.com", None, None,
        frozenset({Addon.WHATSAPP.value}), LANDLINE_D,
    )  # fmt: skip
    _, key = await create_key(rt.store, clock, seed.team.id, dora.id)
    body = {"channel": "whatsapp", "from": LANDLINE_D, "to": OTHER, "text": "Hallo"}
    r = await client.post("/v1/messages", json=body, headers=auth(key))
    assert r.status_code == 422 and r.json()["code"] == "whatsapp_window_closed"
    assert "fallback" not in r.json()
    assert f"member {dora.id} has no mobile number to send an SMS from" in r.json()["detail"]
    r = await client.post("/v1/messages", json={**body, "fallback": "sms"}, headers=auth(key))
    assert r.status_code == 422 and r.json()["code"] == "channel_unavailable"
    assert "has no mobile number" in r.json()["detail"]
    # Sent at acceptance with a window open, then refused at send time: failed, saying why.
    await inbound(rt, LANDLINE_D, OTHER)
    r = await client.post("/v1/messages", json={**body, "fallback": "sms"}, headers=auth(key))
    assert r.status_code == 202, r.text
    clock.advance(hours=25)
    while await worker(rt).run_once():
        pass
    failed = await rt.store.get_message(r.json()["id"])
    assert failed is not None and failed.status == "failed" and failed.error is not None
    assert failed.error["fallback_error"] == {
        "code": "channel_unavailable",
        "message": f"member {dora.id} has no mobile number to send an SMS from",
    }


async def test_the_whatsapp_number_is_checked(rt: Runtime, seed: Seed, clock: FrozenClock) -> None:
    wa = frozenset({Addon.WHATSAPP.value, Addon.FAX.value})
    with pytest.raises(ValidationError, match="is the fax number"):
        await create_member(
            rt.store, clock, seed.team.id, "E", "e@example.com", None, "030 123456704", wa,
            "+4930123456704",
        )  # fmt: skip
    with pytest.raises(ValidationError, match="whatsapp add-on needs a WhatsApp number"):
        await create_member(
            rt.store, clock, seed.team.id, "E", "e@example.com", None, None,
            frozenset({Addon.WHATSAPP.value}),
        )  # fmt: skip
    with pytest.raises(Conflict):  # Anna's fax number cannot carry someone's WhatsApp
        await create_member(
            rt.store, clock, seed.team.id, "E", "e@example.com", None, None,
            frozenset({Addon.WHATSAPP.value}), FAX_A,
        )  # fmt: skip
    same = await create_member(
        rt.store, clock, seed.team.id, "F", "f@example.com", "+4915112345674", None,
        frozenset({Addon.WHATSAPP.value}), "+4915112345674",
    )  # fmt: skip
    assert same.whatsapp is None and same.numbers() == ["+4915112345674"]
