"""Webhook deliveries per second to a local receiver, and the time from event to delivery.

    python -m bench.webhooks [--backends sqlite,redis] [--rate 1000] [--seconds 10]
                             [--backlog 20000] [--endpoints 1] [--conversations 1000]

Three processes per backend: a real ``gateway worker`` (the delivery engine as it runs in
production, default ``[webhooks]`` settings but ``allow_private_targets``), a receiver (a
bare asyncio HTTP/1.1 server that answers 204 and records each delivery's ``webhook-id``
and the event time in its payload), and this process, which appends events to the same
store through the store API (``append_events``), as the API and the inbound path do.

* **steady**: events at ``--rate`` per second for ``--seconds``, spread over
  ``--conversations`` conversations (each is an ordered lane); latency is from the event's
  ``created_at`` (set when it is appended; the payload's ``timestamp``) to its receipt,
  both on this machine's clock, so it includes the append's commit, the fan-out's poll, the
  fan-out itself, signing, the POST and the receiver. Deliveries per second: what arrived
  in the window.
* **backlog**: ``--backlog`` events appended as fast as possible; deliveries per second
  from the first append to the last receipt: the engine's capacity, fan-out included.

Every delivery must arrive exactly once (``DUPLICATES`` and ``MISSING`` are printed). Goals
(issue 5): >= 1,000 deliveries/s, p99 < 100 ms. Bounded: each phase waits at most
``--drain`` seconds for the last deliveries.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench._common import REPO, free_port, pin, stop_process, wait_port

SECRET = "whsec_" + base64.b64encode(b"bench-secret-bench-secret-bench!").decode()
TEAM = "team_bench"


# -- the receiver (its own process) -------------------------------------------------------
class _Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.ids: set[str] = set()
        self.count = 0
        self.latencies: list[float] = []
        self.first: float | None = None
        self.last: float | None = None
        self.bad = 0

    def view(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def q(p: float) -> float | None:
            return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else None

        return {
            "count": self.count,
            "unique": len(self.ids),
            "first": self.first,
            "last": self.last,
            "p50": q(0.5),
            "p99": q(0.99),
            "max": lat[-1] if lat else None,
            "bad_signatures": self.bad,
        }


class _Receiver(asyncio.Protocol):
    stats = _Stats()
    key = base64.b64decode(SECRET.removeprefix("whsec_"))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buf[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            size = int(headers.get("content-length", "0"))
            if len(self.buf) < end + 4 + size:
                return
            body = self.buf[end + 4 : end + 4 + size]
            self.buf = self.buf[end + 4 + size :]
            path = lines[0].split(" ")[1]
            if path.startswith("/stats"):
                if "reset" in path:
                    self.stats.reset()
                out = json.dumps(self.stats.view()).encode()
                self.t.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(out), out)
                )
                continue
            self._record(headers, body)
            self.t.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

    def _record(self, headers: dict[str, str], body: bytes) -> None:
        now = time.time()
        s = self.stats
        ident = headers.get("webhook-id", "")
        s.count += 1
        s.ids.add(ident)
        s.first = s.first or now
        s.last = now
        sent = json.loads(body)["timestamp"]
        s.latencies.append((now - datetime.fromisoformat(sent).timestamp()) * 1000)
        if s.count % 100 == 1:  # check a sample of the signatures (HMAC by hand)
            signed = f"{ident}.{headers.get('webhook-timestamp')}.".encode() + body
            mac = base64.b64encode(hmac.new(self.key, signed, hashlib.sha256).digest()).decode()
            if f"v1,{mac}" not in headers.get("webhook-signature", "").split(" "):
                s.bad += 1


async def _receive(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(_Receiver, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


def _stats(port: int, reset: bool = False) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/stats{'?reset=1' if reset else ''}"
    with urllib.request.urlopen(
        urllib.request.Request(url, method="POST", data=b""), timeout=10
    ) as r:
        data: dict[str, Any] = json.loads(r.read())
        return data


# -- the run -------------------------------------------------------------------------------
@dataclass
class Phase:
    """One measured phase."""

    name: str
    events: int
    delivered: int
    unique: int
    seconds: float
    p50: float | None
    p99: float | None
    bad: int
    gateway_cpu: float

    @property
    def per_second(self) -> float:
        return self.unique / self.seconds if self.seconds > 0 else 0.0


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _event_data(n: int, conversations: int) -> dict[str, Any]:
    return {
        "id": f"msg_BENCH{n:021d}",
        "channel": "sms",
        "direction": "inbound",
        "from": "+4917612345678",
        "to": "+4915112345671",
        "text": "Hallo, ist der Termin morgen um 10 Uhr noch aktuell? Viele Grüße",
        "attachments": [],
        "status": "received",
        "units": 0,
        "segments": 1,
        "encoding": "gsm7",
        "conversation_id": f"conv_BENCH{n % conversations:020d}",
        "member_id": "mem_BENCH",
    }


async def _append(store: Any, start: int, count: int, conversations: int) -> None:
    from gateway.ids import new_id
    from gateway.models import Event, utcnow

    now = utcnow()
    events = [
        Event(new_id("evt"), "message.received", TEAM, _event_data(n, conversations), now)
        for n in range(start, start + count)
    ]
    await store.append_events(events)


async def _steady(store: Any, rate: float, seconds: float, conversations: int, base: int) -> int:
    """Append events at ``rate`` per second for ``seconds``; the number appended."""
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate) - sent
        if due > 0:
            await _append(store, base + sent, due, conversations)
            sent += due
        await asyncio.sleep(0.005)
    return sent


async def _wait(port: int, expected: int, drain: float) -> dict[str, Any]:
    deadline = time.monotonic() + drain
    while True:
        stats = await asyncio.to_thread(_stats, port)
        if stats["unique"] >= expected or time.monotonic() > deadline:
            return stats
        await asyncio.sleep(0.1)


@contextlib.contextmanager
def _process(cmd: list[str], log: Path, cpu: int | None) -> Iterator[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("GATEWAY_STORE", None)
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT, preexec_fn=pin(cpu)
        )
    try:
        yield proc
    finally:
        stop_process(proc)


async def _run_backend(args: argparse.Namespace, store_url: str, work: Path) -> list[Phase]:
    from gateway.ids import new_id
    from gateway.models import utcnow
    from gateway.store import open_store
    from webhooks.models import WebhookEndpoint
    from webhooks.storage import WEBHOOK_STORE

    rport = free_port()
    config = work / f"gateway-{store_url.split(':')[0]}.toml"
    config.write_text(
        f'[gateway]\nstore = "{store_url}"\nblobs = "{work / "blobs"}"\nworkers = 1\n\n'
        "[webhooks]\nallow_private_targets = true\n"
        + (f"concurrency = {args.concurrency}\n" if args.concurrency else "")
    )
    store = await open_store(store_url)
    phases = []
    try:
        hooks = await WEBHOOK_STORE.open(store)
        now = utcnow()
        for i in range(args.endpoints):
            endpoint = WebhookEndpoint(
                new_id("whep"), TEAM, f"http://127.0.0.1:{rport}/in/{i}", [], True, SECRET, now, now
            )
            await hooks.create_endpoint(endpoint, 100)
        receiver_cmd = [sys.executable, "-m", "bench.webhooks", "--receive", "--port", str(rport)]
        worker_cmd = [sys.executable, "-m", "gateway.cli", "worker", "--config", str(config)]
        with (
            _process(receiver_cmd, work / "receiver.log", args.client_cpu) as receiver,
            _process(worker_cmd, work / f"worker-{config.stem}.log", args.server_cpu) as worker,
        ):
            await asyncio.to_thread(wait_port, rport, receiver)
            n = 0
            await _append(store, n, 200, args.conversations)  # warm-up
            n += 200
            warm = await _wait(rport, 200 * args.endpoints, args.drain)
            if warm["unique"] < 200 * args.endpoints:
                log = (work / f"worker-{config.stem}.log").read_text()[-3000:]
                raise RuntimeError(f"the warm-up did not arrive ({warm}); worker log:\n{log}")
            await asyncio.to_thread(_stats, rport, True)
            cpu0, t0 = _cpu(worker.pid), time.time()
            sent = await _steady(store, args.rate, args.seconds, args.conversations, n)
            n += sent
            got = await _wait(rport, sent * args.endpoints, args.drain)
            phases.append(
                Phase(
                    f"steady@{args.rate:g}/s",
                    sent,
                    got["count"],
                    got["unique"],
                    (got["last"] or t0) - t0,
                    got["p50"],
                    got["p99"],
                    got["bad_signatures"],
                    _cpu(worker.pid) - cpu0,
                )
            )
            await asyncio.to_thread(_stats, rport, True)
            cpu0, t0 = _cpu(worker.pid), time.time()
            for start in range(0, args.backlog, 1000):
                await _append(store, n + start, min(1000, args.backlog - start), args.conversations)
            n += args.backlog
            got = await _wait(rport, args.backlog * args.endpoints, args.drain)
            phases.append(
                Phase(
                    "backlog",
                    args.backlog,
                    got["count"],
                    got["unique"],
                    (got["last"] or t0) - t0,
                    got["p50"],
                    got["p99"],
                    got["bad_signatures"],
                    _cpu(worker.pid) - cpu0,
                )
            )
    finally:
        await store.aclose()
    return phases


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _report(backend: str, phases: list[Phase], endpoints: int) -> None:
    print(
        f"{'run':<20}{'events':>8}{'received':>10}{'seconds':>9}{'deliv/s':>10}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'gw cpu s':>10}"
    )
    for p in phases:
        print(
            f"{backend + ' ' + p.name:<20}{p.events:>8}{p.delivered:>10}{p.seconds:>9.2f}"
            f"{p.per_second:>10,.0f}{_ms(p.p50):>9}{_ms(p.p99):>9}{p.gateway_cpu:>10.1f}"
        )
    steady, backlog = phases
    for p in phases:
        expected = p.events * endpoints
        print(
            f"CHECK {backend} {p.name}: {p.unique}/{expected} delivered, "
            f"DUPLICATES {p.delivered - p.unique}, MISSING {expected - p.unique}, "
            f"bad signatures {p.bad}"
        )
    rate = backlog.per_second
    p99 = steady.p99 if steady.p99 is not None else float("inf")
    print(
        f"RATIO {backend}: throughput {rate:,.0f}/1,000 = {rate / 1000:.2f} (goal >= 1) "
        f"{'GOAL MET' if rate >= 1000 else 'GOAL MISSED'}; p99 at {steady.name} "
        f"{p99:.1f}/100 ms = {p99 / 100:.2f} (goal < 1) "
        f"{'GOAL MET' if p99 < 100 else 'GOAL MISSED'}"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--receive``, be its receiver)."""
    p = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__.split("\n")[0])
    p.add_argument("--backends", default="sqlite,redis", help="comma-separated: sqlite,redis")
    p.add_argument("--rate", type=float, default=1000.0, help="events per second (steady)")
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of steady load")
    p.add_argument("--backlog", type=int, default=20000, help="events appended at once")
    p.add_argument("--endpoints", type=int, default=1, help="endpoints (each gets every event)")
    p.add_argument("--conversations", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=0, help="[webhooks] concurrency (0: default)")
    p.add_argument("--drain", type=float, default=120.0, help="max seconds to wait per phase")
    p.add_argument("--pin", action="store_true", help="worker on CPU 0, the rest on CPU 1")
    p.add_argument("--receive", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.receive:
        asyncio.run(_receive(args.port))
        return 0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or set(backends) - {"sqlite", "redis"}:
        p.error("--backends: choose from sqlite, redis")
    pinning = args.pin and (os.cpu_count() or 1) >= 2
    args.server_cpu, args.client_cpu = (0, 1) if pinning else (None, None)
    print(
        f"bench.webhooks: nproc {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} "
        f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}; rate {args.rate:g}/s for "
        f"{args.seconds:g} s, backlog {args.backlog}, {args.endpoints} endpoint(s), "
        f"{args.conversations} conversations; pinning {'on' if pinning else 'off'}",
        flush=True,
    )
    work = Path(tempfile.mkdtemp(prefix="gw-bench-webhooks-"))
    try:
        with contextlib.ExitStack() as stack:
            for backend in backends:
                if backend == "sqlite":
                    url = f"sqlite:///{work}/gateway.db"
                else:
                    from bench.ingest import redis_server

                    base = stack.enter_context(redis_server(work, args.client_cpu))
                    sep = "&" if "?" in base else "?"
                    url = f"{base}{sep}prefix=whbench{os.getpid()}"
                phases = asyncio.run(_run_backend(args, url, work))
                _report(backend, phases, args.endpoints)
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
