"""API fixtures: a runtime on a fresh store, a seeded team, and an in-process client."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import tests.connectors.fake  # noqa: F401  (registers kind "fake")
from connectors.base import InboundMessage
from gateway.api.app import create_app
from gateway.auth import create_key
from gateway.clock import FrozenClock
from gateway.config import ConnectorConfig, parse_settings
from gateway.ids import new_id
from gateway.inbound import Inbound
from gateway.models import Member, Message, Team
from gateway.process import open_runtime
from gateway.runtime import Runtime

MOBILE_A = "+4915112345671"
MOBILE_B = "+4915112345672"
FAX_A = "+4930123456701"
CONTACT = "+4917612345678"


@dataclass
class Seed:
    """A team with two members, keys for the team and each member, and another team."""

    team: Team
    anna: Member
    ben: Member
    team_key: str
    anna_key: str
    ben_key: str
    other_team: Team
    other_key: str


def fake_connectors(**options: object) -> tuple[ConnectorConfig, ...]:
    """One fake connector for SMS+WhatsApp and one for fax."""
    return (
        ConnectorConfig("fake1", "fake", frozenset({"sms", "whatsapp"}), None, dict(options)),
        ConnectorConfig("faxfake", "fake", frozenset({"fax"}), None, {}),
    )


async def seed_directory(rt: Runtime, clock: FrozenClock, credit_limit: int = 10_000_000) -> Seed:
    """Create the teams, members and keys of :class:`Seed`."""
    now = clock.now()
    team = Team(new_id("team"), "Acme", "business", credit_limit, "DE", now)
    other = Team(new_id("team"), "Rival", "starter", 0, "DE", now)
    await rt.store.create_team(team)
    await rt.store.create_team(other)
    anna = Member(
        new_id("mem"),
        team.id,
        "Anna",
        "anna@example.com",
        MOBILE_A,
        FAX_A,
        frozenset({"whatsapp", "fax"}),
        True,
        now,
    )
    ben = Member(
        new_id("mem"),
        team.id,
        "Ben",
        "ben@example.com",
        MOBILE_B,
        None,
        frozenset({"sms"}),
        True,
        now,
    )
    await rt.store.create_member(anna, 10)
    await rt.store.create_member(ben, 10)
    _, team_key = await create_key(rt.store, clock, team.id)
    _, anna_key = await create_key(rt.store, clock, team.id, anna.id)
    _, ben_key = await create_key(rt.store, clock, team.id, ben.id)
    _, other_key = await create_key(rt.store, clock, other.id)
    return Seed(team, anna, ben, team_key, anna_key, ben_key, other, other_key)


@contextlib.asynccontextmanager
async def runtime_on(url: str, tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Runtime]:
    """A runtime (one gateway process) on the store at ``url``, with fake connectors."""
    settings = parse_settings({"gateway": {"store": url, "blobs": str(tmp_path / "blobs")}})
    settings = dataclasses.replace(settings, connectors=fake_connectors())
    runtime = await open_runtime(settings, clock=clock)
    await runtime.wait_started()
    try:
        yield runtime
    finally:
        await runtime.aclose()


@pytest.fixture
async def rt(url: str, tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Runtime]:
    """A runtime on a fresh store of the backend under test, with fake connectors."""
    async with runtime_on(url, tmp_path, clock) as runtime:
        yield runtime


@pytest.fixture
async def seed(rt: Runtime, clock: FrozenClock) -> Seed:
    """The seeded directory."""
    return await seed_directory(rt, clock)


@pytest.fixture
async def client(rt: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client talking to the app in-process (workers off: tests run jobs by hand)."""
    app = create_app(rt, workers=False)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as c:
        yield c


def auth(key: str) -> dict[str, str]:
    """The Authorization header for ``key``."""
    return {"Authorization": f"Bearer {key}"}


async def open_whatsapp_window(
    rt: Runtime, member_number: str = MOBILE_A, contact: str = CONTACT, text: str = "Hallo"
) -> Message:
    """The contact writes on WhatsApp now (through the fake connector's sink), which opens
    the 24-hour window for free-form answers; returns the stored inbound message."""
    wamid = f"wamid.{new_id('x')}"
    msg = InboundMessage("fake1", "whatsapp", wamid, contact, member_number, text, rt.clock.now())
    stored = await Inbound(rt).inbound(msg)
    assert stored is not None
    return stored


def record_retries(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float, bool]]:
    """Every durable retry a job is given: (job id, seconds until it runs again, refund)."""
    real = rt.store.retry_job
    seen: list[tuple[str, float, bool]] = []

    async def retry_job(
        job_id: str, token: str, run_at: datetime, error: str, refund: bool = False
    ) -> Any:
        seen.append((job_id, (run_at - rt.clock.now()).total_seconds(), refund))
        return await real(job_id, token, run_at, error, refund)

    monkeypatch.setattr(rt.store, "retry_job", retry_job)
    return seen
