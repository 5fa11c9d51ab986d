"""Attachment downloads: Content-Disposition per RFC 6266/5987 for any filename (no 500 for
a name outside Latin-1, no second parameter injected with a quote), ``nosniff``, active
types never served with the uploader's type; and attachments scoped like messages (a
member key sees its own uploads and inbound media, not a colleague's)."""

from __future__ import annotations

import re
from urllib.parse import unquote

import httpx
import pytest

from connectors.base import InboundAttachment, InboundMessage
from gateway.api.downloads import content_disposition, served_type
from gateway.ids import new_id
from gateway.inbound import Inbound
from gateway.models import Attachment
from gateway.runtime import Runtime
from tests.gateway.conftest import CONTACT, MOBILE_A, Seed, auth

pytestmark = pytest.mark.anyio
INJECTED = "evil\"; filename*=UTF-8''evil.exe; x=\".pdf"
NAMES = [
    "Счёт №1.pdf",
    INJECTED,
    'a\\b"c\r\nSet-Cookie: x=1.txt',
    "résumé 2026.pdf",
    "日本語",
    "plain.pdf",
]
_PARAM = re.compile(r';\s*([a-z*]+)=("(?:[^"\\]|\\.)*"|[^;]*)')


def params(header: str) -> list[tuple[str, str]]:
    """The header's parameters in order, as a strict RFC 6266 reader sees them."""
    return [(k, v) for k, v in _PARAM.findall(header)]


@pytest.mark.parametrize("name", NAMES)
def test_content_disposition_carries_any_name_safely(name: str) -> None:
    header = content_disposition(name)
    assert header.isascii() and header.isprintable()
    found = params(header)
    assert [k for k, _ in found] == ["filename", "filename*"]
    fallback = found[0][1]
    assert fallback.startswith('"') and fallback.endswith('"')
    assert '"' not in fallback[1:-1] and "\\" not in fallback[1:-1]
    encoded = found[1][1]
    assert encoded.startswith("UTF-8''")
    assert unquote(encoded.removeprefix("UTF-8''"), encoding="utf-8") == name


def test_content_disposition_fallbacks() -> None:
    assert content_disposition("résumé.pdf").startswith('attachment; filename="resume.pdf";')
    assert content_disposition("Счёт.pdf").startswith('attachment; filename="____.pdf";')
    assert 'filename="download"' in content_disposition("日本語")
    assert content_disposition("x.png", "inline").startswith("inline; ")


@pytest.mark.parametrize(
    ("declared", "served"),
    [
        ("application/pdf", "application/pdf"),
        ("image/jpeg", "image/jpeg"),
        ("text/plain; charset=utf-8", "text/plain; charset=utf-8"),
        ("audio/ogg; codecs=opus", "audio/ogg; codecs=opus"),
        ("text/html", "application/octet-stream"),
        ("TEXT/HTML; charset=utf-8", "application/octet-stream"),
        ("application/xhtml+xml", "application/octet-stream"),
        ("image/svg+xml", "application/octet-stream"),
        ("text/xml", "application/octet-stream"),
        ("application/xml", "application/octet-stream"),
        ("application/javascript", "application/octet-stream"),
        ("text/javascript", "application/octet-stream"),
        ("text/css", "application/octet-stream"),
        ("multipart/x-mixed-replace; boundary=x", "application/octet-stream"),
        ("nonsense", "application/octet-stream"),
        ("image/png\r\nX-Evil: 1", "application/octet-stream"),
    ],
)
def test_active_types_are_served_as_bytes(declared: str, served: str) -> None:
    assert served_type(declared) == served


async def stored(rt: Runtime, seed: Seed, name: str, ctype: str, member: str | None) -> str:
    data = b"<html><script>alert(1)</script></html>"
    att = Attachment(
        new_id("att"), seed.team.id, rt.blobs.put(data), len(data), ctype, name,
        rt.clock.now(), member,
    )  # fmt: skip
    await rt.store.put_attachment(att)
    return att.id


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_downloads_are_safe(client: httpx.AsyncClient, rt: Runtime, seed: Seed) -> None:
    team = auth(seed.team_key)
    for name in NAMES:
        for ctype in ("text/html", "image/svg+xml", "application/pdf"):
            att_id = await stored(rt, seed, name, ctype, None)
            r = await client.get(f"/v1/attachments/{att_id}/content", headers=team)
            assert r.status_code == 200, (name, r.text)
            assert r.headers["x-content-type-options"] == "nosniff"
            disposition = r.headers["content-disposition"]
            assert disposition == content_disposition(name)
            assert disposition.startswith("attachment;")
            expected = (
                "application/pdf" if ctype == "application/pdf" else "application/octet-stream"
            )
            assert r.headers["content-type"] == expected
    # An upload through the API with a name outside Latin-1 downloads under that name.
    files = {"file": ("Счёт №1.pdf", b"%PDF-1.4", "application/pdf")}
    up = await client.post("/v1/attachments", files=files, headers=team)
    assert up.status_code == 201, up.text
    r = await client.get(f"/v1/attachments/{up.json()['id']}/content", headers=team)
    assert r.status_code == 200
    assert r.headers["content-disposition"] == content_disposition(up.json()["filename"])


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_member_keys_see_only_their_own_attachments(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    files = {"file": ("mine.pdf", b"%PDF-1.4 anna", "application/pdf")}
    up = await client.post("/v1/attachments", files=files, headers=auth(seed.anna_key))
    assert up.status_code == 201
    uploaded = up.json()["id"]
    photo = InboundMessage(
        "fake1", "whatsapp", f"wamid.{new_id('x')}", CONTACT, MOBILE_A, "", rt.clock.now(),
        attachments=[InboundAttachment("image/jpeg", b"\xff\xd8jpeg", "photo.jpg")],
    )  # fmt: skip
    received = await Inbound(rt).inbound(photo)
    assert received is not None
    media = received.attachments[0]
    for att_id in (uploaded, media):
        for path in (f"/v1/attachments/{att_id}", f"/v1/attachments/{att_id}/content"):
            assert (await client.get(path, headers=auth(seed.anna_key))).status_code == 200
            assert (await client.get(path, headers=auth(seed.team_key))).status_code == 200
            r = await client.get(path, headers=auth(seed.ben_key))
            assert r.status_code == 404 and r.json()["code"] == "not_found"
            assert (await client.get(path, headers=auth(seed.other_key))).status_code == 404
    # Nor can Ben send Anna's file: the same "not found" as an unknown id.
    sent = await client.post(
        "/v1/messages",
        json={"channel": "sms", "from": seed.ben.mobile, "to": CONTACT,
              "text": "x", "attachments": [uploaded]},
        headers=auth(seed.ben_key),
    )  # fmt: skip
    assert sent.status_code == 422 and sent.json()["field"] == "attachments"
    # A team key's upload belongs to the whole team.
    shared = await client.post("/v1/attachments", files=files, headers=auth(seed.team_key))
    got = await client.get(f"/v1/attachments/{shared.json()['id']}", headers=auth(seed.ben_key))
    assert got.status_code == 200
