"""Portal fixtures: a runtime (SQLite unless a test asks for both backends), a seeded team
with portal accounts, and in-process clients that sign in like a browser."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from connectors.base import InboundMessage
from gateway.api.app import create_app
from gateway.clock import FrozenClock
from gateway.config import Settings, parse_settings
from gateway.ids import new_id
from gateway.inbound import Inbound
from gateway.models import Member, Message
from gateway.portal import accounts, indexer
from gateway.portal.storage import Account
from gateway.portal.web import Portal, portal_for
from gateway.process import open_runtime
from gateway.runtime import Runtime
from tests.gateway.conftest import CONTACT, MOBILE_A, Seed, fake_connectors, seed_directory

PASSWORD = "correct horse battery"
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}
BASE = "http://portal.test"


@dataclass
class PortalSeed:
    """The API tests' seed with portal accounts: Anna (admin), Ben (member), and Olga in
    the other team."""

    seed: Seed
    olga: Member


def portal_settings(url: str, tmp_path: Path) -> Settings:
    """Settings of a portal test runtime on ``url``."""
    settings = parse_settings({"gateway": {"store": url, "blobs": str(tmp_path / "blobs")}})
    return dataclasses.replace(settings, connectors=fake_connectors(), public_url=BASE)


@pytest.fixture
async def prt(tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Runtime]:
    """A runtime on a fresh SQLite store with fake connectors."""
    runtime = await open_runtime(
        portal_settings(f"sqlite:///{tmp_path}/gateway.db", tmp_path), clock=clock
    )
    await runtime.wait_started()
    try:
        yield runtime
    finally:
        await runtime.aclose()


@pytest.fixture
async def portal(prt: Runtime) -> Portal:
    """The portal of the runtime."""
    return await portal_for(prt)


async def add_account(portal: Portal, member: Member, role: str, password: str = PASSWORD) -> None:
    """A portal account for ``member`` with ``password``."""
    now = portal.rt.clock.now()
    await portal.store.put_account(Account(member.id, member.team_id, member.email, role, now))
    await portal.store.set_password(member.id, await accounts.hash_password(password), now)


async def seed_portal(rt: Runtime, clock: FrozenClock) -> PortalSeed:
    """Teams, members and accounts."""
    seed = await seed_directory(rt, clock)
    portal = await portal_for(rt)
    olga = Member(
        new_id("mem"),
        seed.other_team.id,
        "Olga",
        "olga@example.org",
        "+4915112345699",
        None,
        frozenset({"sms"}),
        True,
        clock.now(),
    )
    await rt.store.create_member(olga, 10)
    await add_account(portal, seed.anna, "admin")
    await add_account(portal, seed.ben, "member")
    await add_account(portal, olga, "member")
    return PortalSeed(seed, olga)


@pytest.fixture
async def pseed(prt: Runtime, clock: FrozenClock) -> PortalSeed:
    """The seeded portal."""
    return await seed_portal(prt, clock)


@pytest.fixture
async def app_client(prt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client of the app (cookies kept), not signed in."""
    app = create_app(prt, workers=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
        yield c


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no csrf field on the page"
    return found.group(1)


async def form_csrf(client: httpx.AsyncClient) -> str:
    """The CSRF token the client's next form would carry."""
    page = await client.get("/sign-in")
    if page.status_code == 303:  # signed in already: the sign-in page sends one on
        page = await client.get("/")
    return csrf_of(page.text)


async def sign_in(
    client: httpx.AsyncClient, email: str, password: str = PASSWORD
) -> httpx.Response:
    """Sign in as a browser does (same-origin form post)."""
    return await client.post(
        "/sign-in",
        data={"email": email, "password": password, "csrf": await form_csrf(client), "next": "/"},
        headers=SAME_ORIGIN,
    )


@pytest.fixture
async def anna(app_client: httpx.AsyncClient, pseed: PortalSeed) -> httpx.AsyncClient:
    """The client signed in as Anna (team admin)."""
    r = await sign_in(app_client, pseed.seed.anna.email)
    assert r.status_code == 303, r.text
    return app_client


async def receive(
    rt: Runtime,
    text: str,
    channel: str = "sms",
    member_number: str = MOBILE_A,
    contact: str = CONTACT,
    meta: dict[str, object] | None = None,
) -> Message:
    """A contact writes to a member's number (through the fake connector's sink)."""
    msg = InboundMessage(
        "fake1" if channel != "fax" else "faxfake",
        channel,
        f"carrier-{new_id('x')}",
        contact,
        member_number,
        text,
        rt.clock.now(),
        meta=dict(meta or {}),
    )
    stored = await Inbound(rt).inbound(msg)
    assert stored is not None
    return stored


async def index(rt: Runtime) -> None:
    """Bring the inbox index up to date with the event log."""
    portal = await portal_for(rt)
    while await indexer.index_step(rt.store, portal.store):
        pass


def png_bytes() -> bytes:
    """A small page image (a dark bar on white), as a scanner or phone would send."""
    import io

    from PIL import Image, ImageDraw

    image = Image.new("L", (400, 300), 255)
    ImageDraw.Draw(image).rectangle((40, 40, 360, 80), fill=0)
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say where the browser tests kept their screenshots."""
    from tests.gateway.portal.browser import SCREENSHOTS

    if SCREENSHOTS.exists() and any(SCREENSHOTS.glob("*.png")):
        terminalreporter.write_line(f"portal screenshots: {SCREENSHOTS}")
