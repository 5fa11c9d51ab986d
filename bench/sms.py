"""SMS end-to-end benchmark: ``POST /v1/messages`` → submit_sm → receipt → ``delivered``.

Three processes on loopback, each on a free port:

- the **carrier**: an SMSC that answers every submit_sm and sends a delivery receipt after
  ``--receipt-delay`` seconds: the gateway's own simulator (``python -m
  connectors.smpp.simulator``, the default) or the independent node-smpp SMSC of the tests
  (``--carrier node``);
- the **gateway**: ONE process (``python -m bench.sms --serve``) with the REST API, the job
  workers and the ``smpp`` connector, on a fresh SQLite file, under uvicorn; it seeds a
  business team, one SMS member and a member API key before it listens;
- the **client** (this process): an asyncio HTTP/1.1 keep-alive client on raw sockets that
  POSTs SMS (rotating over 1000 recipients) for ``--seconds``, as fast as ``--connections``
  allow or paced at ``--rate`` per second, and notes when it sent each request and the id
  the 202 answer gave.

Once the load stops, the client waits (bounded by ``--drain``) until no message is left
accepted, queued, sending or sent, stops the gateway, and reads the store's event log:
the time of every message's ``delivered`` event. From that it prints messages per second
accepted and delivered while the load ran (after ``--warmup``), the end-to-end rate, and
the p50/p99 latency from POST to 202 and from POST to ``delivered``, with the ratio of
the delivered rate to the goal (1,000 messages per second). With two or more CPUs, the
gateway runs on CPU 0, the client and the carrier on CPU 1.

Usage::

    .venv/bin/python -m bench.sms [--seconds 10] [--connections 32] [--rate 0]
                                  [--carrier simulator|node] [--receipt-delay 0.1]
                                  [--binds 2] [--window 64] [--workers 128] [--profile DIR]

It is a benchmark, not a test: it exits 0 whether or not the goal is met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if not __package__:  # run as a script (bench/sms.py): make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import (
    REPO,
    SENDER,
    find_py_spy,
    free_port,
    hot_spots,
    pin,
    seed_sender,
    start_py_spy,
    stop_process,
    uvicorn_choices,
    wait_port,
)

GOAL = 1000.0  # messages per second delivered end to end
PATH = "/v1/messages"
TEXT = "Ihr Code lautet 481516. Er gilt 10 Minuten. Bitte nicht weitergeben."
CONTACTS = 1000
BODIES = [
    json.dumps(
        {"channel": "sms", "from": SENDER, "to": f"+49151{12340000 + i}", "text": TEXT},
        separators=(",", ":"),
    ).encode()
    for i in range(CONTACTS)
]
SYSTEM_ID, PASSWORD = "bench", "secret"
SERVER_CPU, CLIENT_CPU = 0, 1
UNFINISHED = ("accepted", "queued", "sending", "sent")


# ---------------------------------------------------------------------------------------
# The gateway process (``--serve``)
# ---------------------------------------------------------------------------------------
async def _serve(args: argparse.Namespace) -> None:
    import connectors.smpp.connector  # noqa: F401  (registers kind "smpp")
    from gateway.api.app import create_app
    from gateway.config import parse_settings
    from gateway.process import open_runtime
    from gateway.serving import serve_until_signal

    options = {
        "host": "127.0.0.1",
        "port": args.smsc_port,
        "system_id": SYSTEM_ID,
        "password": PASSWORD,
        "binds": args.binds,
        "window": args.window,
        "rate": args.submit_rate,
    }
    settings = parse_settings(
        {
            "gateway": {"store": args.store, "blobs": args.blobs, "workers": args.workers},
            "connectors": [{"id": "smsc", "kind": "smpp", "channels": ["sms"], **options}],
            # One sender to 1000 recipients at full speed: the flood limits (per member and
            # per destination) would refuse most of it, so they are off.
            "policy": {"member_limit": False, "destination_limit": False},
        }
    )
    rt = await open_runtime(settings)
    try:
        await rt.wait_started(30)
        info = await seed_sender(rt)
        app = create_app(rt, workers=True)
        tmp = f"{args.info}.tmp"
        Path(tmp).write_text(json.dumps({**info, "pid": os.getpid()}), encoding="utf-8")
        os.replace(tmp, args.info)
        await serve_until_signal(
            app,
            "127.0.0.1",
            args.port,
            loop=args.loop,
            http=args.http,
            access_log=False,
            log_level="warning",
        )
    finally:
        await rt.aclose()


def serve(args: argparse.Namespace) -> None:
    """``--serve``: the gateway in this process until SIGTERM."""
    import uvicorn

    factory = uvicorn.Config("bench.sms:serve", loop=args.loop).get_loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve(args))


# ---------------------------------------------------------------------------------------
# The client: a paced or closed-loop keep-alive load that remembers every message
# ---------------------------------------------------------------------------------------
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)")
_ID = re.compile(rb'"id":"(msg_[^"]+)"')


@dataclass
class Load:
    """What the client saw: per message id, when its POST was written and answered."""

    start: float = 0.0  # wall clock (time.time()) when the load began
    end: float = 0.0
    posted: dict[str, tuple[float, float]] = field(default_factory=dict)
    other: dict[int, int] = field(default_factory=dict)  # non-202 answers by status
    errors: int = 0


class _Client:
    def __init__(self, port: int, key: str, seconds: float, rate: float) -> None:
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {key}\r\n"
        )
        self.requests = [(head + f"Content-Length: {len(b)}\r\n\r\n").encode() + b for b in BODIES]
        self.rate = rate
        self.seconds = seconds
        self.sent = 0
        self.load = Load()
        self.deadline = 0.0

    def due(self) -> float:
        """When the next request may go (paced), as time.time()."""
        return self.load.start + self.sent / self.rate if self.rate > 0 else 0.0


class _Conn(asyncio.Protocol):
    def __init__(self, client: _Client, done: asyncio.Future[None]) -> None:
        self.c = client
        self.done = done
        self.buf = b""
        self.need: int | None = None
        self.t0 = 0.0
        self.transport: asyncio.Transport | None = None
        self.waiting = False
        self.status = 0
        self.head_end = 0
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._next()

    def _next(self) -> None:
        assert self.transport is not None
        now = time.time()
        if now >= self.c.deadline:
            self.transport.close()
            return
        due = self.c.due()
        if due > now:
            self.c.sent += 1  # reserve the slot
            self.loop.call_later(due - now, self._write)
            return
        self.c.sent += 1
        self._write()

    def _write(self) -> None:
        assert self.transport is not None
        if self.transport.is_closing():
            return
        if time.time() >= self.c.deadline:  # a paced slot that fell past the end
            self.transport.close()
            return
        self.t0 = time.time()
        self.waiting = True
        self.transport.write(self.c.requests[self.c.sent % CONTACTS])

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.need is None:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = self.buf[:end].lower()
                self.status = int(head[9:12])
                match = _CONTENT_LENGTH.search(head)
                self.head_end = end + 4
                self.need = end + 4 + (int(match.group(1)) if match else 0)
            if len(self.buf) < self.need:
                return
            body = self.buf[self.head_end : self.need]
            self.buf, self.need = self.buf[self.need :], None
            self.waiting = False
            load = self.c.load
            if self.status == 202 and (m := _ID.search(body)):
                load.posted[m.group(1).decode()] = (self.t0, time.time())
            else:
                load.other[self.status] = load.other.get(self.status, 0) + 1
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiting:
            self.c.load.errors += 1
        if not self.done.done():
            self.done.set_result(None)


async def _load(port: int, key: str, seconds: float, connections: int, rate: float) -> Load:
    loop = asyncio.get_running_loop()
    client = _Client(port, key, seconds, rate)
    client.load.start = time.time()
    client.deadline = client.load.start + seconds
    dones = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        try:
            await loop.create_connection(functools.partial(_Conn, client, done), "127.0.0.1", port)
        except OSError:
            client.load.errors += 1
            continue
        dones.append(done)
    # Each connection stops at the deadline and closes after its last answer: nothing is
    # left in flight, so every 202 is counted.
    await asyncio.wait_for(asyncio.gather(*dones), seconds + 60)
    client.load.end = time.time()
    return client.load


def run_load(port: int, key: str, seconds: float, connections: int, rate: float) -> Load:
    """One load run in this process."""
    return asyncio.run(_load(port, key, seconds, connections, rate))


# ---------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def carrier(kind: str, work: Path, delay: float, cpu: int | None) -> Iterator[tuple[int, int]]:
    """The SMSC on a free port (the simulator, or the node-smpp peer of the tests)."""
    port = free_port()
    log = work / f"carrier-{kind}.log"
    if kind == "simulator":
        cmd = [
            sys.executable, "-m", "connectors.smpp.simulator", "--port", str(port),
            "--system-id", SYSTEM_ID, "--password", PASSWORD, "--receipt-delay", str(delay),
        ]  # fmt: skip
    else:
        node = shutil.which("node")
        script = REPO / "tests" / "connectors" / "smpp_peers" / "node" / "smsc.js"
        if node is None or not (script.parent / "node_modules").exists():
            raise SystemExit("--carrier node: needs node and `npm ci` (run `make test` once)")
        cmd = [
            node, str(script), "--port", str(port), "--system-id", SYSTEM_ID,
            "--password", PASSWORD, "--receipt-delay-ms", str(int(delay * 1000)), "--quiet",
        ]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            stdin=subprocess.PIPE,  # the node peer exits when its stdin closes
            stdout=fh,
            stderr=subprocess.STDOUT,
            preexec_fn=pin(cpu),
        )
    try:
        wait_port(port, proc)
        yield port, proc.pid
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        stop_process(proc)


@dataclass
class Served:
    """The gateway process."""

    proc: subprocess.Popen[bytes]
    port: int
    info: dict[str, Any]
    log: Path


@contextlib.contextmanager
def gateway(args: argparse.Namespace, work: Path, store: str, smsc_port: int) -> Iterator[Served]:
    """``python -m bench.sms --serve`` on a free port; stopped (SIGTERM) at the end."""
    port = free_port()
    info = work / "gateway.json"
    log = work / "gateway.log"
    loop, http = uvicorn_choices()
    cmd = [
        sys.executable, "-m", "bench.sms", "--serve", "--port", str(port), "--store", store,
        "--blobs", str(work / "blobs"), "--smsc-port", str(smsc_port), "--info", str(info),
        "--loop", loop, "--http", http, "--binds", str(args.binds), "--window",
        str(args.window), "--workers", str(args.workers), "--submit-rate",
        str(args.submit_rate),
    ]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, preexec_fn=pin(args.server_cpu)
        )
    try:
        deadline = time.monotonic() + 60
        while not info.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the gateway did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.05)
        wait_port(port, proc)
        yield Served(proc, port, json.loads(info.read_text()), log)
    finally:
        stop_process(proc)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def api(port: int, key: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
    """One request with http.client; the status and the decoded JSON answer."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        conn.request("POST" if body is not None else "GET", path, body, headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


