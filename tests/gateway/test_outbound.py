"""The outbound path as callers inside the process use it: typed commands, no JSON."""

from __future__ import annotations

import pytest

from gateway import outbound
from gateway.auth import Principal
from gateway.commands import FaxCover, SendRequest, WhatsAppTemplate, convert
from gateway.errors import ValidationError
from gateway.models import Channel
from gateway.runtime import Runtime
from tests.gateway.conftest import CONTACT, FAX_A, MOBILE_A, MOBILE_B, Seed

pytestmark = pytest.mark.anyio
FAX_TO = "+4930123456799"


def team_of(seed: Seed) -> Principal:
    return Principal(seed.team.id, None, "test")


async def test_a_caller_sends_with_a_command(rt: Runtime, seed: Seed) -> None:
    request = SendRequest(channel=Channel.SMS, from_=MOBILE_B, to="0176 12345678", text="hi")
    accepted = await outbound.submit(rt, team_of(seed), request)
    assert accepted.message.to == CONTACT and accepted.message.units == 1
    assert (await rt.store.job_counts())["ready"] == 1


async def test_a_fax_carries_its_cover_page(rt: Runtime, seed: Seed) -> None:
    """The cover (email-to-fax's note, the portal's form) is kept for the fax channel to
    render, and a cover alone is a fax."""
    cover = FaxCover(to="Dr. Berg", from_="Anna", subject="Order 4711", note="See attached.")
    request = SendRequest(channel=Channel.FAX, from_=FAX_A, to=FAX_TO, cover=cover)
    accepted = await outbound.submit(rt, team_of(seed), request)
    stored = await rt.store.get_message(accepted.message.id)
    assert stored is not None and stored.units == 1 and stored.text is None
    assert stored.meta[outbound.COVER_META]["cover"] == {
        "to": "Dr. Berg", "from": "Anna", "subject": "Order 4711", "note": "See attached.",
    }  # fmt: skip
    assert "cover" not in accepted.view  # nothing the API shows today changes


async def test_a_cover_is_only_for_fax(rt: Runtime, seed: Seed) -> None:
    request = SendRequest(
        channel=Channel.SMS, from_=MOBILE_B, to=CONTACT, text="hi", cover=FaxCover(note="x")
    )
    with pytest.raises(ValidationError) as exc:
        await outbound.draft(rt, team_of(seed), request)
    assert exc.value.extra == {"field": "cover"}


async def test_a_form_is_checked_as_the_api_checks_a_body(rt: Runtime, seed: Seed) -> None:
    """``convert`` takes a plain dict (a portal form) with the API's refusals."""
    with pytest.raises(ValidationError, match="'to' is required"):
        convert(SendRequest, {"channel": "sms", "from": MOBILE_B, "text": "hi"})
    form = {"channel": "sms", "from": MOBILE_B, "to": CONTACT, "text": "hi"}
    request = convert(SendRequest, form)
    preview = (await outbound.draft(rt, team_of(seed), request)).preview()
    assert preview == {"channel": "sms", "encoding": "gsm7", "segments": 1, "units": 1}


async def test_a_template_built_in_process(rt: Runtime, seed: Seed) -> None:
    template = WhatsAppTemplate(name="order_update", language="de")
    request = SendRequest(channel=Channel.WHATSAPP, from_=MOBILE_A, to=CONTACT, template=template)
    draft = await outbound.draft(rt, Principal(seed.team.id, seed.anna.id, "test"), request)
    assert draft.preview()["template"] == {
        "name": "order_update", "language": {"code": "de"}, "components": [],
    }  # fmt: skip
