"""WhatsApp fixtures: the simulator on a free loopback port, a recording sink, and a full
gateway (Runtime + API served by uvicorn) whose ``whatsapp_cloud`` connector talks to it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.base import ConnectorContext, InboundMessage, StatusReport
from connectors.whatsapp.cloud import WhatsAppCloudConnector
from connectors.whatsapp.simulator import WhatsAppSimulator
from gateway.api.app import create_app
from gateway.blobs import BlobStore
from gateway.clock import FrozenClock
from gateway.config import ConnectorConfig, parse_settings
from gateway.models import Message
from gateway.process import open_runtime
from gateway.runtime import Runtime
from gateway.serving import serving
from tests.gateway.conftest import MOBILE_A, Seed, fake_connectors, seed_directory

PAYLOADS = Path(__file__).parent / "payloads"
META_PNID = "106540352242922"  # the phone_number_id of Meta's examples
BUSINESS = MOBILE_A  # Anna's mobile: the business number in these tests
USER = "+4917612345678"


def payload(name: str) -> bytes:
    """One of Meta's documented example payloads, byte for byte as stored."""
    return (PAYLOADS / name).read_bytes()


def payload_doc(name: str) -> Any:
    """A Meta example payload, parsed."""
    return json.loads(payload(name))


@dataclass
class RecordingSink:
    """An ``InboundSink`` that keeps what it is given (no store)."""

    inbound_messages: list[InboundMessage] = field(default_factory=list)
    statuses: list[StatusReport] = field(default_factory=list)

    async def inbound(self, message: InboundMessage) -> Message | None:
        """Remember the message."""
        self.inbound_messages.append(message)
        return None

    async def status(self, report: StatusReport) -> Message | None:
        """Remember the report."""
        self.statuses.append(report)
        return None


def connector_config(sim: WhatsAppSimulator, cid: str = "wa", **extra: Any) -> ConnectorConfig:
    """A ``whatsapp_cloud`` table pointing at ``sim``."""
    options = {**sim.connector_options(), **extra}
    return ConnectorConfig(cid, "whatsapp_cloud", frozenset({"whatsapp"}), None, options)


@pytest.fixture
async def sim(clock: FrozenClock) -> AsyncIterator[WhatsAppSimulator]:
    """The simulator on a free port, statuses posted only on ``flush()``."""
    simulator = WhatsAppSimulator(numbers={BUSINESS: META_PNID}, clock=clock, auto_status=False)
    async with simulator:
        yield simulator


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        yield client


@pytest.fixture
def sink() -> RecordingSink:
    """A recording sink."""
    return RecordingSink()


@pytest.fixture
async def connector(
    sim: WhatsAppSimulator,
    http: httpx.AsyncClient,
    sink: RecordingSink,
    clock: FrozenClock,
    tmp_path: Path,
) -> AsyncIterator[WhatsAppCloudConnector]:
    """A started connector talking to ``sim``, handing what it gets to ``sink``."""
    ctx = ConnectorContext(http, sink, clock, BlobStore(tmp_path / "blobs"), "http://gw.test")
    conn = WhatsAppCloudConnector(connector_config(sim), ctx)
    await conn.start()
    try:
        yield conn
    finally:
        await conn.aclose()


@dataclass
class Gateway:
    """A gateway served for real, with the simulator posting to its webhook."""

    rt: Runtime
    seed: Seed
    url: str
    client: httpx.AsyncClient
    sim: WhatsAppSimulator

    @property
    def connector(self) -> WhatsAppCloudConnector:
        """The gateway's WhatsApp connector."""
        conn = self.rt.connectors["wa"].connector
        assert isinstance(conn, WhatsAppCloudConnector)
        return conn


@pytest.fixture
async def gateway(
    url: str, tmp_path: Path, clock: FrozenClock, sim: WhatsAppSimulator
) -> AsyncIterator[Gateway]:
    """Runtime (store of the backend under test) + API on a free port + the simulator."""
    settings = parse_settings({"gateway": {"store": url, "blobs": str(tmp_path / "blobs")}})
    configs = (connector_config(sim), *fake_connectors())
    settings = dataclasses.replace(settings, connectors=configs)
    rt = await open_runtime(settings, clock=clock)
    try:
        await rt.wait_started()
        seed = await seed_directory(rt, clock)
        async with serving(create_app(rt, workers=False)) as base:
            sim.webhook_url = f"{base}/hooks/wa/"
            async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
                yield Gateway(rt, seed, base, client, sim)
    finally:
        await rt.aclose()
