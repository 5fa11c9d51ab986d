"""The portal's pages in-process: inbox, thread, composer, sending, escaping, languages."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from typing import Any

import httpx
import pytest

from gateway import outbound
from gateway.auth import Principal
from gateway.commands import FaxCover, SendRequest, WhatsAppTemplate
from gateway.errors import GatewayError
from gateway.models import Channel
from gateway.portal import compose
from gateway.portal.settings import TemplateOffer
from gateway.portal.web import portal_for
from gateway.process import worker
from gateway.runtime import Runtime
from gateway.store.base import MessageFilter
from tests.connectors.fake import FakeConnector
from tests.gateway.conftest import CONTACT, FAX_A, MOBILE_A, auth
from tests.gateway.portal.conftest import (
    SAME_ORIGIN,
    PortalSeed,
    csrf_of,
    index,
    png_bytes,
    receive,
)

pytestmark = pytest.mark.anyio


async def test_inbox_lists_the_members_conversations(
    anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed
) -> None:
    await receive(prt, "Guten Tag, Frau Schmidt", meta={"whatsapp": {"profile_name": "Jürgen"}})
    await receive(prt, "Hallo Ben", member_number=pseed.seed.ben.mobile or "")
    await index(prt)
    r = await anna.get("/", headers={"Accept-Language": "de-DE,de;q=0.9,en;q=0.5"})
    assert r.status_code == 200
    assert 'lang="de"' in r.text and "Posteingang" in r.text
    assert "Guten Tag, Frau Schmidt" in r.text
    assert "Hallo Ben" not in r.text  # Ben's conversation is Ben's
    assert "1 ungelesene Nachricht" in r.text
    assert r.headers["content-security-policy"].startswith("default-src 'none'")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "<script>" not in r.text  # no inline script (only <script src=…>)


async def test_thread_escapes_and_sends(
    anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed
) -> None:
    msg = await receive(prt, "<script>alert('x')</script> & ü")
    await index(prt)
    r = await anna.get(f"/c/{msg.conversation_id}")
    assert r.status_code == 200
    assert "<script>alert" not in r.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; ü" in r.text
    csrf = csrf_of(r.text)
    r = await anna.post(
        f"/c/{msg.conversation_id}/preview",
        data={"csrf": csrf, "channel": "sms", "text": "Grüße 😀"},
        headers={**SAME_ORIGIN, "HX-Request": "true"},
    )
    assert r.status_code == 200
    assert "UCS-2" in r.text and "😀" in r.text
    # The draft is kept on the server.
    portal = await portal_for(prt)
    draft = await portal.store.get_draft(pseed.seed.anna.id, msg.conversation_id)
    assert draft is not None and draft.text == "Grüße 😀"
    r = await anna.post(
        f"/c/{msg.conversation_id}/send",
        data={"csrf": csrf, "channel": "sms", "text": "Danke <b>!</b>"},
        headers={**SAME_ORIGIN, "HX-Request": "true"},
    )
    assert r.status_code == 200, r.text
    assert "Danke &lt;b&gt;!&lt;/b&gt;" in r.text
    assert await portal.store.get_draft(pseed.seed.anna.id, msg.conversation_id) is None
    page = await prt.store.list_messages(
        MessageFilter(team_id=pseed.seed.team.id, conversation_id=msg.conversation_id), None, 10
    )
    sent = [m for m in page.items if m.direction == "outbound"]
    assert [(m.channel, m.from_, m.to, m.text) for m in sent] == [
        ("sms", MOBILE_A, CONTACT, "Danke <b>!</b>")
    ]


async def test_another_members_thread_does_not_exist(
    anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed
) -> None:
    msg = await receive(prt, "für Ben", member_number=pseed.seed.ben.mobile or "")
    r = await anna.get(f"/c/{msg.conversation_id}")
    assert r.status_code == 404
    r = await anna.get(f"/m/{msg.id}")
    assert r.status_code == 404
    r = await anna.get("/")
    csrf = csrf_of(r.text)
    r = await anna.post(
        f"/c/{msg.conversation_id}/send",
        data={"csrf": csrf, "channel": "sms", "text": "nope"},
        headers=SAME_ORIGIN,
    )
    assert r.status_code == 404


async def test_every_page_renders(anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed) -> None:
    msg = await receive(prt, "Hallo")
    await index(prt)
    for lang in ("de", "en"):
        for path in (
            "/",
            "/new",
            "/settings",
            "/admin",
            "/admin/keys",
            f"/c/{msg.conversation_id}",
            f"/admin/members/{pseed.seed.ben.id}/forwarding",
        ):
            r = await anna.get(path, headers={"Accept-Language": lang})
            assert r.status_code == 200, (path, r.text[:2000])
            assert f'lang="{lang}"' in r.text
            assert not re.search(r"<script(?![^>]*\bsrc=)", r.text), path


async def test_fax_files_are_shown_then_sent(
    anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed
) -> None:
    conv = await prt.directory.conversation(
        pseed.seed.team.id, pseed.seed.anna.id, FAX_A, "+4930999999901", prt.clock.now()
    )
    page = await anna.get(f"/c/{conv.id}", headers={"Accept-Language": "en"})
    assert page.status_code == 200
    assert 'name="files"' in page.text and "One fax costs one unit." in page.text
    csrf = csrf_of(page.text)
    r = await anna.post(
        f"/c/{conv.id}/fax/files",
        data={"csrf": csrf},
        files={"files": ("page.png", png_bytes(), "image/png")},
        headers={**SAME_ORIGIN, "HX-Request": "true"},
    )
    assert r.status_code == 200, r.text
    att = re.search(r'name="attachment" value="(att_[0-9A-Z]+)"', r.text)
    assert att, r.text
    # Shown as the fax channel will send it: its page count and page 1, rendered.
    assert "page.png · 1 page" in r.text
    thumb = re.search(r'<img src="/a/(att_[0-9A-Z]+)" alt="Page 1 of page.png"', r.text)
    assert thumb and thumb.group(1) != att.group(1)
    shown = await anna.get(f"/a/{thumb.group(1)}")
    assert shown.headers["content-type"] == "image/png" and shown.content[:4] == b"\x89PNG"
    # A document the fax channel cannot render is refused with its reason.
    r = await anna.post(
        f"/c/{conv.id}/fax/files",
        data={"csrf": csrf},
        files={"files": ("broken.pdf", b"%PDF-1.4 not really", "application/pdf")},
        headers={**SAME_ORIGIN, "HX-Request": "true"},
    )
    assert r.status_code == 422 and "broken.pdf:" in r.text
    r = await anna.post(
        f"/c/{conv.id}/send",
        data={"csrf": csrf, "channel": "fax", "attachment": att.group(1)},
        files={"files": ("page.png", png_bytes(), "image/png")},  # still in the file input: ignored
        headers={**SAME_ORIGIN, "HX-Request": "true"},
    )
    assert r.status_code == 200, r.text
    assert f'src="/a/{att.group(1)}"' in r.text
    got = await prt.store.list_messages(
        MessageFilter(team_id=pseed.seed.team.id, conversation_id=conv.id), None, 10
    )
    assert [(m.channel, m.attachments) for m in got.items] == [("fax", [att.group(1)])]
    r = await anna.get(f"/a/{att.group(1)}")
    assert (
        r.status_code == 200
        and r.content == png_bytes()
        and r.headers["content-type"] == "image/png"
    )


async def test_new_conversation_by_national_number(
    anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed
) -> None:
    page = await anna.get("/new", headers={"Accept-Language": "en"})
    csrf = csrf_of(page.text)
    r = await anna.post("/new", data={"csrf": csrf, "number": "12", "channel": "sms"},
                        headers=SAME_ORIGIN)  # fmt: skip
    assert r.status_code == 422 and "That is not a valid phone number." in r.text
    r = await anna.post("/new", data={"csrf": csrf, "number": "0176 98765432", "channel": "sms"},
                        headers=SAME_ORIGIN)  # fmt: skip
    assert r.status_code == 303 and r.headers["location"].startswith("/c/conv_")
    conv = await prt.store.get_conversation(r.headers["location"][3:].split("?")[0])
    assert conv is not None and conv.remote_number == "+4917698765432"
    assert conv.member_id == pseed.seed.anna.id and conv.member_number == MOBILE_A


async def test_closed_window_offers_sms_and_templates(
    anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed
) -> None:
    portal = await portal_for(prt)
    portal.settings = dataclasses.replace(
        portal.settings, templates=(TemplateOffer("termin_erinnerung", "de", "Terminerinnerung"),)
    )
    conv = await prt.directory.conversation(
        pseed.seed.team.id, pseed.seed.anna.id, MOBILE_A, "+4917611112222", prt.clock.now()
    )
    page = await anna.get(f"/c/{conv.id}?channel=whatsapp", headers={"Accept-Language": "en"})
    assert "The WhatsApp window is closed." in page.text
    assert "Send as SMS" in page.text and "Terminerinnerung (de)" in page.text
    r = await anna.post(
        f"/c/{conv.id}/send",
        data={"csrf": csrf_of(page.text), "channel": "whatsapp", "template": "termin_erinnerung:de",
              "send_template": "1"},
        headers={**SAME_ORIGIN, "HX-Request": "true"},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    assert "Template: termin_erinnerung" in r.text
    got = await prt.store.list_messages(
        MessageFilter(team_id=pseed.seed.team.id, conversation_id=conv.id), None, 10
    )
    (sent,) = got.items
    assert sent.channel == "whatsapp" and sent.text is None
    assert sent.meta["whatsapp"]["template"]["name"] == "termin_erinnerung"
    # Free text by WhatsApp is refused while closed; the same text goes as SMS.
    r = await anna.post(
        f"/c/{conv.id}/send",
        data={"csrf": csrf_of(page.text), "channel": "whatsapp", "text": "Hallo"},
        headers={**SAME_ORIGIN, "HX-Request": "true"},
    )
    assert r.status_code == 422 and "window" in r.text
    r = await anna.post(
        f"/c/{conv.id}/send",
        data={"csrf": csrf_of(page.text), "channel": "whatsapp", "text": "Hallo", "as_sms": "1"},
        headers={**SAME_ORIGIN, "HX-Request": "true"},
    )
    assert r.status_code == 200
    got = await prt.store.list_messages(
        MessageFilter(team_id=pseed.seed.team.id, conversation_id=conv.id), None, 10
    )
    assert [m.channel for m in got.items] == ["sms", "whatsapp"]


def fake(rt: Runtime, connector_id: str) -> FakeConnector:
    connector = rt.connectors[connector_id].connector
    assert isinstance(connector, FakeConnector)
    return connector


async def test_failed_messages_are_sent_again_as_they_were_asked(
    anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed
) -> None:
    """Retry builds the SendRequest again from the failed message: a WhatsApp template with
    its parameters, and a fax's cover page (a field only callers inside the process set)."""
    principal = Principal(pseed.seed.team.id, pseed.seed.anna.id, "test")
    template = WhatsAppTemplate(
        name="termin_erinnerung",
        language="de",
        components=[{"type": "body", "parameters": [{"type": "text", "text": "Dienstag"}]}],
    )
    cover = FaxCover(to="Praxis Berg", from_="Anna", subject="Befund", note="Bitte zurückrufen.")
    requests = [
        SendRequest(channel=Channel.WHATSAPP, from_=MOBILE_A, to=CONTACT, template=template),
        SendRequest(channel=Channel.FAX, from_=FAX_A, to="+4930999999901", cover=cover),
    ]
    fake(prt, "fake1").script = ["permanent"]
    fake(prt, "faxfake").script = ["permanent"]
    failed = [(await outbound.submit(prt, principal, r)).message for r in requests]
    w = worker(prt)
    while await w.run_once():
        pass
    page = await anna.get("/")
    for first in failed:
        stored = await prt.store.get_message(first.id)
        assert stored is not None and stored.status == "failed"
        r = await anna.post(
            f"/m/{first.id}/retry", data={"csrf": csrf_of(page.text)}, headers=SAME_ORIGIN
        )
        assert r.status_code == 303, r.text
        got = await prt.store.list_messages(
            MessageFilter(team_id=pseed.seed.team.id, conversation_id=first.conversation_id),
            None,
            10,
        )
        again, old = got.items
        assert old.id == first.id and again.id != first.id and again.status == "accepted"
        assert (again.channel, again.from_, again.to) == (first.channel, first.from_, first.to)
        assert again.meta == first.meta  # the template, or the cover page
    # Only a failed message is sent again: the copies went out, and their retry sends nothing.
    while await w.run_once():
        pass
    for conversation_id in {m.conversation_id for m in failed}:
        got = await prt.store.list_messages(
            MessageFilter(team_id=pseed.seed.team.id, conversation_id=conversation_id), None, 10
        )
        sent, _ = got.items
        assert sent.status == "sent"
        r = await anna.post(
            f"/m/{sent.id}/retry", data={"csrf": csrf_of(page.text)}, headers=SAME_ORIGIN
        )
        assert r.status_code == 303
        again_listed = await prt.store.list_messages(
            MessageFilter(team_id=pseed.seed.team.id, conversation_id=conversation_id), None, 10
        )
        assert len(again_listed.items) == 2


