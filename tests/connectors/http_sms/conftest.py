"""Fixtures: the carrier simulator on a loopback port, and connectors built against it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.base import ConnectorContext, InboundMessage, StatusReport
from connectors.http_sms.simulator import Simulator
from connectors.http_sms.twilio import TwilioConnector
from gateway.blobs import BlobStore
from gateway.clock import FrozenClock
from gateway.config import ConnectorConfig
from gateway.models import Message

PUBLIC_URL = "https://gw.example.com/base"


class RecordingSink:
    """An ``InboundSink`` that only records what the connector hands it."""

    def __init__(self) -> None:
        self.messages: list[InboundMessage] = []
        self.reports: list[StatusReport] = []

    async def inbound(self, message: InboundMessage) -> Message | None:
        """Record an inbound message."""
        self.messages.append(message)
        return None

    async def status(self, report: StatusReport) -> Message | None:
        """Record a status report."""
        self.reports.append(report)
        return None


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    """A Twilio-compatible carrier on a free loopback port."""
    async with Simulator(callback_delays=(0.01, 0.01)) as carrier:
        yield carrier


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """The connector's HTTP client (the runtime's, in the gateway)."""
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0), follow_redirects=False) as c:
        yield c


@pytest.fixture
def sink() -> RecordingSink:
    """What the connector handed to the gateway."""
    return RecordingSink()


@dataclass
class Build:
    """Builds connectors against the simulator with the test's clock, client and sink."""

    sim: Simulator
    http: httpx.AsyncClient
    sink: RecordingSink
    clock: FrozenClock
    blobs: Path

    def __call__(self, public_url: str = PUBLIC_URL, **options: Any) -> TwilioConnector:
        opts: dict[str, Any] = {
            "base_url": self.sim.base_url,
            "account_sid": self.sim.account_sid,
            "auth_token": self.sim.auth_token,
            **options,
        }
        opts = {k: v for k, v in opts.items() if v is not None}
        config = ConnectorConfig("tw1", "twilio", frozenset({"sms"}), None, opts)
        ctx = ConnectorContext(
            http=self.http,
            sink=self.sink,
            clock=self.clock,
            blobs=BlobStore(self.blobs),
            public_url=public_url,
        )
        return TwilioConnector(config, ctx)


@pytest.fixture
def build(
    sim: Simulator,
    http: httpx.AsyncClient,
    sink: RecordingSink,
    clock: FrozenClock,
    tmp_path: Path,
) -> Build:
    """``build(**options)``: a connector of kind twilio talking to ``sim``."""
    return Build(sim, http, sink, clock, tmp_path / "blobs")
