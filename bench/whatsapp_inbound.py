"""WhatsApp inbound benchmark: signed webhook POSTs per second, and their latency.

Three processes on loopback, each on a free port:

- the **Graph API**: the connector's simulator (``python -m connectors.whatsapp.simulator``),
  which the connector asks at start-up whether its token and phone_number_id are good;
  idle afterwards (nothing is sent);
- the **gateway**: ONE process (``python -m bench.whatsapp_inbound --serve``) serving the
  real app (``create_app``, job workers on, as ``gateway serve`` runs) under uvicorn on a
  fresh SQLite file, with a ``whatsapp_cloud`` connector for one business number; it
  seeds a business team and one WhatsApp member owning that number before it listens;
- the **client** (this process): an asyncio HTTP/1.1 keep-alive client on raw sockets
  that POSTs Meta's inbound text webhook to ``/hooks/wa/``, each with a new wamid, the
  current unix timestamp, one of 1000 contacts (one conversation each), non-ASCII text
  escaped as Meta escapes it, and ``X-Hub-Signature-256`` = HMAC-SHA256 of the raw body
  with the app secret (computed per request, before it is written).

Two runs, each after ``--warmup`` seconds that are not measured:

1. **max**: ``--connections`` connections, each sending its next POST as soon as the
   previous one is answered: the most webhooks per second the gateway answers ``200``;
   latencies at that saturation.
2. **paced**: POSTs scheduled at ``--rate`` per second (open loop, up to
   ``--paced-connections`` in flight); latency is measured from each POST's scheduled
   time, so a gateway that falls behind shows it (no coordinated omission).

The goal (issue 4): at least 1,000 webhooks per second with p99 below 50 ms on SQLite.
The ratios printed are max req/s / 1,000 and 50 ms / paced p99 (both >= 1 to meet it).
Afterwards the gateway is stopped and the store is read: every ``200`` must be exactly
one stored inbound message (the client waits for every answer, so the counts are
exact), in one conversation per contact, each with an open 24-hour window.

With two or more CPUs the gateway runs on CPU 0, the client and the simulator on CPU 1.

Usage::

    .venv/bin/python -m bench.whatsapp_inbound [--seconds 10] [--warmup 2]
        [--connections 32] [--rate 1000] [--paced-connections 64] [--profile DIR]

It is a benchmark, not a test: it exits 0 whether or not the goal is met.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import functools
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if not __package__:  # run as a script (bench/whatsapp_inbound.py): make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import (
    CREDIT_LIMIT_MICROS,
    REPO,
    SENDER,
    find_py_spy,
    free_port,
    hot_spots,
    pin,
    server_class,
    start_py_spy,
    stop_process,
    uvicorn_choices,
    wait_port,
)

GOAL_RPS = 1000.0
GOAL_P99_MS = 50.0
BUSINESS = SENDER  # the member's mobile number is the WhatsApp business number
PNID = "106540352242922"
APP_SECRET = "bench-app-secret-0f3c9a"
ACCESS_TOKEN = "bench-access-token-5d1e"
VERIFY_TOKEN = "bench-verify-token"
HOOK = "/hooks/wa/"
CONTACTS = 1000
SERVER_CPU, CLIENT_CPU = 0, 1
# What customers write (Meta escapes every non-ASCII character as \\uXXXX).
TEXTS = [
    "Hallo! Wann kommt meine Bestellung 4711?",
    "K\\u00f6nnen Sie mich bitte morgen zur\\u00fcckrufen?",
    "Danke, das hat geklappt \\ud83d\\udc4d",
    "Ist der Laden am Samstag ge\\u00f6ffnet?",
    "Ich m\\u00f6chte meinen Termin am Dienstag um 10 Uhr verschieben.",
]


# ---------------------------------------------------------------------------------------
# The gateway process (``--serve``)
# ---------------------------------------------------------------------------------------
async def seed_whatsapp_member(rt: Any) -> dict[str, Any]:
    """A business team (credit limit never reached) and one WhatsApp member owning
    ``BUSINESS``; returns their ids."""
    from gateway.ids import new_id
    from gateway.models import Addon, Member, Plan, Team

    now = rt.clock.now()
    team = Team(new_id("team"), "Bench GmbH", Plan.BUSINESS.value, CREDIT_LIMIT_MICROS, "DE", now)
    await rt.store.create_team(team)
    member = Member(
        new_id("mem"),
        team.id,
        "Bench Support",
        "support@example.com",
        BUSINESS,
        None,
        frozenset({Addon.WHATSAPP.value}),
        True,
        now,
    )
    await rt.store.create_member(member, Plan.BUSINESS.max_members)
    return {"team_id": team.id, "member_id": member.id}


def baseline_app() -> Any:
    """A bare Starlette app with the webhook's unavoidable work: read the body, check its
    HMAC-SHA256 signature, parse the JSON, answer 200 (what an HTTP stack can do here)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    secret = APP_SECRET.encode()

    async def hook(request: Request) -> Response:
        body = await request.body()
        expected = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, request.headers.get("x-hub-signature-256", "")):
            return JSONResponse({"error": "invalid signature"}, 401)
        json.loads(body)
        return JSONResponse({"ok": True})

    return Starlette(routes=[Route(HOOK, hook, methods=["POST"])])


