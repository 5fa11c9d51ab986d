"""A worker process killed with SIGKILL mid-job: its lease, renewed while it lived, runs
out, the job runs again once, the carrier sees the message once. Real processes (`gateway
worker`), a real HTTP carrier, both backends."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gateway.auth import Principal
from gateway.clock import FrozenClock
from gateway.commands import SendRequest, convert
from gateway.config import load_settings
from gateway.outbound import submit
from gateway.process import open_runtime
from gateway.runtime import Runtime
from tests.conftest import free_port
from tests.gateway.conftest import CONTACT, MOBILE_A, seed_directory

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


class Carrier:
    """An HTTP carrier that records every message it accepts."""

    def __init__(self) -> None:
        self.received: list[dict[str, object]] = []
        carrier = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                carrier.received.append(body)
                out = json.dumps({"id": f"c-{len(carrier.received)}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/messages"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def carrier() -> Iterator[Carrier]:
    c = Carrier()
    yield c
    c.close()


def write_config(path: Path, url: str, blobs: Path, carrier_url: str, pause: Path) -> None:
    path.write_text(
        f"""
[gateway]
store = "{url}"
blobs = "{blobs}"
plugins = ["tests.connectors.fake"]
job_visibility_seconds = 1.5
poll_interval = 0.05
workers = 2

[[connectors]]
id = "fake1"
kind = "fake"
channels = ["sms"]
carrier_url = "{carrier_url}"
pause_file = "{pause}"
"""
    )


def start_worker(config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GATEWAY_STORE", None)
    n = len(list(config.parent.glob("worker-*.log")))
    with open(config.parent / f"worker-{n}.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "worker", "--config", str(config)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def wait_status(
    rt: Runtime, message_id: str, status: str, logs: Path, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    msg = None
    while time.monotonic() < deadline:
        msg = await rt.store.get_message(message_id)
        if msg is not None and msg.status == status:
            return
        await asyncio.sleep(0.05)
    job_counts = await rt.store.job_counts()
    worker_logs = "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(logs.glob("*.log")))
    raise AssertionError(
        f"message {message_id} never reached {status!r} (it is "
        f"{msg.status if msg else None!r}; jobs {job_counts})\n{worker_logs}"
    )


async def test_sigkill_mid_job_sends_once(url: str, tmp_path: Path, carrier: Carrier) -> None:
    config = tmp_path / "gateway.toml"
    pause = tmp_path / "pause"
    write_config(config, url, tmp_path / "blobs", carrier.url, pause)
    settings = load_settings(config)
    from gateway.clock import SystemClock

    rt = await open_runtime(settings, clock=SystemClock(), start_connectors=False)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        seed = await seed_directory(rt, FrozenClock(rt.clock.now()))
        principal = Principal(seed.team.id, None, "test")
        body = {"channel": "sms", "from": MOBILE_A, "to": CONTACT, "text": "once"}
        msg = (await submit(rt, principal, convert(SendRequest, body))).message

        pause.touch()  # the first worker leases the job and hangs inside send()
        workers.append(start_worker(config))
        await wait_status(rt, msg.id, "sending", tmp_path)
        # While it lives, its heartbeat renews the lease: no take-over (by itself either).
        [held] = await rt.store.list_jobs("leased", "send", 1)
        await asyncio.sleep(3 * settings.job_visibility_seconds)
        [still] = await rt.store.list_jobs("leased", "send", 1)
        assert (still.token, still.attempts) == (held.token, 1)
        assert still.lease_until is not None and held.lease_until is not None
        assert still.lease_until > held.lease_until
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(timeout=10)
        assert carrier.received == []
        pause.unlink()

        workers.append(start_worker(config))
        await wait_status(rt, msg.id, "sent", tmp_path)
        assert [r["ref"] for r in carrier.received] == [msg.id]
        after = await rt.store.get_message(msg.id)
        assert after is not None and after.carrier_id == "c-1"
        assert await rt.store.job_counts() == {"ready": 0, "leased": 0, "dead": 0}
        # Nothing else arrives later: the job is done for good.
        await asyncio.sleep(2)
        assert len(carrier.received) == 1
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        await rt.aclose()
    # The surviving worker stopped cleanly on SIGTERM.
    assert workers[1].returncode == 0, (tmp_path / "worker-1.log").read_text()


async def test_several_workers_send_each_message_once(
    url: str, tmp_path: Path, carrier: Carrier
) -> None:
    config = tmp_path / "gateway.toml"
    write_config(config, url, tmp_path / "blobs", carrier.url, tmp_path / "no-pause")
    settings = load_settings(config)
    from gateway.clock import SystemClock

    rt = await open_runtime(settings, clock=SystemClock(), start_connectors=False)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        seed = await seed_directory(rt, FrozenClock(rt.clock.now()))
        principal = Principal(seed.team.id, None, "test")
        ids = []
        for i in range(40):
            # Two contacts: 20 per hour to one number is the policy's flood limit.
            to = CONTACT if i % 2 else "+4917612345679"
            body = {"channel": "sms", "from": MOBILE_A, "to": to, "text": f"n{i}"}
            ids.append((await submit(rt, principal, convert(SendRequest, body))).message.id)
        workers = [start_worker(config) for _ in range(3)]
        for message_id in ids:
            await wait_status(rt, message_id, "sent", tmp_path)
        assert sorted(str(r["ref"]) for r in carrier.received) == sorted(ids)
    finally:
        for proc in workers:
            proc.send_signal(signal.SIGTERM)
        for proc in workers:
            proc.wait(timeout=10)
        await rt.aclose()
