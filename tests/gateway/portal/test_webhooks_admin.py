"""Webhook endpoints managed in the portal through the ``WebhookAdmin`` service that the
webhooks extension offers (the portal never imports ``webhooks/``), and a delivery that
really failed (a receiver answering 500) attempted again from the delivery log."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from gateway.clock import FrozenClock
from gateway.extensions import service
from gateway.runtime import Runtime
from gateway.services import WEBHOOK_ADMIN
from tests.gateway.portal.conftest import (
    SAME_ORIGIN,
    PortalSeed,
    csrf_of,
    receive,
    sign_in,
)
from tests.webhooks.conftest import settle
from tests.webhooks.receiver import Answer, Receiver
from tests.webhooks.test_delivery import verify_signature
from webhooks.client import Client
from webhooks.delivery import Engine
from webhooks.settings import WebhookSettings
from webhooks.storage import WEBHOOK_STORE

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


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on a free loopback port."""
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
async def engine(prt: Runtime) -> AsyncIterator[Engine]:
    """The webhooks' delivery engine on the portal's runtime, stepped by the test; two
    attempts per delivery (the second 60 s after the first)."""
    prt.settings = prt.settings.with_extension(
        "webhooks", WebhookSettings(allow_private_targets=True, retry_schedule=(0, 60))
    )
    e = Engine(prt, client=Client(allow_private=True), owner="portal-test")
    try:
        yield e
    finally:
        await e.drain()
        await e.client.aclose()


async def test_a_failed_delivery_is_retried_from_the_log(
    anna: httpx.AsyncClient,
    prt: Runtime,
    pseed: PortalSeed,
    engine: Engine,
    receiver: Receiver,
    clock: FrozenClock,
) -> None:
    receiver.answer = lambda _: Answer(500, body=b"CRM down")
    page = await anna.get("/admin/webhooks")
    csrf = csrf_of(page.text)
    r = await anna.post(
        "/admin/webhooks",
        data={"csrf": csrf, "url": f"{receiver.url}/hook", "events": "message.received"},
        headers=SAME_ORIGIN,
    )
    assert r.status_code == 200, r.text
    hooks = service(prt, WEBHOOK_ADMIN)
    assert hooks is not None
    (endpoint,) = await hooks.list_endpoints(pseed.seed.team.id)
    stored = await prt.role(WEBHOOK_STORE).get_endpoint(endpoint["id"])
    assert stored is not None
    # A contact writes; the receiver fails both attempts: the delivery has failed.
    await receive(prt, "Guten Tag")
    await settle(engine)
    clock.advance(seconds=60)
    await settle(engine)
    assert len(receiver.received) == 2
    log = await anna.get(f"/admin/webhooks/{endpoint['id']}?status=failed")
    assert log.status_code == 200
    assert "message.received" in log.text and "<td>HTTP 500</td>" in log.text
    german = await anna.get(
        f"/admin/webhooks/{endpoint['id']}?status=failed", headers={"Accept-Language": "de"}
    )
    assert "<td>fehlgeschlagen</td>" in german.text
    [(action, delivery_id)] = re.findall(
        r'action="(/admin/webhooks/[^"]+/deliveries/(whd_[^/]+)/retry)"', log.text
    )
    # Disabled, the endpoint takes no retry: the page says why.
    r = await anna.post(
        f"/admin/webhooks/{endpoint['id']}/enabled", data={"csrf": csrf, "enabled": "0"},
        headers=SAME_ORIGIN,
    )  # fmt: skip
    assert r.status_code == 303
    r = await anna.post(action, data={"csrf": csrf}, headers=SAME_ORIGIN)
    assert r.status_code == 409 and "enable it first" in r.text
    r = await anna.post(
        f"/admin/webhooks/{endpoint['id']}/enabled", data={"csrf": csrf, "enabled": "1"},
        headers=SAME_ORIGIN,
    )  # fmt: skip
    # The receiver is back; the admin retries the failed delivery: it goes out at once.
    receiver.answer = lambda _: Answer(204)
    r = await anna.post(action, data={"csrf": csrf}, headers=SAME_ORIGIN)
    assert r.status_code == 303 and r.headers["location"].endswith("?retried=1")
    page = await anna.get(r.headers["location"])
    assert "The delivery is attempted again now." in page.text
    await settle(engine)
    assert len(receiver.received) == 3
    again = receiver.received[-1]
    first = receiver.received[0]
    assert again.headers["webhook-id"] == first.headers["webhook-id"]  # the same delivery
    assert again.json() == first.json()
    verify_signature(stored.secret, again)
    log = await anna.get(f"/admin/webhooks/{endpoint['id']}?status=succeeded")
    assert delivery_id in log.text and "<td>succeeded</td>" in log.text
    # A new series of attempts: its first one got through.
    assert "<td>1</td>" in log.text and "<td>204</td>" in log.text
    log = await anna.get(f"/admin/webhooks/{endpoint['id']}?status=failed")
    assert "No deliveries." in log.text