async def _serve_baseline(args: argparse.Namespace) -> None:
    import uvicorn

    config = uvicorn.Config(
        baseline_app(),
        host="127.0.0.1",
        port=args.port,
        loop=args.loop,
        http=args.http,
        lifespan="off",
        access_log=False,
        log_level="warning",
    )
    server = server_class()(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    tmp = f"{args.info}.tmp"
    Path(tmp).write_text(json.dumps({"pid": os.getpid()}), encoding="utf-8")
    os.replace(tmp, args.info)
    await server.serve()


async def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    import connectors.whatsapp.cloud  # noqa: F401  (registers kind "whatsapp_cloud")
    from gateway.api.app import create_app
    from gateway.config import parse_settings
    from gateway.process import open_runtime

    options = {
        "graph_url": args.graph_url,
        "access_token": ACCESS_TOKEN,
        "app_secret": APP_SECRET,
        "verify_token": VERIFY_TOKEN,
        "phone_number_ids": {BUSINESS: PNID},
    }
    settings = parse_settings(
        {
            "gateway": {"store": args.store, "blobs": args.blobs, "workers": args.workers},
            "connectors": [
                {"id": "wa", "kind": "whatsapp_cloud", "channels": ["whatsapp"], **options}
            ],
        }
    )
    rt = await open_runtime(settings)
    try:
        await rt.wait_started(30)
        info = await seed_whatsapp_member(rt)
        config = uvicorn.Config(
            create_app(rt, workers=True),
            host="127.0.0.1",
            port=args.port,
            loop=args.loop,
            http=args.http,
            lifespan="on",
            access_log=False,
            log_level="warning",
        )
        server = server_class()(config)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
        tmp = f"{args.info}.tmp"
        Path(tmp).write_text(json.dumps({**info, "pid": os.getpid()}), encoding="utf-8")
        os.replace(tmp, args.info)
        await server.serve()
    finally:
        await rt.aclose()


def serve(args: argparse.Namespace) -> None:
    """``--serve``: the gateway in this process until SIGTERM."""
    import uvicorn

    factory = uvicorn.Config("bench.whatsapp_inbound:serve", loop=args.loop).get_loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve_baseline(args) if args.baseline_server else _serve(args))


