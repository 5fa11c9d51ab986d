"""Sign-in, sessions, throttling, CSRF and cookies."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest

from gateway.clock import FrozenClock
from gateway.directory import Directory
from gateway.portal.accounts import token_hash
from gateway.portal.web import portal_for
from gateway.runtime import Runtime
from tests.gateway.portal.conftest import (
    PASSWORD,
    SAME_ORIGIN,
    PortalSeed,
    csrf_of,
    form_csrf,
    sign_in,
)

pytestmark = pytest.mark.anyio


def session_cookie(client: httpx.AsyncClient) -> str | None:
    return client.cookies.get("portal_session")


async def test_sign_in_sets_a_safe_cookie_and_rotates(
    app_client: httpx.AsyncClient, pseed: PortalSeed, prt: Runtime
) -> None:
    r = await app_client.get("/")
    assert r.status_code == 303 and r.headers["location"] == "/sign-in?next=/"
    r = await sign_in(app_client, pseed.seed.anna.email)
    assert r.status_code == 303 and r.headers["location"] == "/"
    set_cookie = r.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Path=/" in set_cookie
    assert "Secure" not in set_cookie  # http public URL
    first = session_cookie(app_client)
    assert first
    portal = await portal_for(prt)
    stored = await portal.store.get_session(token_hash(first))
    assert stored is not None and stored.member_id == pseed.seed.anna.id
    # Signing in again (e.g. as someone else) replaces the browser's session.
    r = await sign_in(app_client, pseed.seed.ben.email)
    second = session_cookie(app_client)
    assert second and second != first
    assert await portal.store.get_session(token_hash(first)) is None
    # Signing out ends it.
    page = await app_client.get("/")
    stored = await portal.store.get_session(token_hash(second))
    assert stored is not None and stored.member_id == pseed.seed.ben.id
    r = await app_client.post("/sign-out", data={"csrf": csrf_of(page.text)}, headers=SAME_ORIGIN)
    assert r.status_code == 303
    assert await portal.store.get_session(token_hash(second)) is None
    assert (await app_client.get("/")).status_code == 303


async def test_wrong_password_and_inactive_member_are_refused(
    app_client: httpx.AsyncClient, pseed: PortalSeed, prt: Runtime
) -> None:
    r = await sign_in(app_client, pseed.seed.anna.email, "wrong password!")
    assert r.status_code == 401 and "wrong" in r.text
    r = await sign_in(app_client, "nobody@example.com")
    assert r.status_code == 401
    await prt.store.set_member_active(pseed.seed.ben.id, False, 10)
    r = await sign_in(app_client, pseed.seed.ben.email)
    assert r.status_code == 401


async def test_sign_in_is_throttled_per_account_and_address(
    app_client: httpx.AsyncClient, pseed: PortalSeed, prt: Runtime, clock: FrozenClock
) -> None:
    for _ in range(5):
        r = await sign_in(app_client, pseed.seed.anna.email, "wrong password!")
        assert r.status_code == 401
    # Past the account's limit even the right password is refused, with a wait.
    r = await sign_in(app_client, pseed.seed.anna.email)
    assert r.status_code == 429 and 0 < int(r.headers["retry-after"]) <= 15 * 60
    assert "Too many failed attempts" in r.text
    # Another account from the same address still may (the address limit is higher).
    r = await sign_in(app_client, pseed.seed.ben.email)
    assert r.status_code == 303
    # Once the oldest failure leaves the window, Anna may again.
    clock.set(clock.now() + timedelta(minutes=15, seconds=1))
    r = await sign_in(app_client, pseed.seed.anna.email)
    assert r.status_code == 303
    # Per address: 20 failures over any accounts block the address.
    for i in range(20):
        await sign_in(app_client, f"guess{i}@example.com", "nope nope nope")
    r = await sign_in(app_client, pseed.seed.ben.email)
    assert r.status_code == 429


async def test_sessions_end_on_password_change_deactivation_and_idleness(
    app_client: httpx.AsyncClient, pseed: PortalSeed, prt: Runtime, clock: FrozenClock
) -> None:
    portal = await portal_for(prt)
    await sign_in(app_client, pseed.seed.ben.email)
    assert (await app_client.get("/")).status_code == 200
    # An admin deactivates Ben: his sessions end at once.
    admin = httpx.AsyncClient(transport=app_client._transport, base_url=str(app_client.base_url))
    async with admin:
        await sign_in(admin, pseed.seed.anna.email)
        page = await admin.get("/admin")
        r = await admin.post(
            f"/admin/members/{pseed.seed.ben.id}/active",
            data={"csrf": csrf_of(page.text), "active": "0"},
            headers=SAME_ORIGIN,
        )
        assert r.status_code == 303
        assert (await app_client.get("/")).status_code == 303
        r = await admin.post(
            f"/admin/members/{pseed.seed.ben.id}/active",
            data={"csrf": csrf_of(page.text), "active": "1"},
            headers=SAME_ORIGIN,
        )
        assert r.status_code == 303
    prt.directory = Directory(prt.store)  # it caches members for a few seconds
    # A password change (elsewhere) ends every session of the member.
    await sign_in(app_client, pseed.seed.ben.email)
    assert (await app_client.get("/")).status_code == 200
    await portal.store.set_password(pseed.seed.ben.id, "x", clock.now())
    assert (await app_client.get("/")).status_code == 303
    # Idle for longer than session_idle_hours: gone.
    await portal.store.set_password(pseed.seed.anna.id, (await _hash()), clock.now())
    await sign_in(app_client, pseed.seed.anna.email)
    clock.set(clock.now() + timedelta(hours=11))
    assert (await app_client.get("/")).status_code == 200  # touched: idle time starts again
    clock.set(clock.now() + timedelta(hours=12, seconds=1))
    assert (await app_client.get("/")).status_code == 303


async def _hash() -> str:
    from gateway.portal.accounts import hash_password

    return await hash_password(PASSWORD)


async def test_cross_site_posts_are_refused(anna: httpx.AsyncClient, pseed: PortalSeed) -> None:
    page = await anna.get("/settings")
    csrf = csrf_of(page.text)
    body = {"csrf": csrf, "enabled": "on", "sms": ""}
    cases = [
        ({"Sec-Fetch-Site": "cross-site"}, 403),
        ({"Sec-Fetch-Site": "same-site"}, 403),
        ({"Origin": "https://evil.example"}, 403),
        ({"Origin": "http://portal.test"}, 200),  # no Fetch Metadata: Origin decides
        ({"Sec-Fetch-Site": "same-origin"}, 200),
    ]
    for headers, status in cases:
        r = await anna.post(
            "/settings/forwarding", data=body, headers={**headers, "HX-Request": "true"}
        )
        assert r.status_code == status, (headers, r.text[:300])
    # Neither header (an old browser): the token decides.
    r = await anna.post(
        "/settings/forwarding", data={**body, "csrf": "forged"}, headers={"HX-Request": "true"}
    )
    assert r.status_code == 403
    r = await anna.post("/settings/forwarding", data=body, headers={"HX-Request": "true"})
    assert r.status_code == 200
    # The signed-out sign-in form too (login CSRF): double-submit cookie.
    anon = httpx.AsyncClient(transport=anna._transport, base_url=str(anna.base_url))
    async with anon:
        form = await anon.get("/sign-in")
        data = {"email": pseed.seed.ben.email, "password": PASSWORD, "csrf": "forged"}
        assert (await anon.post("/sign-in", data=data)).status_code == 403
        data["csrf"] = csrf_of(form.text)
        assert (await anon.post("/sign-in", data=data)).status_code == 303


async def test_next_stays_on_this_site(app_client: httpx.AsyncClient, pseed: PortalSeed) -> None:
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        r = await app_client.post(
            "/sign-in",
            data={
                "email": pseed.seed.ben.email,
                "password": PASSWORD,
                "csrf": await form_csrf(app_client),
                "next": evil,
            },
            headers=SAME_ORIGIN,
        )
        assert r.headers["location"] == "/"


async def test_secure_cookies_behind_https(prt: Runtime, pseed: PortalSeed) -> None:
    import dataclasses

    from gateway.api.app import create_app

    prt.settings = dataclasses.replace(prt.settings, public_url="https://portal.test")
    app = create_app(prt, workers=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://portal.test"
    ) as client:
        r = await sign_in(client, pseed.seed.ben.email)
        assert r.status_code == 303 and "Secure" in r.headers["set-cookie"]
