"""Webhook endpoints managed in the portal through the ``WebhookAdmin`` service that the
webhooks extension offers (the portal never imports ``webhooks/``)."""

from __future__ import annotations

import re

import httpx
import pytest

from gateway.extensions import service
from gateway.runtime import Runtime
from gateway.services import WEBHOOK_ADMIN
from tests.gateway.portal.conftest import SAME_ORIGIN, PortalSeed, csrf_of, sign_in
from webhooks.settings import WebhookSettings

pytestmark = pytest.mark.anyio


async def test_endpoints_are_created_shown_once_switched_and_deleted(
    anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed
) -> None:
    prt.settings = prt.settings.with_extension(
        "webhooks", WebhookSettings(allow_private_targets=True)
    )
    page = await anna.get("/admin/webhooks")
    assert page.status_code == 200 and "message.received" in page.text
    csrf = csrf_of(page.text)
    r = await anna.post(
        "/admin/webhooks",
        data={"csrf": csrf, "url": "ftp://nope.example/", "events": "message.received"},
        headers=SAME_ORIGIN,
    )
    assert r.status_code == 422 and "url" in r.text
    r = await anna.post(
        "/admin/webhooks",
        data={"csrf": csrf, "url": "http://127.0.0.1:9/hook", "events": "message.received",
              "description": "CRM <b>"},
        headers=SAME_ORIGIN,
    )  # fmt: skip
    assert r.status_code == 200
    secret = re.search(r'<code id="new-secret">(whsec_[^<]+)</code>', r.text)
    assert secret and "CRM &lt;b&gt;" in r.text
    hooks = service(prt, WEBHOOK_ADMIN)
    assert hooks is not None
    (endpoint,) = await hooks.list_endpoints(pseed.seed.team.id)
    assert endpoint["events"] == ["message.received"] and endpoint["enabled"]
    listing = await anna.get("/admin/webhooks")
    assert secret.group(1) not in listing.text
    r = await anna.post(
        f"/admin/webhooks/{endpoint['id']}/enabled", data={"csrf": csrf, "enabled": "0"},
        headers=SAME_ORIGIN,
    )  # fmt: skip
    assert r.status_code == 303
    assert not (await hooks.list_endpoints(pseed.seed.team.id))[0]["enabled"]
    r = await anna.get(f"/admin/webhooks/{endpoint['id']}")
    assert r.status_code == 200 and "No deliveries." in r.text
    r = await anna.post(
        f"/admin/webhooks/{endpoint['id']}/deliveries/whd_nope/retry", data={"csrf": csrf},
        headers=SAME_ORIGIN,
    )  # fmt: skip
    assert r.status_code == 404
    # Another team's admin: the endpoint does not exist for them.
    other = await hooks.list_endpoints(pseed.seed.other_team.id)
    assert other == []
    async with httpx.AsyncClient(transport=anna._transport, base_url=str(anna.base_url)) as olga:
        await sign_in(olga, pseed.olga.email)
        assert (await olga.get(f"/admin/webhooks/{endpoint['id']}")).status_code == 404
    r = await anna.post(
        f"/admin/webhooks/{endpoint['id']}/delete", data={"csrf": csrf}, headers=SAME_ORIGIN
    )
    assert r.status_code == 303
    assert await hooks.list_endpoints(pseed.seed.team.id) == []
