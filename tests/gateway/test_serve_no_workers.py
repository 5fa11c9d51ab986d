"""``gateway serve --no-workers`` and ``workers = 0``: an API-only replica, as a real
process, never leases a job; the same serve with workers does (the control)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from gateway.clock import SystemClock
from gateway.ids import new_id
from gateway.models import Job
from gateway.store import make_store
from tests.conftest import free_port, store_url, wait_port

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
POLL = 0.05  # the serve's poll_interval: an idle leaser looks this often
LOOKS = 40  # poll intervals the API-only serve is watched for


def start_serve(
    tmp_path: Path, url: str, workers: int, *flags: str, gateway: str = ""
) -> tuple[subprocess.Popen[bytes], int]:
    """``gateway serve`` as a real process on a free port, with its store at ``url``
    (``gateway``: more lines for its ``[gateway]`` table)."""
    config = tmp_path / "gateway.toml"
    config.write_text(f"[gateway]\nworkers = {workers}\npoll_interval = {POLL}\n{gateway}")
    env = {**os.environ, "GATEWAY_STORE": url, "GATEWAY_BLOBS": str(tmp_path / "blobs")}
    port = free_port()
    cmd = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config),
           "--port", str(port), *flags]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, timeout=60)
    except BaseException:
        proc.kill()
        proc.wait(10)
        raise
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, then the exit status."""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


@pytest.mark.parametrize(
    ("backend", "workers", "flags", "leases"),
    [
        ("sqlite", 4, ["--no-workers"], False),
        ("sqlite", 0, [], False),
        ("redis", 4, ["--no-workers"], False),
        ("sqlite", 4, [], True),  # the control: a serve with workers takes the job
    ],
)
async def test_serve_without_workers_never_leases_a_job(
    tmp_path: Path, redis_url: str, backend: str, workers: int, flags: list[str], leases: bool
) -> None:
    url = store_url(backend, redis_url, tmp_path)
    store = make_store(url)
    await store.open()
    try:
        now = SystemClock().now()
        # A kind the core handles ("forward"), due now; its payload names nothing, so a
        # worker that leases it records an attempt (its handler fails) or finishes it.
        job = Job(new_id("job"), "forward", {}, now, 3, created_at=now)
        await store.enqueue(job)
        proc, port = start_serve(tmp_path, url, workers, *flags)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                assert (await client.get("/healthz")).status_code == 200
            for _ in range(LOOKS):
                await asyncio.sleep(POLL)
                seen = await store.get_job(job.id)
                if seen is None or seen.attempts or seen.token:
                    break
        finally:
            assert stop(proc) == 0
        seen = await store.get_job(job.id)
        taken = seen is None or seen.attempts > 0 or seen.token is not None
        assert taken is leases, seen
        if not leases:
            assert seen is not None and seen.state == "ready"
    finally:
        await store.aclose()


def test_worker_refuses_zero_workers(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text("[gateway]\nworkers = 0\n")
    env = {**os.environ, "GATEWAY_STORE": f"sqlite:///{tmp_path}/g.db"}
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "worker", "--config", str(config)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "gateway.workers" in proc.stderr


def test_negative_workers_is_a_config_error(tmp_path: Path) -> None:
    from gateway.config import load_settings
    from gateway.errors import ConfigError

    config = tmp_path / "gateway.toml"
    config.write_text("[gateway]\nworkers = -1\n")
    with pytest.raises(ConfigError, match=r"gateway\.workers"):
        load_settings(str(config))