@pytest.mark.parametrize(
    ("fields", "template"),
    [
        ({"text": "Hallo"}, {"name": "termin_erinnerung", "language": "de"}),
        ({"text": "x" * 1601}, None),
        ({"attachments": ["att_nope"]}, None),
        ({}, {"name": "Termin!", "language": "de"}),
    ],
)
async def test_a_portal_send_is_refused_in_the_api_s_words(
    anna: httpx.AsyncClient,
    prt: Runtime,
    pseed: PortalSeed,
    fields: dict[str, Any],
    template: dict[str, str] | None,
) -> None:
    """The composer's command is checked as the API checks a body: the same refusal."""
    channel = "sms" if template is None or "!" not in template["name"] else "whatsapp"
    body: dict[str, Any] = {"channel": channel, "from": MOBILE_A, "to": CONTACT, **fields}
    if template is not None:
        body["template"] = template
    api = await anna.post("/v1/messages/preview", json=body, headers=auth(pseed.seed.anna_key))
    assert api.status_code == 422, api.text
    viewer_principal = Principal(pseed.seed.team.id, pseed.seed.anna.id, "portal")
    with pytest.raises(GatewayError) as refused:
        command = compose.send_request(
            channel,
            MOBILE_A,
            CONTACT,
            fields.get("text"),
            fields.get("attachments"),
            template,
        )
        await outbound.draft(prt, viewer_principal, command)
    assert refused.value.detail == api.json()["detail"]
    assert refused.value.extra.get("field") == api.json().get("field")