# ---------------------------------------------------------------------------------------
# The client: signed Meta webhooks, closed loop or paced
# ---------------------------------------------------------------------------------------
class Webhooks:
    """Meta's inbound text webhook, a new wamid each time, signed with the app secret."""

    def __init__(self, port: int, secret: str = APP_SECRET) -> None:
        self.secret = secret.encode()
        self.count = 0
        self.nonce = os.urandom(6)  # wamids differ from every other run's
        self.head = (
            f"POST {HOOK} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "User-Agent: facebookexternalua\r\nContent-Type: application/json\r\n"
            "X-Hub-Signature-256: sha256=%s\r\nContent-Length: %d\r\n\r\n"
        )
        self.prefix = (
            '{"object":"whatsapp_business_account","entry":[{"id":"102290129340398",'
            '"changes":[{"value":{"messaging_product":"whatsapp","metadata":'
            f'{{"display_phone_number":"{BUSINESS.lstrip("+")}","phone_number_id":"{PNID}"}},'
            '"contacts":[{"profile":{"name":"Kunde '
        )

    def wa_id(self, n: int) -> str:
        """The contact of the ``n``-th webhook (1000 rotate)."""
        return f"49151{22000000 + n % CONTACTS}"

    def next(self) -> bytes:
        """The next request, ready to write."""
        n = self.count
        self.count += 1
        wa = self.wa_id(n)
        raw = b"\x15\x02\x00\x11\x18\x12" + self.nonce + n.to_bytes(8, "big")
        wamid = "wamid." + base64.b64encode(raw).decode()
        body = (
            f'{self.prefix}{n % CONTACTS:04d}"}},"wa_id":"{wa}"}}],"messages":[{{"from":"{wa}",'
            f'"id":"{wamid}","timestamp":"{int(time.time())}","type":"text","text":{{"body":'
            f'"{TEXTS[n % len(TEXTS)]}"}}}}]}},"field":"messages"}}]}}]}}'
        ).encode()
        sig = hmac.new(self.secret, body, hashlib.sha256).hexdigest()
        return (self.head % (sig, len(body))).encode() + body


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)")


@dataclass
class Run:
    """One load run: what was sent and answered, and when."""

    name: str
    start: float = 0.0  # perf_counter when the load began
    measure_from: float = 0.0  # start + warm-up
    deadline: float = 0.0
    end: float = 0.0  # the last answer
    # (scheduled or sent time, answered time) of every 200 answer
    answers: list[tuple[float, float]] = field(default_factory=list)
    other: collections.Counter[int] = field(default_factory=collections.Counter)
    errors: int = 0
    max_backlog: int = 0
    # The server's CPU seconds (user + system, all threads) and 200 answers over the
    # measured window: CPU per webhook does not depend on what else the machine runs.
    cpu_seconds: float = 0.0
    cpu_answers: int = 0

    def cpu_us(self) -> float | None:
        """The server's CPU time per answered webhook, in microseconds."""
        return 1e6 * self.cpu_seconds / self.cpu_answers if self.cpu_answers else None

    def measured(self) -> list[tuple[float, float]]:
        """The answers whose request was due inside the measured window."""
        return [a for a in self.answers if self.measure_from <= a[0] < self.deadline]

    def rps(self) -> float:
        """200 answers per second that arrived in the measured window."""
        span = self.deadline - self.measure_from
        done = sum(1 for _, t in self.answers if self.measure_from <= t <= self.deadline)
        return done / span if span > 0 else 0.0

    def latency_ms(self, p: float) -> float | None:
        """The p-quantile of the measured latencies (nearest rank), in ms."""
        lat = sorted(t1 - t0 for t0, t1 in self.measured())
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else None


class _Conn(asyncio.Protocol):
    """One keep-alive connection: one request at a time, answers parsed by length."""

    def __init__(self, load: _Load, closed: asyncio.Future[None]) -> None:
        self.load = load
        self.closed = closed
        self.buf = b""
        self.need: int | None = None
        self.status = 0
        self.t0 = 0.0
        self.busy = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, due: float) -> None:
        """Write the next webhook; its latency counts from ``due``."""
        assert self.transport is not None
        self.t0 = due
        self.busy = True
        self.transport.write(self.load.webhooks.next())

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
                self.need = end + 4 + (int(match.group(1)) if match else 0)
            if len(self.buf) < self.need:
                return
            self.buf, self.need = self.buf[self.need :], None
            self.busy = False
            self.load.answered(self, self.status, self.t0, time.perf_counter())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy:
            self.load.run.errors += 1
            self.load.outstanding -= 1
            self.busy = False
        if not self.closed.done():
            self.closed.set_result(None)
        self.load.check_done()


