"""The portal's attachment download (``GET /a/{id}``) shares the API's safe download
(``gateway.api.downloads``): pictures inline, everything else saved, active types as bytes,
``nosniff``; and a member sees only their own attachments (and the team's), like their
messages."""

from __future__ import annotations

import httpx
import pytest

from gateway.api.downloads import content_disposition
from gateway.ids import new_id
from gateway.models import Attachment
from gateway.runtime import Runtime
from tests.gateway.portal.conftest import PortalSeed, png_bytes

pytestmark = pytest.mark.anyio


async def put(rt: Runtime, pseed: PortalSeed, data: bytes, ctype: str, name: str,
              member: str | None) -> str:  # fmt: skip
    att = Attachment(
        new_id("att"), pseed.seed.team.id, rt.blobs.put(data), len(data), ctype, name,
        rt.clock.now(), member,
    )  # fmt: skip
    await rt.store.put_attachment(att)
    return att.id


async def test_portal_downloads_are_safe_and_scoped(
    anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed
) -> None:
    own = pseed.seed.anna.id
    page = await put(prt, pseed, b"<svg onload=alert(1)/>", "image/svg+xml", 'x".svg', own)
    r = await anna.get(f"/a/{page}")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == content_disposition('x".svg')
    assert r.headers["x-content-type-options"] == "nosniff"
    picture = await put(prt, pseed, png_bytes(), "image/png", "Счёт.png", own)
    r = await anna.get(f"/a/{picture}")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"] == content_disposition("Счёт.png", "inline")
    team_file = await put(prt, pseed, b"%PDF-1.4", "application/pdf", "team.pdf", None)
    assert (await anna.get(f"/a/{team_file}")).status_code == 200
    colleague = await put(prt, pseed, b"%PDF-1.4", "application/pdf", "b.pdf", pseed.seed.ben.id)
    assert (await anna.get(f"/a/{colleague}")).status_code == 404
