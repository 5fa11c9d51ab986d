"""The API while its Redis is SIGKILLed and restarted on its AOF (a real redis-server of
this test's own: it is killed, so never the one at ``REDIS_URL``).

While Redis is down every request is answered 503 ``store_unavailable`` problem+json with
``Retry-After`` (before: a 500 ``internal_error`` with a traceback logged, and the
connection closed), never a 202; what was accepted before is still there afterwards, and
a send retried with its Idempotency-Key is stored once.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from gateway.api.app import create_app
from gateway.clock import FrozenClock
from gateway.config import parse_settings
from gateway.process import open_runtime
from gateway.runtime import Runtime
from tests.conftest import free_port, wait_port
from tests.gateway.api.test_messages import expect_problem, sms
from tests.gateway.conftest import auth, fake_connectors, seed_directory

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


class Redis:
    """A redis-server with AOF (appendfsync always) that the test may kill and restart."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server")
        assert exe is not None, "redis-server is not installed: run `make test`"
        self.dir = tempfile.mkdtemp(prefix="gw-redis-outage-")
        self.port = free_port()
        self.cmd = [
            exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
            "--save", "", "--appendonly", "yes", "--appendfsync", "always",
            "--protected-mode", "no",
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def redis() -> Iterator[Redis]:
    server = Redis()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def rt(redis: Redis, tmp_path: Path, clock: FrozenClock) -> AsyncIterator[Runtime]:
    settings = parse_settings({"gateway": {"store": redis.url, "blobs": str(tmp_path / "blobs")}})
    settings = dataclasses.replace(settings, connectors=fake_connectors())
    runtime = await open_runtime(settings, clock=clock)
    await runtime.wait_started()
    try:
        yield runtime
    finally:
        await runtime.aclose()


async def test_redis_killed_and_restarted(
    rt: Runtime, redis: Redis, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    seed = await seed_directory(rt, clock)
    headers = auth(seed.team_key)
    keyed = {**headers, "Idempotency-Key": "outage-1"}
    app = create_app(rt, workers=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://gw.test"
    ) as client:
        before = await client.post("/v1/messages", json=sms("before"), headers=headers)
        assert before.status_code == 202
        redis.kill()
        for resp in [
            await client.post("/v1/messages", json=sms("fast path"), headers=headers),
            await client.post("/v1/messages", json=sms("with a key"), headers=keyed),
            await client.get("/v1/messages", headers=headers),
        ]:
            await expect_problem(resp, 503, "store_unavailable")
            assert resp.headers["retry-after"] == "1"
        assert not [r for r in caplog.records if r.exc_info], "an outage is not a traceback"
        redis.start()  # the same port and directory: it loads its AOF
        retried = await client.post("/v1/messages", json=sms("with a key"), headers=keyed)
        assert retried.status_code == 202, retried.text
        page = (await client.get("/v1/messages", headers=headers)).json()
        assert sorted(m["text"] for m in page["data"]) == ["before", "with a key"]
    lines, _ = await rt.store.ledger(seed.team.id, "2026-03")
    assert sum(ln.used for ln in lines) == 2