class _Load:
    """Drives one run: closed loop (``rate`` 0) or paced at ``rate`` per second."""

    def __init__(self, run: Run, webhooks: Webhooks, rate: float) -> None:
        self.run = run
        self.webhooks = webhooks
        self.rate = rate
        self.idle: collections.deque[_Conn] = collections.deque()
        self.backlog: collections.deque[float] = collections.deque()
        self.outstanding = 0
        self.issued = 0
        self.stopped = False
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def dispatch(self, due: float) -> None:
        """Send a request due at ``due`` on an idle connection, else queue it."""
        self.outstanding += 1
        if self.idle:
            self.idle.popleft().send(due)
        else:
            self.backlog.append(due)
            self.run.max_backlog = max(self.run.max_backlog, len(self.backlog))

    def answered(self, conn: _Conn, status: int, t0: float, t1: float) -> None:
        """Record an answer and keep the connection busy (closed loop) or take the backlog."""
        self.outstanding -= 1
        run = self.run
        if status == 200:
            run.answers.append((t0, t1))
        else:
            run.other[status] += 1
        run.end = t1
        if self.rate <= 0 and t1 < run.deadline:
            self.outstanding += 1
            conn.send(t1)
        elif self.backlog:
            conn.send(self.backlog.popleft())
        else:
            self.idle.append(conn)
        self.check_done()

    def check_done(self) -> None:
        """Finished once the load stopped and nothing is in flight."""
        if self.stopped and self.outstanding <= 0 and not self.finished.done():
            self.finished.set_result(None)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (all its threads)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(
    port: int, pid: int, webhooks: Webhooks, name: str, seconds: float, warmup: float,
    connections: int, rate: float,
) -> Run:  # fmt: skip
    loop = asyncio.get_running_loop()
    run = Run(name)
    load = _Load(run, webhooks, rate)
    conns: list[tuple[asyncio.Transport, _Conn]] = []
    for _ in range(connections):
        closed: asyncio.Future[None] = loop.create_future()
        try:
            transport, conn = await loop.create_connection(
                functools.partial(_Conn, load, closed), "127.0.0.1", port
            )
        except OSError:
            run.errors += 1
            continue
        conns.append((transport, conn))
        load.idle.append(conn)
    run.start = time.perf_counter()
    run.measure_from = run.start + warmup
    run.deadline = run.measure_from + seconds
    cpu_start: tuple[float, int] | None = None

    def cpu_mark() -> tuple[float, int]:
        return cpu_seconds(pid), len(run.answers)

    if rate <= 0:
        for _ in range(len(load.idle)):
            load.dispatch(time.perf_counter())
        await asyncio.sleep(max(0.0, run.measure_from - time.perf_counter()))
        cpu_start = cpu_mark()
        await asyncio.sleep(max(0.0, run.deadline - time.perf_counter()))
    else:
        while True:
            now = time.perf_counter()
            if cpu_start is None and now >= run.measure_from:
                cpu_start = cpu_mark()
            if now >= run.deadline:
                break
            due_count = int((now - run.start) * rate)
            while load.issued < due_count:
                load.dispatch(run.start + load.issued / rate)
                load.issued += 1
            await asyncio.sleep(0.0005)
    if cpu_start is not None:
        cpu, answers = cpu_mark()
        run.cpu_seconds, run.cpu_answers = cpu - cpu_start[0], answers - cpu_start[1]
    load.stopped = True
    load.check_done()
    # Every connection stops sending at the deadline; wait for the answers in flight, so
    # the count of 200s is exact.
    await asyncio.wait_for(load.finished, 120)
    for transport, _ in conns:
        transport.close()
    return run


