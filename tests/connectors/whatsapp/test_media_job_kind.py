"""The lost-media case of issue 9, fixed: a queued ``whatsapp_media`` job outlives the
removal of the WhatsApp connector from the configuration. A gateway process without the
connector leaves the job queued, its attempts untouched, and shows it (``/metrics``,
``gateway admin jobs list``); once a process with the connector runs again, the message
is stored with its media. Both store backends, the real simulator and API."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from connectors.whatsapp.cloud import MEDIA_JOB
from gateway.admin import run as run_admin
from gateway.api.app import create_app
from gateway.cli import build_parser
from gateway.errors import Conflict, NotFound
from gateway.process import open_runtime, worker
from gateway.runtime import Runtime
from tests.connectors.whatsapp.conftest import BUSINESS, USER, Gateway
from tests.gateway.conftest import auth

pytestmark = pytest.mark.anyio
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40
VIS = timedelta(seconds=30)


@pytest.fixture
async def without_whatsapp(gateway: Gateway) -> AsyncIterator[Runtime]:
    """Another gateway process on the same store whose configuration lost the WhatsApp
    connector (only the fake SMS connectors are left)."""
    rt = gateway.rt
    settings = dataclasses.replace(
        rt.settings, connectors=tuple(c for c in rt.settings.connectors if c.id != "wa")
    )
    other = await open_runtime(settings, clock=rt.clock)
    try:
        await other.wait_started()
        yield other
    finally:
        await other.aclose()


async def metrics(rt: Runtime) -> str:
    """``/metrics`` of a process that runs job workers."""
    transport = httpx.ASGITransport(app=create_app(rt, workers=True))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw.test") as client:
        return (await client.get("/metrics")).text


async def admin(rt: Runtime, *argv: str) -> tuple[dict[str, object], str]:
    """``gateway admin …`` against the store of ``rt``."""
    return await run_admin(build_parser().parse_args(["admin", *argv]), rt.settings, rt.clock)


async def test_a_media_job_waits_for_its_connector(
    gateway: Gateway, without_whatsapp: Runtime
) -> None:
    g, other = gateway, without_whatsapp
    await g.sim.inject_inbound(USER, BUSINESS, "das Foto", media=JPEG, mime_type="image/jpeg")
    assert g.sim.deliveries[-1].status_code == 200  # answered; the download is a job
    [queued] = await g.rt.store.list_jobs("ready", MEDIA_JOB, 10)

    # The process without the connector runs its workers: the job is not theirs.
    assert MEDIA_JOB not in worker(other).kinds
    for _ in range(3):
        assert not await worker(other).run_once()
    job = await g.rt.store.get_job(queued.id)
    assert job is not None
    assert (job.state, job.attempts, job.last_error) == ("ready", 0, None)
    assert await g.rt.store.list_dead_jobs(10) == []

    # It shows: /metrics flags the kind as handled by no worker of this process ...
    text = await metrics(other)
    assert 'gateway_jobs_parked{handled="false",kind="whatsapp_media"} 1' in text
    assert 'gateway_jobs{state="ready"} 1' in text
    # ... and so does ``gateway admin jobs list``.
    obj, listing = await admin(other, "jobs", "list", "--state", "queued", "--kind", MEDIA_JOB)
    assert [j["id"] for j in obj["jobs"]] == [queued.id]  # type: ignore[index]
    assert obj["waiting_for_handler"] == {MEDIA_JOB: 1}
    assert f"{queued.id}  whatsapp_media  queued  attempts 0/" in listing
    assert "1 whatsapp_media job(s) wait for a process that handles kind" in listing
    assert (await admin(other, "jobs", "list", "--state", "dead"))[0]["jobs"] == []

    # A process with the connector runs again: the message is stored, with its media.
    assert await worker(g.rt).run_once()
    resp = await g.client.get("/v1/messages", headers=auth(g.seed.team_key))
    [msg] = resp.json()["data"]
    assert (msg["direction"], msg["text"], len(msg["attachments"])) == ("inbound", "das Foto", 1)
    content = await g.client.get(
        f"/v1/attachments/{msg['attachments'][0]}/content", headers=auth(g.seed.team_key)
    )
    assert hashlib.sha256(content.content).hexdigest() == hashlib.sha256(JPEG).hexdigest()
    assert await g.rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}
    assert 'kind="whatsapp_media"' not in await metrics(other)


async def test_a_dead_media_job_is_retried_by_the_operator(gateway: Gateway) -> None:
    """A media job that died before this fix (no handler for its kind) is revived with
    ``gateway admin jobs retry``, and the message it carried is stored."""
    g = gateway
    await g.sim.inject_inbound(USER, BUSINESS, "spät", media=JPEG, mime_type="image/jpeg")
    [queued] = await g.rt.store.list_jobs("ready", MEDIA_JOB, 10)
    # Every attempt fails, as it did when no process had a handler for the kind.
    state = None
    while state != "dead":
        [leased] = await g.rt.store.lease_jobs(g.rt.clock.now(), "old", VIS, 1)
        state = await g.rt.store.retry_job(
            leased.id, leased.token or "", g.rt.clock.now(), "no handler for job kind"
        )
    [dead] = await g.rt.store.list_dead_jobs(10)
    assert dead.id == queued.id

    obj, text = await admin(g.rt, "jobs", "list", "--state", "dead")
    assert [j["id"] for j in obj["jobs"]] == [queued.id]  # type: ignore[index]
    assert "last error: no handler for job kind" in text
    obj, text = await admin(g.rt, "jobs", "retry", queued.id)
    assert obj["state"] == "queued" and obj["attempts"] == 0
    assert text == (
        f"job {queued.id} ({MEDIA_JOB}) is queued again, due now; its attempts start over"
    )
    with pytest.raises(Conflict, match="is queued, not dead"):
        await admin(g.rt, "jobs", "retry", queued.id)
    with pytest.raises(NotFound, match="does not exist"):
        await admin(g.rt, "jobs", "retry", "job_nope")

    assert await worker(g.rt).run_once()
    resp = await g.client.get("/v1/messages", headers=auth(g.seed.team_key))
    [msg] = resp.json()["data"]
    assert (msg["text"], len(msg["attachments"])) == ("spät", 1)
