"""Fixtures: a simulator on a free loopback port, a recording sink, connector factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from connectors.base import ConnectorContext, InboundMessage, StatusReport
from connectors.smpp.connector import SmppConnector
from connectors.smpp.simulator import SmscSimulator
from gateway.blobs import BlobStore
from gateway.clock import FrozenClock
from gateway.config import ConnectorConfig

SENDER = "+4915112345671"
CONTACT = "+4917612345678"


class RecordingSink:
    """An InboundSink that records; ``fail_inbound`` makes the next N inbound calls raise;
    ``known`` decides which carrier ids a status report finds (default: all)."""

    def __init__(self) -> None:
        self.inbound_messages: list[InboundMessage] = []
        self.reports: list[StatusReport] = []
        self.lookups: list[str] = []
        self.fail_inbound = 0
        self.known: Callable[[str], bool] = lambda _id: True

    async def inbound(self, message: InboundMessage) -> Any:
        if self.fail_inbound:
            self.fail_inbound -= 1
            raise RuntimeError("store unavailable")
        self.inbound_messages.append(message)
        return message

    async def status(self, report: StatusReport) -> Any:
        self.lookups.append(report.carrier_id)
        if not self.known(report.carrier_id):
            return None
        self.reports.append(report)
        return report


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``predicate()`` holds (bounded)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.005)


@pytest.fixture
async def sim() -> AsyncIterator[SmscSimulator]:
    """A running SMSC simulator (receipts after 20 ms, redeliveries after 50 ms)."""
    s = SmscSimulator(system_id="gw", password="secret", receipt_delay=0.02, redeliver_delay=0.05)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


@pytest.fixture
async def smsc() -> AsyncIterator[SmscSimulator]:
    """A running SMSC simulator as the gateway tests configure it (system_id "gateway",
    receipts after 50 ms)."""
    sim = SmscSimulator(system_id="gateway", password="secret", receipt_delay=0.05)
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


@pytest.fixture
def sink() -> RecordingSink:
    """The recording sink."""
    return RecordingSink()


@pytest.fixture
async def context(sink: RecordingSink, tmp_path: Any) -> AsyncIterator[ConnectorContext]:
    """A connector context around the recording sink and a frozen clock."""
    async with httpx.AsyncClient() as http:
        yield ConnectorContext(
            http=http,
            sink=sink,
            clock=FrozenClock(datetime(2026, 3, 15, 12, 0, tzinfo=UTC)),
            blobs=BlobStore(str(tmp_path / "blobs")),
            public_url="http://127.0.0.1:8080",
        )


Make = Callable[..., SmppConnector]


@pytest.fixture
async def make(sim: SmscSimulator, context: ConnectorContext) -> AsyncIterator[Make]:
    """Build smpp connectors to the simulator (fast timers); all closed at the end."""
    made: list[SmppConnector] = []

    def build(**options: Any) -> SmppConnector:
        opts: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": sim.port,
            "system_id": "gw",
            "password": "secret",
            "rate": 0,
            "reconnect_min": 0.02,
            "reconnect_max": 0.2,
            "throttle_pause": 0.02,
            "send_wait": 0.3,
            **options,
        }
        c = SmppConnector(ConnectorConfig("sms1", "smpp", frozenset({"sms"}), None, opts), context)
        made.append(c)
        return c

    yield build
    for c in made:
        await c.aclose()