def unfinished(port: int, key: str) -> dict[str, int]:
    """Which not-yet-final statuses still have messages (1 = at least one)."""
    left = {}
    for status in UNFINISHED:
        code, page = api(port, key, f"{PATH}?status={status}&limit=1")
        if code != 200:
            raise RuntimeError(f"GET {PATH}?status={status} answered {code}: {page}")
        if page["data"]:
            left[status] = 1
    return left


def wait_drained(port: int, key: str, timeout: float) -> tuple[float, dict[str, int]]:
    """Poll until no message is left unfinished (or ``timeout``); seconds waited, leftovers."""
    t0 = time.monotonic()
    while True:
        left = unfinished(port, key)
        waited = time.monotonic() - t0
        if not left or waited > timeout:
            return waited, left
        time.sleep(0.25)


async def _outcomes(store_url: str) -> tuple[dict[str, float], dict[str, str]]:
    """From the event log: when each message was delivered (epoch seconds), and every
    message's last status."""
    from gateway.events import MESSAGE_STATUS
    from gateway.store import open_store

    store = await open_store(store_url)
    delivered: dict[str, float] = {}
    last: dict[str, str] = {}
    try:
        after = 0
        while True:
            batch = await store.list_events(after, 5000)
            if not batch:
                break
            for ev in batch:
                after = ev.seq
                if ev.type != MESSAGE_STATUS:
                    continue
                mid, status = ev.data["id"], ev.data["status"]
                last[mid] = status
                if status == "delivered":
                    delivered.setdefault(mid, ev.created_at.timestamp())
    finally:
        await store.aclose()
    return delivered, last