def run_load(
    port: int, pid: int, webhooks: Webhooks, name: str, seconds: float, warmup: float,
    connections: int, rate: float,
) -> Run:  # fmt: skip
    """One run in this process (on the client's CPU) against server process ``pid``."""
    return asyncio.run(_drive(port, pid, webhooks, name, seconds, warmup, connections, rate))


# ---------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def graph_api(work: Path, cpu: int | None) -> Iterator[str]:
    """The simulator as Meta's Graph API on a free port; yields its ``graph_url``."""
    log = work / "simulator.log"
    cmd = [
        sys.executable, "-m", "connectors.whatsapp.simulator", "--port", "0",
        "--number", f"{BUSINESS}={PNID}", "--access-token", ACCESS_TOKEN,
        "--app-secret", APP_SECRET, "--verify-token", VERIFY_TOKEN,
    ]  # fmt: skip
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, preexec_fn=pin(cpu)
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # one JSON line once it serves
        if not line:
            raise RuntimeError(f"the simulator did not start:\n{log.read_text()[-4000:]}")
        yield str(json.loads(line)["graph_url"])
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


@dataclass
class Served:
    """The gateway process."""

    proc: subprocess.Popen[bytes]
    port: int
    info: dict[str, Any]
    log: Path


@contextlib.contextmanager
def gateway(
    args: argparse.Namespace, work: Path, store: str, graph_url: str, baseline: bool = False
) -> Iterator[Served]:
    """``python -m bench.whatsapp_inbound --serve`` (the gateway, or with ``baseline`` the
    bare app) on a free port; SIGTERM at the end."""
    port = free_port()
    name = "baseline" if baseline else "gateway"
    info = work / f"{name}.json"
    log = work / f"{name}.log"
    loop, http = uvicorn_choices()
    cmd = [
        sys.executable, "-m", "bench.whatsapp_inbound", "--serve", "--port", str(port),
        "--store", store, "--blobs", str(work / "blobs"), "--info", str(info),
        "--graph-url", graph_url, "--loop", loop, "--http", http,
        "--workers", str(args.workers),
    ]  # fmt: skip
    if baseline:
        cmd.append("--baseline-server")
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, preexec_fn=pin(args.server_cpu)
        )
    try:
        deadline = time.monotonic() + 60
        while not info.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {name} did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.05)
        wait_port(port, proc)
        yield Served(proc, port, json.loads(info.read_text()), log)
    finally:
        stop_process(proc)
        if proc.returncode not in (0, -signal.SIGTERM):
            print(f"  ({name} exited with {proc.returncode}; log {log})", flush=True)