async def test_a_double_submitted_composer_sends_once(
    anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed
) -> None:
    """The same composer form posted twice (a double click, a resubmitted page) sends one
    message; the next rendered form sends again."""
    msg = await receive(prt, "Hallo")
    await index(prt)
    page = await anna.get(f"/c/{msg.conversation_id}")
    csrf = csrf_of(page.text)
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce, page.text
    form = {"csrf": csrf, "channel": "sms", "text": "Einmal bitte", "nonce": nonce.group(1)}
    first, second = await asyncio.gather(
        *(
            anna.post(f"/c/{msg.conversation_id}/send", data=form, headers=SAME_ORIGIN)
            for _ in range(2)
        )
    )
    third = await anna.post(f"/c/{msg.conversation_id}/send", data=form, headers=SAME_ORIGIN)
    assert {r.status_code for r in (first, second, third)} == {303}

    async def sent() -> list[str | None]:
        listed = await prt.store.list_messages(
            MessageFilter(team_id=pseed.seed.team.id, conversation_id=msg.conversation_id),
            None,
            10,
        )
        return [m.text for m in listed.items if m.direction == "outbound"]

    assert await sent() == ["Einmal bitte"]
    fresh = await anna.get(f"/c/{msg.conversation_id}")
    again = re.search(r'name="nonce" value="([^"]+)"', fresh.text)
    assert again and again.group(1) != nonce.group(1)
    form["nonce"] = again.group(1)
    r = await anna.post(f"/c/{msg.conversation_id}/send", data=form, headers=SAME_ORIGIN)
    assert r.status_code == 303
    assert await sent() == ["Einmal bitte", "Einmal bitte"]
    # A forged nonce is refused with a reason; nothing is sent.
    form["nonce"] = "x"
    r = await anna.post(f"/c/{msg.conversation_id}/send", data=form, headers=SAME_ORIGIN)
    assert r.status_code == 422 and "out of date" in r.text
    assert len(await sent()) == 2
