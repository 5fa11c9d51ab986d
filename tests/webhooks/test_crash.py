"""Real ``gateway worker`` processes on both stores: SIGKILL with deliveries in flight and
pending, start again, and every event arrives (at least once, with its webhook-id); several
workers on one store deliver each event once."""

from __future__ import annotations

import asyncio
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
from standardwebhooks import Webhook

from gateway.clock import SystemClock
from gateway.config import load_settings
from gateway.models import Event
from gateway.process import open_runtime
from gateway.runtime import Runtime
from tests.conftest import free_port
from tests.webhooks.conftest import add_endpoint, add_events, hooks
from tests.webhooks.receiver import Received, Receiver
from webhooks.delivery import delivery_id
from webhooks.models import WebhookEndpoint

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
TEAM = "team_crash"


class Hanging:
    """A receiver that reads each request and never answers (until closed)."""

    def __init__(self, port: int) -> None:
        self.release = threading.Event()
        self.count = 0
        hanging = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                hanging.count += 1
                hanging.release.wait(30)
                self.close_connection = True

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def write_config(path: Path, url: str) -> None:
    path.write_text(
        f"""
[gateway]
store = "{url}"
blobs = "{path.parent / "blobs"}"
poll_interval = 0.05
workers = 2

[webhooks]
allow_private_targets = true
retry_schedule = [0{", 1" * 29}]
timeout = 1
lease_seconds = 2
poll_interval = 0.02
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


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in workers:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def logs(where: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()}" for p in sorted(where.glob("*.log")))


async def wait_for(what: str, check: object, where: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s\n{logs(where)}")


@pytest.fixture
async def real_rt(url: str, tmp_path: Path) -> Iterator[Runtime]:
    config = tmp_path / "gateway.toml"
    write_config(config, url)
    rt = await open_runtime(load_settings(config), clock=SystemClock(), start_connectors=False)
    try:
        yield rt  # type: ignore[misc]
    finally:
        await rt.aclose()


def events_of(count: int, start: int = 0) -> list[tuple[str, dict[str, object]]]:
    """Message events in 4 conversations, and a quota event now and then."""
    out: list[tuple[str, dict[str, object]]] = []
    for n in range(start, start + count):
        if n % 7 == 3:
            out.append(("quota.threshold", {"member_id": "mem_1", "threshold": n}))
        else:
            out.append(("message.received", {"conversation_id": f"conv_{n % 4}", "n": n}))
    return out


def check_arrivals(
    got: list[Received], events: list[Event], endpoints: list[WebhookEndpoint]
) -> None:
    """Every (event, endpoint) arrived, under its own webhook-id, signed, and the first
    arrivals of each conversation at each endpoint are in log order."""
    expected = {delivery_id(ev.id, ep.id): (ev, ep) for ev in events for ep in endpoints}
    assert {r.headers["webhook-id"] for r in got} == set(expected)
    firsts: dict[str, Event] = {}
    order: dict[tuple[str, str], list[int]] = {}
    for r in got:
        ev, ep = expected[r.headers["webhook-id"]]
        assert Webhook(ep.secret).verify(r.body, r.headers)["data"] == ev.data
        if r.headers["webhook-id"] in firsts:
            continue
        firsts[r.headers["webhook-id"]] = ev
        conv = ev.data.get("conversation_id") or f"member:{ev.data.get('member_id')}"
        order.setdefault((ep.id, str(conv)), []).append(ev.seq)
    for seqs in order.values():
        assert seqs == sorted(seqs)


async def test_sigkill_with_deliveries_pending(real_rt: Runtime, tmp_path: Path) -> None:
    rt = real_rt
    config = tmp_path / "gateway.toml"
    port = free_port()
    hanging = Hanging(port)
    receiver: Receiver | None = None
    workers: list[subprocess.Popen[bytes]] = []
    try:
        endpoints = [
            await add_endpoint(rt, TEAM, f"http://127.0.0.1:{port}/a"),
            await add_endpoint(rt, TEAM, f"http://127.0.0.1:{port}/b", ["message.received"]),
        ]
        before = await add_events(rt, TEAM, *events_of(20))
        workers.append(start_worker(config))

        async def attempted() -> bool:
            page = await hooks(rt).list_deliveries(endpoints[0].id, None, None, 100)
            started = [d for d in page.items if d.attempts >= 1]
            return hanging.count >= 4 and len(started) >= 4

        await wait_for("attempts in flight", attempted, tmp_path)
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(timeout=10)
        after = await add_events(rt, TEAM, *events_of(10, start=20))  # while nobody runs
        hanging.close()
        receiver = Receiver(port)
        workers.append(start_worker(config))
        everything = before + after
        wanted = {delivery_id(ev.id, ep.id) for ev in everything for ep in endpoints
                  if not ep.events or ev.type in ep.events}  # fmt: skip

        async def arrived() -> bool:
            assert receiver is not None
            return wanted <= {r.headers["webhook-id"] for r in receiver.received}

        await wait_for("every event at the receiver", arrived, tmp_path)
        a_events = everything
        b_events = [ev for ev in everything if ev.type == "message.received"]
        check_arrivals([r for r in receiver.received if r.path == "/a"], a_events, endpoints[:1])
        check_arrivals([r for r in receiver.received if r.path == "/b"], b_events, endpoints[1:])
        for ep in endpoints:
            page = await hooks(rt).list_deliveries(ep.id, "succeeded", None, 100)
            assert len(page.items) == (30 if ep is endpoints[0] else len(b_events))
    finally:
        stop(workers)
        hanging.close()
        if receiver is not None:
            receiver.close()
    assert workers[1].returncode == 0, logs(tmp_path)


async def test_several_workers_deliver_each_event_once(real_rt: Runtime, tmp_path: Path) -> None:
    rt = real_rt
    config = tmp_path / "gateway.toml"
    receiver = Receiver()
    workers: list[subprocess.Popen[bytes]] = []
    try:
        endpoints = [await add_endpoint(rt, TEAM, f"{receiver.url}/{i}") for i in range(2)]
        workers = [start_worker(config) for _ in range(3)]
        events: list[Event] = []
        for batch in range(6):  # events keep coming while the workers run
            events += await add_events(rt, TEAM, *events_of(10, start=10 * batch))
            await asyncio.sleep(0.1)
        wanted = {delivery_id(ev.id, ep.id) for ev in events for ep in endpoints}

        async def arrived() -> bool:
            return wanted <= {r.headers["webhook-id"] for r in receiver.received}

        await wait_for("every event at the receiver", arrived, tmp_path)
        await asyncio.sleep(1)  # nothing more comes
        ids = [r.headers["webhook-id"] for r in receiver.received]
        assert sorted(ids) == sorted(wanted)  # each exactly once
        check_arrivals(list(receiver.received), events, endpoints)
    finally:
        stop(workers)
        receiver.close()
    assert [w.returncode for w in workers] == [0, 0, 0], logs(tmp_path)