def pct(values: list[float], p: float) -> float | None:
    """The p-quantile of sorted ``values`` (nearest rank), or None."""
    if not values:
        return None
    return values[min(len(values) - 1, int(p * len(values)))]


def ms(value: float | None) -> str:
    """Seconds as milliseconds for the table."""
    return f"{value * 1000:,.1f}" if value is not None else "-"


def report(args: argparse.Namespace, load: Load, delivered: dict[str, float],
           last: dict[str, str], drain: float, left: dict[str, int]) -> None:  # fmt: skip
    """Print the figures and the ratio against the goal."""
    t_measure = load.start + args.warmup
    span = max(1e-9, load.end - t_measure)
    measured = {mid: t for mid, t in load.posted.items() if t[0] >= t_measure}
    accept_lat = sorted(t1 - t0 for t0, t1 in measured.values())
    done = {mid: delivered[mid] - t[0] for mid, t in measured.items() if mid in delivered}
    deliver_lat = sorted(done.values())
    in_window = sum(1 for t in delivered.values() if t_measure <= t <= load.end)
    total = len(load.posted)
    all_done = [delivered[m] for m in load.posted if m in delivered]
    e2e = (
        len(all_done) / (max(all_done) - min(t[0] for t in load.posted.values()))
        if all_done
        else 0.0
    )
    counts: dict[str, int] = {}
    for mid in load.posted:
        counts[last.get(mid, "accepted")] = counts.get(last.get(mid, "accepted"), 0) + 1
    accepted_rate = len(measured) / span
    delivered_rate = in_window / span
    print()
    print(f"measured window: {span:.2f} s (after {args.warmup} s warm-up); drain {drain:.1f} s")
    print(f"{'':28} {'count':>8} {'msg/s':>9} {'p50 ms':>9} {'p99 ms':>9}")
    print(
        f"{'POST -> 202 (accepted)':28} {len(measured):>8} {accepted_rate:>9,.0f} "
        f"{ms(pct(accept_lat, 0.5)):>9} {ms(pct(accept_lat, 0.99)):>9}"
    )
    print(
        f"{'POST -> delivered':28} {len(done):>8} {delivered_rate:>9,.0f} "
        f"{ms(pct(deliver_lat, 0.5)):>9} {ms(pct(deliver_lat, 0.99)):>9}"
    )
    print(f"end to end, whole run: {len(all_done)} of {total} delivered, {e2e:,.0f} msg/s")
    print("final statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if load.other or load.errors:
        print(f"!! other answers {load.other}, socket errors {load.errors}")
    if left:
        print(f"!! still unfinished after the {args.drain} s drain: {sorted(left)}")
    ratio = delivered_rate / GOAL
    verdict = "GOAL MET" if delivered_rate >= GOAL else "GOAL MISSED"
    print(
        f"RATIO delivered/s vs goal: {ratio:.3f} ({delivered_rate:,.0f} / {GOAL:,.0f} msg/s) "
        f"{verdict}"
    )
    exact = len(all_done) == total and counts.get("delivered", 0) == total
    print(
        f"DELIVERED {len(all_done)} of {total} accepted messages -> "
        + ("ALL" if exact else "MISSING")
    )


def header(args: argparse.Namespace) -> None:
    """What is measured, and how."""
    import starlette
    import uvicorn

    loop, http = uvicorn_choices()
    pinned = (
        f"gateway on CPU {args.server_cpu}, client and carrier on CPU {args.client_cpu}"
        if args.server_cpu is not None
        else "no CPU pinning"
    )
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = float("nan")
    pace = f"paced at {args.rate:,.0f}/s" if args.rate > 0 else "as fast as answered"
    print("SMS benchmark: POST /v1/messages -> submit_sm -> receipt -> delivered")
    print(
        f"  python {platform.python_version()}, uvicorn {uvicorn.__version__} (loop={loop}, "
        f"http={http}), starlette {starlette.__version__}; {os.cpu_count()} CPUs ({pinned}); "
        f"load average {load1:.2f}"
    )
    print(
        f"  gateway: one process, SQLite, {args.workers} job slots, smpp connector with "
        f"{args.binds} binds x window {args.window}, submit rate "
        f"{args.submit_rate or 'unlimited'}"
    )
    print(
        f"  carrier: {args.carrier}, receipt after {args.receipt_delay} s; client: "
        f"{args.connections} keep-alive connections, {pace}, {args.seconds} s"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--serve``, be its gateway)."""
    p = argparse.ArgumentParser(prog="python -m bench.sms", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=10.0, help="seconds of load")
    p.add_argument("--warmup", type=float, default=None, help="seconds not measured (default 1)")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--rate", type=float, default=0.0, help="POSTs per second; 0 = max")
    p.add_argument("--carrier", choices=["simulator", "node"], default="simulator")
    p.add_argument("--receipt-delay", type=float, default=0.1, help="seconds")
    p.add_argument("--binds", type=int, default=2)
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--workers", type=int, default=128, help="jobs run at once in the gateway")
    p.add_argument("--submit-rate", type=float, default=0.0, help="connector rate; 0 = none")
    p.add_argument("--drain", type=float, default=60.0, help="max seconds to wait after load")
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--profile", metavar="DIR", help="sample the gateway with py-spy")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    for hidden in ("--port", "--smsc-port"):
        p.add_argument(hidden, type=int, help=argparse.SUPPRESS)
    for hidden in ("--store", "--blobs", "--info", "--loop", "--http"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args)
        return 0
    if args.seconds <= 0 or args.connections < 1:
        p.error("--seconds must be > 0 and --connections >= 1")
    if args.warmup is None:
        args.warmup = min(1.0, args.seconds / 2)
    pinning = (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity") and not args.no_pin
    args.server_cpu = SERVER_CPU if pinning else None
    args.client_cpu = CLIENT_CPU if pinning else None
    work = Path(tempfile.mkdtemp(prefix="gw-bench-sms-"))
    header(args)
    try:
        store = f"sqlite:///{work}/gateway.db"
        before = os.sched_getaffinity(0) if pinning else None
        if pinning:
            os.sched_setaffinity(0, {CLIENT_CPU})
        try:
            with (
                carrier(args.carrier, work, args.receipt_delay, args.client_cpu) as (
                    smsc_port,
                    smsc_pid,
                ),
                gateway(args, work, store, smsc_port) as gw,
            ):
                key = gw.info["key"]
                status, body = api(gw.port, key, PATH, BODIES[0])
                if status != 202:
                    raise RuntimeError(f"probe answered {status}: {body}")
                waited, left = wait_drained(gw.port, key, 30)
                if left:
                    raise RuntimeError(
                        f"the probe message was not delivered within 30 s ({sorted(left)}); "
                        f"gateway log:\n{gw.log.read_text()[-4000:]}"
                    )
                print(f"- probe delivered in {waited:.2f} s; loading ...", flush=True)
                spy = None
                if args.profile:
                    exe = find_py_spy()
                    if exe is None:
                        print("--profile: py-spy is not installed; not profiling")
                    else:
                        Path(args.profile).mkdir(parents=True, exist_ok=True)
                        out = Path(args.profile) / "py-spy-sms.txt"
                        spy = (start_py_spy(exe, gw.info["pid"], int(args.seconds), out,
                                            args.client_cpu), out)  # fmt: skip
                pids = {"gateway": gw.info["pid"], "carrier": smsc_pid, "client": os.getpid()}
                cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
                load = run_load(gw.port, key, args.seconds, args.connections, args.rate)
                print(
                    f"- {len(load.posted)} x 202 in {load.end - load.start:.2f} s; draining ...",
                    flush=True,
                )
                drain, left = wait_drained(gw.port, key, args.drain)
                cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
                wall = time.time() - load.start
                if spy is not None:
                    spy[0].wait(60)
        finally:
            if before is not None:
                os.sched_setaffinity(0, before)
        delivered, last = asyncio.run(_outcomes(store))
        report(args, load, delivered, last, drain, left)
        n = sum(1 for m in load.posted if m in delivered)
        print(
            "CPU from the start of the load to the end of the drain "
            f"({wall:.1f} s wall; per delivered message):"
        )
        for name, seconds in cpu.items():
            per = f"{seconds / n * 1e6:,.0f} us/message" if n else "-"
            print(
                f"  {name:8} {seconds:6.2f} s CPU ({100 * seconds / wall:3.0f}% of one core), {per}"
            )
        if n and cpu["gateway"] > 0:
            print(
                f"  gateway capacity at 100% of one core: ~{n / cpu['gateway']:,.0f} msg/s "
                "(messages delivered / gateway CPU seconds)"
            )
        if spy is not None and spy[1].exists():
            print()
            print(
                f"py-spy profile of the gateway during the load ({spy[1]}; slower when profiled):"
            )
            print(hot_spots(spy[1]))
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
