"""One process, assembled (gateway/process.py): the worker gets the core's job kinds, the
configured connectors' and the installed extensions', explicitly; a kind that two
connectors declare goes to the connector its job names; a kind claimed twice across
seams is a configuration error; nothing registers by being imported."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

import tests.connectors.fake  # noqa: F401  (registers kind "fake")
from connectors.base import ConnectorContext, register
from gateway.clock import FrozenClock
from gateway.config import ConnectorConfig, parse_settings
from gateway.errors import ConfigError
from gateway.extensions import extensions
from gateway.ids import new_id
from gateway.models import Job, JobHandler
from gateway.process import job_handlers, open_runtime, worker
from gateway.runtime import Runtime
from tests.connectors.fake import FakeConnector

pytestmark = pytest.mark.anyio
RAN: list[tuple[str, str]] = []  # (connector id, job id) per run of a "courier" job


class Courier(FakeConnector):
    """A fake connector with a job kind of its own (option ``job_kind``, default courier)."""

    def __init__(self, config: ConnectorConfig, ctx: ConnectorContext) -> None:
        super().__init__(config, ctx)
        self.job_kind = str(config.options.get("job_kind", "courier"))

    def job_handlers(self) -> Mapping[str, JobHandler]:
        """One kind, run by a bound method."""
        return {self.job_kind: self.deliver}

    async def deliver(self, job: Job) -> None:
        """Note which connector ran which job."""
        RAN.append((self.id, job.id))


register("courier", Courier)


def courier(cid: str, **options: object) -> ConnectorConfig:
    return ConnectorConfig(cid, "courier", frozenset({"sms"}), None, dict(options))


@pytest.fixture
async def two_couriers(url: str, tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Runtime]:
    settings = parse_settings({"gateway": {"store": url, "blobs": str(tmp_path / "blobs")}})
    settings = dataclasses.replace(settings, connectors=(courier("c1"), courier("c2")))
    rt = await open_runtime(settings, clock=clock, start_connectors=False)
    try:
        yield rt
    finally:
        await rt.aclose()


async def test_the_worker_gets_every_seam_s_kinds(two_couriers: Runtime) -> None:
    kinds = worker(two_couriers).kinds
    assert {"send", "status", "forward", "courier"} <= kinds
    for ext in extensions():
        assert set(ext.job_handlers(two_couriers)) <= kinds


async def test_a_kind_of_two_connectors_goes_to_the_one_its_job_names(
    two_couriers: Runtime, clock: FrozenClock
) -> None:
    rt = two_couriers
    RAN.clear()
    ids = []
    for cid in ("c2", "c1", "gone"):
        job = Job(new_id("job"), "courier", {"connector_id": cid}, clock.now(), 3)
        await rt.store.enqueue(job)
        ids.append(job.id)
        clock.advance(seconds=1)
    while await worker(rt).run_once():
        pass
    # A connector that is gone: the first that declares the kind decides what to do.
    assert [("c2", ids[0]), ("c1", ids[1]), ("c1", ids[2])] == RAN


async def test_a_kind_claimed_twice_is_a_configuration_error(
    url: str, tmp_path: Path, clock: FrozenClock
) -> None:
    settings = parse_settings({"gateway": {"store": url, "blobs": str(tmp_path / "blobs")}})
    settings = dataclasses.replace(settings, connectors=(courier("c1", job_kind="send"),))
    rt = await open_runtime(settings, clock=clock, start_connectors=False)
    try:
        with pytest.raises(ConfigError, match="connectors: job kind\\(s\\) send already handled"):
            job_handlers(rt)
    finally:
        await rt.aclose()


async def test_nothing_registers_by_import(rt: Runtime) -> None:
    """The jobs module keeps no table of handlers that an import could fill."""
    import gateway.jobs

    assert not hasattr(gateway.jobs, "HANDLERS") and not hasattr(gateway.jobs, "PERIODIC")
    assert "courier" not in worker(rt).kinds  # registered as a connector kind, not configured
