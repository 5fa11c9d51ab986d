"""A gateway runtime on SQLite with a ``sip_t38`` connector whose proxy is the fax
simulator; both drive their media on one simulated ticker (two fine pages in well under
a second)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors.base import ConnectorContext, register
from connectors.sip_t38.connector import SipT38Connector
from connectors.sip_t38.demo import free_port
from fax.convert import CONVERT, convert_job
from fax.simulator import FaxSimulator
from fax.t38.ticker import SimulatedTicker
from gateway.auth import Principal
from gateway.clock import FrozenClock
from gateway.commands import SendRequest, convert
from gateway.config import ConnectorConfig, parse_settings
from gateway.ids import new_id
from gateway.models import Attachment, Message
from gateway.outbound import submit
from gateway.process import open_runtime
from gateway.runtime import Runtime
from tests.fax.t38.support import make_tiff
from tests.gateway.conftest import FAX_A, Seed, seed_directory

KIND = "sip_t38_simulated"
REMOTE = "+4940555000"  # a fax machine of the simulator
TICKER = SimulatedTicker()


def _factory(config: ConnectorConfig, context: ConnectorContext) -> SipT38Connector:
    return SipT38Connector(config, context, ticker=TICKER)


register(KIND, _factory)


async def eventually(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait until ``predicate()`` holds (bounded)."""
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def converted(rt: Runtime, message_id: str) -> Path:
    """Run the fax's ``fax_convert`` job; the path of the TIFF-F it made (``meta.fax.tiff``)."""
    job = await rt.store.lease_job(rt.clock.now(), "test", timedelta(seconds=60),
                                   kinds=(CONVERT,))
    assert job is not None and job.payload["message_id"] == message_id
    await convert_job(rt, job)
    assert await rt.store.ack_job(job.id, job.token or "")
    msg = await rt.store.get_message(message_id)
    assert msg is not None and msg.status == "queued", msg
    att = await rt.store.get_attachment(msg.meta["fax"]["tiff"])
    assert att is not None
    return rt.blobs.path(att.sha256)


@dataclass
class Gateway:
    rt: Runtime
    sim: FaxSimulator
    seed: Seed
    clock: FrozenClock
    tmp: Path

    @property
    def connector(self) -> SipT38Connector:
        state = self.rt.connectors["fax1"]
        assert isinstance(state.connector, SipT38Connector)
        return state.connector

    async def submit_fax(self, pages: int = 2, to: str = REMOTE) -> tuple[str, Path]:
        """Submit a fax with a TIFF attachment and run its conversion (``fax_convert``),
        as every fax goes: the message id and the converted TIFF-F the send job will
        transmit (queued, its send job ready)."""
        tiff = make_tiff(self.tmp / f"{new_id('f')}.tif", pages=pages)
        data = tiff.read_bytes()
        sha = self.rt.blobs.put(data)
        att = Attachment(new_id("att"), self.seed.team.id, sha, len(data), "image/tiff",
                         "pages.tif", self.clock.now())
        await self.rt.store.put_attachment(att)
        principal = Principal(self.seed.team.id, None, "test")
        body = {"channel": "fax", "from": FAX_A, "to": to, "attachments": [att.id]}
        accepted = await submit(self.rt, principal, convert(SendRequest, body))
        return accepted.message.id, await converted(self.rt, accepted.message.id)

    async def message(self, message_id: str) -> Message:
        msg = await self.rt.store.get_message(message_id)
        assert msg is not None
        return msg


@pytest.fixture
async def gateway(tmp_path: Path, clock: FrozenClock,
                  request: pytest.FixtureRequest) -> AsyncIterator[Gateway]:
    options: dict[str, Any] = dict(getattr(request, "param", {}))
    # ``real_time``: the real ``sip_t38`` kind, media paced by the wall clock.
    real_time = bool(options.pop("real_time", False))
    port = free_port()
    sim = FaxSimulator(gateway=f"sip:127.0.0.1:{port}", ticker=None if real_time else TICKER,
                       station_id="REMOTE FAX")
    await sim.start()
    settings = parse_settings({"gateway": {
        "store": f"sqlite:///{tmp_path}/gateway.db", "blobs": str(tmp_path / "blobs"),
        "job_visibility_seconds": options.pop("visibility", 120.0),
        "job_max_attempts": options.pop("job_max_attempts", 10), "poll_interval": 0.02}})
    kind = "sip_t38" if real_time else KIND
    fax = ConnectorConfig("fax1", kind, frozenset({"fax"}), None, {
        "proxy": sim.uri, "listen": f"127.0.0.1:{port}", "ring_timeout": 2.0,
        "line_wait": 5.0, **options})
    rt = await open_runtime(dataclasses.replace(settings, connectors=(fax,)), clock=clock)
    await rt.wait_started()
    seed = await seed_directory(rt, clock)
    try:
        yield Gateway(rt, sim, seed, clock, tmp_path)
    finally:
        await rt.aclose()
        await sim.stop()