def probe(port: int, webhooks: Webhooks) -> tuple[int, bytes]:
    """One signed webhook and one unsigned one over a plain socket: (status, body) of the
    signed one; the unsigned one must be refused with 401."""
    import socket

    def once(request: bytes) -> tuple[int, bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(request.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nConnection: close\r\n", 1))
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        return int(head[9:12]), body

    bad = re.sub(rb"sha256=[0-9a-f]{64}", b"sha256=" + b"0" * 64, webhooks.next())
    status, body = once(bad)
    if status != 401:
        raise RuntimeError(f"a webhook with a wrong signature answered {status}: {body!r}")
    return once(webhooks.next())


async def _stored(store_url: str, team_id: str) -> tuple[int, int, int]:
    """Inbound messages of the team, its conversations, and how many have an open window."""
    from gateway.clock import SystemClock
    from gateway.store import open_store
    from gateway.store.base import MessageFilter
    from gateway.window import of_conversation

    store = await open_store(store_url)
    try:
        messages, cursor = 0, None
        flt = MessageFilter(team_id=team_id, direction="inbound")
        while True:
            page = await store.list_messages(flt, cursor, 200)
            messages += len(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        convs, open_windows, ccursor = 0, 0, None
        now = SystemClock().now()
        while True:
            cpage = await store.list_conversations(team_id, None, ccursor, 200)
            convs += len(cpage.items)
            open_windows += sum(1 for c in cpage.items if of_conversation(c, now).open)
            ccursor = cpage.next_cursor
            if ccursor is None:
                break
        return messages, convs, open_windows
    finally:
        await store.aclose()


# Where a webhook's time goes, by the outermost frame of each layer (inclusive).
_LAYERS = [
    ("HTTP server (uvicorn, h11/httptools: parse, write)", r"H11Protocol|HttpToolsProtocol"),
    ("ASGI app (Starlette + middleware, routing)", r"Starlette\.__call__"),
    ("  connector webhook (read, signature, JSON, parse)", r"WhatsAppCloudConnector\._events"),
    ("    signature check", r"verify_signature"),
    ("    json.loads", r"^loads \(json/"),
    ("    webhook.parse", r"^parse \(connectors/whatsapp/webhook"),
    ("    Inbound.inbound (gateway)", r"Inbound\.inbound"),
    ("      store_inbound (SQLite write)", r"store_inbound"),
    ("      forwarding.jobs_for", r"jobs_for"),
    ("      message_event (public view)", r"message_event"),
    ("      directory (member, conversation)", r"Directory\."),
    ("      new_id", r"^new_id "),
    ("Engine._commit (group commit)", r"Engine\._commit"),
    ("job workers", r"Worker\."),
]


def per_request(path: Path, cpu_us: float | None) -> str:
    """The main thread's busy samples split into layers, as microseconds per webhook
    (the layer's share of busy samples x the measured CPU per webhook)."""
    busy = 0
    hits: collections.Counter[str] = collections.Counter()
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        if frames[0].startswith("Thread") or "_Checkpointer" in stack:
            continue  # other threads: the WAL checkpointer, py-spy's view of idle ones
        if re.search(r"\(selectors\.py|select \(", frames[-1]):
            continue  # waiting for the network
        busy += int(count)
        names = [re.sub(r" \(.*", "", f) + " (" + f.split(" (", 1)[-1] for f in frames]
        for label, pattern in _LAYERS:
            if any(re.search(pattern, f) for f in names):
                hits[label] += int(count)
    if not busy or not cpu_us:
        return "  (no busy samples)"
    out = [f"  per webhook ({cpu_us:,.0f} us of CPU; main thread, inclusive):"]
    out += [
        f"  {cpu_us * hits[label] / busy:8,.0f} us  {100 * hits[label] / busy:5.1f}%  {label}"
        for label, _ in _LAYERS
    ]
    return "\n".join(out)


def machine() -> str:
    """CPUs and load average: the machine is shared, so the figures need them. Read from
    the kernel, not from ``uptime``, which a minimal Debian lacks (procps)."""
    nproc = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        load = "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "load average: n/a"
    return f"nproc {nproc}; {load}"


def header(args: argparse.Namespace) -> None:
    """What is measured, and how."""
    import starlette
    import uvicorn

    loop, http = uvicorn_choices()
    pinned = (
        f"gateway on CPU {args.server_cpu}, client and simulator on CPU {args.client_cpu}"
        if args.server_cpu is not None
        else "no CPU pinning"
    )
    print("WhatsApp inbound benchmark: signed Meta webhooks POSTed to /hooks/wa/ (SQLite)")
    print(
        f"  python {platform.python_version()}, uvicorn {uvicorn.__version__} (loop={loop}, "
        f"http={http}), starlette {starlette.__version__}; {pinned}"
    )
    print(f"  machine: {machine()}")
    print(
        f"  gateway: one process, the real app with job workers ({args.workers} job slots), a "
        f"whatsapp_cloud connector, SQLite; {CONTACTS} contacts, one text message per POST"
    )
    print(
        f"  client: max = {args.connections} connections closed loop; paced = "
        f"{args.rate:,.0f}/s open loop (<= {args.paced_connections} in flight); "
        f"{args.warmup} s warm-up + {args.seconds} s measured each"
    )
    print()


def report(
    runs: list[Run], baseline: Run | None, stored: tuple[int, int, int], answered: int
) -> None:
    """The table, the ratios against the goal and the store check."""

    def ms(value: float | None) -> str:
        return f"{value:.2f}" if value is not None else "-"

    def cpu(value: float | None) -> str:
        return f"{value:,.0f}" if value is not None else "-"

    print()
    print(
        f"{'run':<14} {'200s':>8} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}"
        f" {'backlog':>8} {'other':>6} {'cpu us/req':>11}"
    )
    for run in [*([baseline] if baseline else []), *runs]:
        other = sum(run.other.values()) + run.errors
        print(
            f"{run.name:<14} {len(run.measured()):>8} {run.rps():>9,.0f} "
            f"{ms(run.latency_ms(0.5)):>8} {ms(run.latency_ms(0.99)):>8} "
            f"{ms(run.latency_ms(1.0)):>8} {run.max_backlog:>8} {other:>6} "
            f"{cpu(run.cpu_us()):>11}"
        )
        if run.other or run.errors:
            print(f"  !! {run.name}: other answers {dict(run.other)}, socket errors {run.errors}")
    print()
    top = runs[0]
    paced = runs[-1]
    p99 = paced.latency_ms(0.99)
    rps_ratio = top.rps() / GOAL_RPS
    p99_ratio = GOAL_P99_MS / p99 if p99 else 0.0
    paced_ok = paced.rps() >= 0.98 * GOAL_RPS
    met = rps_ratio >= 1 and p99_ratio >= 1 and paced_ok
    print(f"RATIO max req/s / {GOAL_RPS:,.0f}: {rps_ratio:.2f} ({top.rps():,.0f} req/s)")
    gw_cpu = top.cpu_us()
    if gw_cpu:
        print(
            f"CPU per webhook (gateway process, max run): {gw_cpu:,.0f} us -> one free core "
            f"would answer about {1e6 / gw_cpu:,.0f} req/s (ratio {1e6 / gw_cpu / GOAL_RPS:.2f})"
        )
    if baseline is not None and baseline.rps() > 0:
        print(
            f"RATIO max req/s / baseline: {top.rps() / baseline.rps():.2f} (the bare app on "
            f"the same HTTP stack answered {baseline.rps():,.0f} req/s just before)"
        )
    print(
        f"RATIO {GOAL_P99_MS:.0f} ms / p99 at {paced.name.split()[-1]}: {p99_ratio:.2f} "
        f"(p99 {ms(p99)} ms, {paced.rps():,.0f} req/s answered)"
    )
    print(
        f"GOAL >= {GOAL_RPS:,.0f} webhooks/s with p99 < {GOAL_P99_MS:.0f} ms: "
        + ("GOAL MET" if met else "GOAL MISSED")
    )
    messages, convs, open_windows = stored
    ok = messages == answered and convs == min(CONTACTS, answered) and open_windows == convs
    print(
        f"STORED {messages} inbound messages for {answered} x 200 (probe included), "
        f"{convs} conversations, {open_windows} with an open window -> "
        + ("MATCH" if ok else "MISMATCH")
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--serve``, be its gateway)."""
    p = argparse.ArgumentParser(
        prog="python -m bench.whatsapp_inbound", description=__doc__.split("\n")[0]
    )
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds per run")
    p.add_argument("--connections", type=int, default=32, help="closed-loop connections")
    p.add_argument("--rate", type=float, default=GOAL_RPS, help="paced run: POSTs per second")
    p.add_argument("--paced-connections", type=int, default=64)
    p.add_argument("--workers", type=int, default=128, help="jobs run at once in the gateway")
    p.add_argument("--no-pin", action="store_true")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--profile", metavar="DIR", help="sample the gateway (max run) with py-spy")
    p.add_argument(
        "--no-baseline", action="store_true", help="skip the bare-Starlette baseline run"
    )
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--baseline-server", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    for hidden in ("--store", "--blobs", "--info", "--loop", "--http", "--graph-url"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args)
        return 0
    if args.seconds <= 0 or args.warmup < 0 or args.connections < 1 or args.rate <= 0:
        p.error("--seconds and --rate must be > 0, --warmup >= 0, --connections >= 1")
    pinning = (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity") and not args.no_pin
    args.server_cpu = SERVER_CPU if pinning else None
    args.client_cpu = CLIENT_CPU if pinning else None
    work = Path(tempfile.mkdtemp(prefix="gw-bench-wa-"))

    def go(served: Served, hooks: Webhooks, name: str, connections: int, rate: float) -> Run:
        return run_load(
            served.port, served.info["pid"], hooks, name, args.seconds, args.warmup,
            connections, rate,
        )  # fmt: skip

    spy: tuple[subprocess.Popen[bytes], Path] | None = None
    try:
        header(args)
        store = f"sqlite:///{work}/gateway.db"
        before = os.sched_getaffinity(0) if pinning else None
        if pinning:
            os.sched_setaffinity(0, {CLIENT_CPU})
        try:
            with graph_api(work, args.client_cpu) as graph_url:
                baseline = None
                if not args.no_baseline:
                    with gateway(args, work, store, graph_url, baseline=True) as base:
                        hooks = Webhooks(base.port)
                        status, body = probe(base.port, hooks)
                        if status != 200:
                            raise RuntimeError(f"the baseline answered {status}: {body!r}")
                        baseline = go(base, hooks, "baseline max", args.connections, 0.0)
                    print(f"- baseline: {baseline.rps():,.0f} req/s", flush=True)
                with gateway(args, work, store, graph_url) as gw:
                    webhooks = Webhooks(gw.port)
                    status, body = probe(gw.port, webhooks)
                    if status != 200:
                        raise RuntimeError(
                            f"the probe webhook answered {status}: {body[:2000]!r}\n"
                            f"gateway log:\n{gw.log.read_text()[-4000:]}"
                        )
                    print("- probe answered 200 (a wrong signature 401); loading ...", flush=True)
                    if args.profile:
                        exe = find_py_spy()
                        if exe is None:
                            print(
                                "--profile: py-spy is not installed (.venv/bin/pip install py-spy)"
                            )
                        else:
                            Path(args.profile).mkdir(parents=True, exist_ok=True)
                            out = Path(args.profile) / "py-spy-whatsapp-inbound.txt"
                            seconds = int(args.warmup + args.seconds)
                            spy = (start_py_spy(exe, gw.info["pid"], seconds, out,
                                                args.client_cpu), out)  # fmt: skip
                    runs = [go(gw, webhooks, f"max {args.connections} conn", args.connections, 0)]
                    if spy is not None:
                        spy[0].wait(60)
                    print(f"- max: {runs[0].rps():,.0f} req/s; paced run ...", flush=True)
                    name = f"paced {args.rate:,.0f}/s"
                    runs.append(go(gw, webhooks, name, args.paced_connections, args.rate))
                    answered = 1 + sum(len(r.answers) for r in runs)
                    team_id = gw.info["team_id"]
        finally:
            if before is not None:
                os.sched_setaffinity(0, before)
        report(runs, baseline, asyncio.run(_stored(store, team_id)), answered)
        print(f"machine after the runs: {machine()}")
        if spy is not None and spy[1].exists():
            print()
            print(f"py-spy profile of the gateway during the max run ({spy[1]}; slower then):")
            print(hot_spots(spy[1]))
            print(per_request(spy[1], runs[0].cpu_us()))
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
