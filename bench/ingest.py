"""Ingest benchmark: messages accepted per second through ``POST /v1/messages``.

Every server runs in its own process under uvicorn (one process, one worker, the same
settings for all) on a free loopback port:

- ``baseline``: a bare Starlette app with one ``POST /v1/messages`` route that parses the
  JSON body and answers 202 with a JSON object about as large as the gateway's answer;
- ``gateway-sqlite`` / ``gateway-redis``: the real gateway app (``create_app``) on a fresh
  SQLite file or on a throwaway Redis, with job workers OFF: this measures acceptance
  (validate, authorize, charge, store, enqueue), not sending.

A baseline run precedes every gateway run and each ratio is taken against the baseline
measured right before it. The load comes from ``wrk`` (installed with apt-get when missing
and running as root, unless ``--no-install``) or, failing that, from a raw-socket asyncio
HTTP/1.1 keep-alive client. With two or more CPUs the server is pinned to CPU 0 and the
client (and redis-server) to CPU 1.

After each gateway run the server is stopped and the store is asked how many messages it
holds (listed page by page) and how many send jobs. Every 202 the client counted must be
stored. The Python client stops cleanly, so the counts must be equal; wrk closes its
sockets at its deadline with requests in flight, and the server stores such a request
only if it had read it by then, so with wrk the store may hold up to that many more (the
line says how many of them it did).

Usage::

    .venv/bin/python -m bench.ingest [--duration 10] [--connections 32]
                                      [--backends sqlite,redis] [--rounds N]
                                      [--client auto|wrk|python] [--profile DIR]

It is a benchmark, not a test: it exits 0 whether or not the goal is met.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import http.client
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if not __package__:  # run as a script (bench/ingest.py): make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import (
    REPO,
    SENDER,
    find_py_spy,
    free_port,
    hot_spots,
    pin,
    seed_sender,
    server_class,
    start_py_spy,
    stop_process,
    uvicorn_choices,
    wait_port,
)

GOAL = 0.5
PATH = "/v1/messages"
TEXT = "Hallo! Ihre Bestellung 4711 ist unterwegs und kommt morgen zwischen 9 und 12 Uhr."
# Requests rotate over this many contacts (one conversation each), so per-contact caches
# are exercised the way a real sender list would, not flattered by one recipient.
CONTACTS = 1000
BODIES = [
    json.dumps(
        {"channel": "sms", "from": SENDER, "to": f"+49151{12340000 + i}", "text": TEXT},
        separators=(",", ":"),
    ).encode()
    for i in range(CONTACTS)
]
BODY = BODIES[0]
# The baseline gets a bearer token of the same length as a real key (``gwk_`` + 43).
DUMMY_KEY = "gwk_" + "x" * 43
SERVER_CPU, CLIENT_CPU = 0, 1


# ---------------------------------------------------------------------------------------
# Server side (``--serve``): runs in the subprocess
# ---------------------------------------------------------------------------------------
def baseline_app() -> Any:
    """A bare Starlette app: parse the JSON body, answer 202 with a message-sized object."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    counter = 0

    async def create(request: Request) -> Response:
        nonlocal counter
        body = await request.json()
        counter += 1
        now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        data = {
            "id": f"msg_{counter:026d}",
            "channel": body.get("channel"),
            "direction": "outbound",
            "from": body.get("from"),
            "to": body.get("to"),
            "text": body.get("text"),
            "attachments": [],
            "status": "accepted",
            "units": 1,
            "segments": 1,
            "encoding": "gsm7",
            "conversation_id": f"conv_{0:026d}",
            "member_id": f"mem_{0:026d}",
            "created_at": now,
            "updated_at": now,
        }
        return JSONResponse(data, 202)

    return Starlette(routes=[Route(PATH, create, methods=["POST"])])


class NullConnector:
    """A connector (kind ``bench-null``) that accepts everything; never called here, since
    the gateway runs without workers, but a send needs a connector to route to."""

    kind = "bench-null"

    def __init__(self, config: Any, ctx: Any) -> None:
        self.id: str = config.id
        self.channels: frozenset[str] = config.channels
        self.numbers: frozenset[str] | None = config.numbers

    async def start(self) -> None:
        """Nothing to connect to."""

    async def send(self, message: Any) -> Any:
        """Pretend the carrier took it."""
        from connectors.base import SendResult

        return SendResult(carrier_id=f"null-{message.id}", segments=1)

    def routes(self) -> Sequence[Any]:
        """No webhooks."""
        return []

    def health(self) -> Any:
        """Always healthy."""
        from connectors.base import Health

        return Health(True)

    async def aclose(self) -> None:
        """Nothing to close."""


async def gateway_setup(store_url: str, blobs: str) -> tuple[Any, dict[str, Any]]:
    """A runtime with the null connector, a business team (huge credit limit), one SMS
    member and a member API key; returns the runtime and what the client needs."""
    from connectors.base import register
    from gateway.config import ConnectorConfig, parse_settings
    from gateway.process import open_runtime

    register(NullConnector.kind, NullConnector)
    # The outbound policy's send limits stay on (counting them is part of every send), but
    # high enough that this load (one member, 1000 contacts) is never refused.
    limits = {"destination_limit": 10**9, "member_limit": 10**9}
    settings = dataclasses.replace(
        parse_settings({"gateway": {"store": store_url, "blobs": blobs}, "policy": limits}),
        connectors=(ConnectorConfig("null", NullConnector.kind, frozenset({"sms"}), None, {}),),
    )
    rt = await open_runtime(settings)
    await rt.wait_started()
    return rt, await seed_sender(rt)


async def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    rt = None
    if args.serve == "baseline":
        app, info = baseline_app(), {"key": DUMMY_KEY}
    else:
        from gateway.api.app import create_app

        rt, info = await gateway_setup(args.store, args.blobs)
        app = create_app(rt, workers=False)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=args.port,
        loop=args.loop,
        http=args.http,
        lifespan="auto",
        access_log=False,
        log_level="warning",
    )
    server = server_class()(config)

    def stop() -> None:
        server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    tmp = f"{args.info}.tmp"
    Path(tmp).write_text(json.dumps({**info, "pid": os.getpid()}), encoding="utf-8")
    os.replace(tmp, args.info)
    try:
        await server.serve()
    finally:
        if rt is not None:
            await rt.aclose()


def serve(args: argparse.Namespace) -> None:
    """``--serve KIND``: build the app in this process and serve it until SIGTERM."""
    import uvicorn

    # The loop factory uvicorn itself would use for ``--loop`` (the app is not loaded).
    factory = uvicorn.Config("bench.ingest:baseline_app", loop=args.loop).get_loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(_serve(args))


# ---------------------------------------------------------------------------------------
# Client side: the load generators
# ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class Load:
    """What one client run saw."""

    accepted: int  # 202 answers
    other: int  # answers with another status
    errors: int  # connect/read/write errors and timeouts
    cut_off: int  # requests written but not answered when the client stopped
    seconds: float
    p50_ms: float | None
    p99_ms: float | None

    @property
    def rps(self) -> float:
        """202 answers per second."""
        return self.accepted / self.seconds if self.seconds > 0 else 0.0


def headers_for(key: str) -> dict[str, str]:
    """The request headers (besides Host/Content-Length) every run sends."""
    return {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}


_WRK_LUA = """
-- generated by bench/ingest.py
issued = 0
accepted = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local bodies = %(bodies)s
local reqs = {}

function init(args)
  for i, body in ipairs(bodies) do
    reqs[i] = wrk.format("POST", "%(path)s", %(headers)s, body)
  end
end

function request()
  issued = issued + 1
  return reqs[(issued %% #reqs) + 1]
end

function response(status, headers, body)
  if status == 202 then
    accepted = accepted + 1
  end
end

function done(summary, latency, requests)
  local n_issued, n_accepted = 0, 0
  for _, t in ipairs(threads) do
    n_issued = n_issued + t:get("issued")
    n_accepted = n_accepted + t:get("accepted")
  end
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT {\\"requests\\":%%d,\\"accepted\\":%%d,\\"issued\\":%%d,\\"duration_us\\":%%d," ..
    "\\"connect\\":%%d,\\"read\\":%%d,\\"write\\":%%d,\\"timeout\\":%%d," ..
    "\\"p50_us\\":%%d,\\"p99_us\\":%%d}\\n",
    summary.requests, n_accepted, n_issued, summary.duration,
    e.connect, e.read, e.write, e.timeout,
    math.floor(latency:percentile(50)), math.floor(latency:percentile(99))))
end
"""


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def wrk_script(path: Path, key: str) -> Path:
    """Write the Lua script that makes wrk POST the body and count 202s and writes."""
    headers = (
        "{"
        + ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers_for(key).items())
        + "}"
    )
    path.write_text(
        _WRK_LUA
        % {
            "path": PATH,
            "headers": headers,
            "bodies": "{" + ", ".join(_lua_string(b.decode()) for b in BODIES) + "}",
        },
        encoding="utf-8",
    )
    return path


def run_wrk(
    wrk: str, script: Path, port: int, seconds: int, connections: int, cpu: int | None
) -> Load:
    """One wrk run (one thread: the client has one core)."""
    cmd = [
        wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "--latency",
        "-s", str(script), f"http://127.0.0.1:{port}{PATH}",
    ]  # fmt: skip
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=seconds + 60, preexec_fn=pin(cpu),
        check=False,
    )  # fmt: skip
    match = re.search(r"^BENCH_RESULT (\{.*\})$", out.stdout, re.MULTILINE)
    if out.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    r = json.loads(match.group(1))
    return Load(
        accepted=r["accepted"],
        other=r["requests"] - r["accepted"],
        errors=r["connect"] + r["read"] + r["write"] + r["timeout"],
        cut_off=r["issued"] - r["requests"],
        seconds=r["duration_us"] / 1e6,
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
    )


class _RawClient:
    """A fast asyncio HTTP/1.1 keep-alive client on raw sockets (the fallback of wrk)."""

    def __init__(self, port: int, key: str, deadline: float) -> None:
        head = [f"POST {PATH} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
        head += [f"{k}: {v}" for k, v in headers_for(key).items()]
        head.append(f"Content-Length: {len(BODY)}")  # every body has the same length
        prefix = ("\r\n".join(head) + "\r\n\r\n").encode()
        self.requests = [prefix + body for body in BODIES]
        self.sent = 0
        self.deadline = deadline
        self.latencies: list[float] = []
        self.accepted = self.other = self.errors = self.cut_off = 0
        self.last = 0.0


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)")


class _Conn(asyncio.Protocol):
    def __init__(self, client: _RawClient, done: asyncio.Future[None]) -> None:
        self.client = client
        self.done = done
        self.buf = b""
        self.need: int | None = None
        self.status = 0
        self.t0 = 0.0
        self.transport: asyncio.Transport | None = None
        self.waiting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.t0 = time.perf_counter()
        self.waiting = True
        client = self.client
        client.sent += 1
        self.transport.write(client.requests[client.sent % len(client.requests)])

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
            now = time.perf_counter()
            self.waiting = False
            c = self.client
            c.latencies.append(now - self.t0)
            c.last = now
            if self.status == 202:
                c.accepted += 1
            else:
                c.other += 1
            if now < c.deadline:
                self._send()
            else:
                assert self.transport is not None
                self.transport.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiting:
            self.client.errors += 1
            self.client.cut_off += 1
        if not self.done.done():
            self.done.set_result(None)


async def _raw_load(port: int, key: str, seconds: float, connections: int) -> Load:
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    client = _RawClient(port, key, start + seconds)
    dones = []
    for _ in range(connections):
        done: asyncio.Future[None] = loop.create_future()
        try:
            await loop.create_connection(functools.partial(_Conn, client, done), "127.0.0.1", port)
        except OSError:
            client.errors += 1
            continue
        dones.append(done)
    # Every connection stops sending at the deadline and closes after its last answer:
    # nothing is left in flight, so the counts are exact.
    await asyncio.wait_for(asyncio.gather(*dones), seconds + 60)
    lat = sorted(client.latencies)

    def pct(p: float) -> float | None:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else None

    return Load(
        client.accepted, client.other, client.errors, client.cut_off,
        (client.last or time.perf_counter()) - start, pct(0.50), pct(0.99),
    )  # fmt: skip


def run_raw(port: int, key: str, seconds: int, connections: int, cpu: int | None) -> Load:
    """One run of the Python fallback client in this process (pinned to ``cpu``)."""
    before = os.sched_getaffinity(0) if cpu is not None else None
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    try:
        return asyncio.run(_raw_load(port, key, seconds, connections))
    finally:
        if before is not None:
            os.sched_setaffinity(0, before)


# ---------------------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------------------
@dataclass(slots=True)
class Served:
    """A running server subprocess."""

    proc: subprocess.Popen[bytes]
    port: int
    info: dict[str, Any]
    log: Path


@contextlib.contextmanager
def server(
    kind: str, work: Path, loop: str, http: str, cpu: int | None, store: str = ""
) -> Iterator[Served]:
    """Start ``python -m bench.ingest --serve KIND`` and stop it when the block ends."""
    port = free_port()
    info_path = work / f"{kind}-{port}.json"
    log = work / f"{kind}-{port}.log"
    blobs = work / f"blobs-{port}"
    cmd = [
        sys.executable, "-m", "bench.ingest", "--serve", kind, "--port", str(port),
        "--loop", loop, "--http", http, "--info", str(info_path), "--store", store,
        "--blobs", str(blobs),
    ]  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, preexec_fn=pin(cpu)
        )
    try:
        deadline = time.monotonic() + 60
        while not info_path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server {kind} did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.02)
        wait_port(port, proc)
        yield Served(proc, port, json.loads(info_path.read_text()), log)
    finally:
        stop_process(proc)
        if proc.returncode not in (0, -signal.SIGTERM):
            print(f"  (server {kind} exited with {proc.returncode}; log {log})", flush=True)


def probe(port: int, key: str) -> tuple[int, bytes]:
    """One request with http.client: the status and body, to fail early and loudly."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", PATH, BODY, headers_for(key))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


async def _stored(store_url: str, team_id: str) -> tuple[int, int]:
    """Messages of the team (paged through the API's own listing) and jobs in the store."""
    from gateway.store import open_store
    from gateway.store.base import MessageFilter

    store = await open_store(store_url)
    try:
        messages, cursor = 0, None
        while True:
            page = await store.list_messages(MessageFilter(team_id=team_id), cursor, 200)
            messages += len(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        jobs = sum((await store.job_counts()).values())
        return messages, jobs
    finally:
        await store.aclose()


@contextlib.contextmanager
def redis_server(work: Path, cpu: int | None) -> Iterator[str]:
    """``REDIS_URL`` when set, else our own redis-server (AOF, everysec) on a free port."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    data = work / "redis"
    data.mkdir()
    cmd = [
        exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
        "--appendfsync", "everysec", "--dir", str(data), "--protected-mode", "no",
    ]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pin(cpu)
    )
    try:
        wait_port(port, proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(proc)


async def _drop_prefix(url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        batch = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for i in range(0, len(batch), 1000):
            await client.delete(*batch[i : i + 1000])
    finally:
        await client.aclose()


def ensure_wrk(allow_install: bool) -> str | None:
    """The path of wrk; installed with apt-get when missing and we are root (and allowed)."""
    found = shutil.which("wrk")
    if found or not allow_install or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    print("wrk is missing: installing it with `apt-get install -y wrk` (running as root)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "wrk"]
    ok = subprocess.run(install, env=env, capture_output=True, timeout=600).returncode == 0
    if not ok:  # stale package lists on a fresh machine
        subprocess.run(["apt-get", "update"], env=env, capture_output=True, timeout=600)
        ok = subprocess.run(install, env=env, capture_output=True, timeout=600).returncode == 0
    print("wrk installed" if ok else "installing wrk failed: using the Python client")
    return shutil.which("wrk")


@dataclass(slots=True)
class Row:
    """One line of the result table."""

    name: str
    load: Load
    ratio: float | None = None


class Bench:
    """Runs baseline and gateway servers one after the other and measures each."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.loop, self.http = uvicorn_choices()
        pinning = (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity")
        self.server_cpu = SERVER_CPU if pinning and not args.no_pin else None
        self.client_cpu = CLIENT_CPU if pinning and not args.no_pin else None
        self.wrk = None if args.client == "python" else ensure_wrk(not args.no_install)
        if args.client == "wrk" and self.wrk is None:
            raise SystemExit("--client wrk: wrk is not installed")
        self.rows: list[Row] = []
        self.checks: list[str] = []
        self.profiles: list[tuple[str, Path]] = []
        self.py_spy = find_py_spy() if args.profile else None
        if args.profile and self.py_spy is None:
            print(
                "--profile: py-spy is not installed (.venv/bin/pip install py-spy); not profiling"
            )
        if args.profile:
            Path(args.profile).mkdir(parents=True, exist_ok=True)

    def load(self, port: int, key: str, seconds: int) -> Load:
        """One client run against 127.0.0.1:port."""
        if self.wrk is not None:
            script = wrk_script(self.work / f"post-{port}.lua", key)
            return run_wrk(self.wrk, script, port, seconds, self.args.connections, self.client_cpu)
        return run_raw(port, key, seconds, self.args.connections, self.client_cpu)

    def measure(
        self, name: str, kind: str, store: str = "", profile: Path | None = None
    ) -> tuple[Load, int, int, Any]:
        """Serve ``kind``, probe, warm up, measure (sampled by py-spy into ``profile``).
        Returns the measured load, the 202 answers of the whole life of the server
        (probe, warm-up, run), the requests cut off in flight, and the server's info."""
        print(f"- {name}: starting {kind} ...", flush=True)
        with server(kind, self.work, self.loop, self.http, self.server_cpu, store) as s:
            key = s.info["key"]
            status, body = probe(s.port, key)
            if status != 202:
                raise RuntimeError(f"{kind}: probe answered {status}: {body.decode()[:2000]}")
            runs = [self.load(s.port, key, self.args.warmup)] if self.args.warmup > 0 else []
            spy = None
            if profile is not None and self.py_spy is not None:
                spy = start_py_spy(self.py_spy, s.info["pid"], self.args.duration, profile,
                                   self.client_cpu)  # fmt: skip
            load = self.load(s.port, key, self.args.duration)
            if spy is not None:
                spy.wait(60)
            runs.append(load)
            print(
                f"  {load.accepted} x 202 in {load.seconds:.2f} s = {load.rps:,.0f} req/s "
                f"(answer {len(body)} bytes; warm-up {self.args.warmup} s)",
                flush=True,
            )
            if load.other or load.errors:
                print(f"  !! {load.other} other answers, {load.errors} socket errors/timeouts")
        answered = 1 + sum(r.accepted for r in runs)
        return load, answered, sum(r.cut_off for r in runs), s.info

    def run_backend(self, backend: str, store: str, round_: int) -> None:
        """Baseline, then the gateway on ``store``; record the rows and the count check."""
        label = f"{backend}, round {round_}" if self.args.rounds > 1 else backend
        base, _, _, _ = self.measure(f"baseline before {label}", "baseline")
        self.rows.append(Row("baseline", base))
        profile = None
        if self.args.profile:
            profile = Path(self.args.profile) / f"py-spy-{backend}-{round_}.txt"
        load, answered, cut, info = self.measure(
            f"gateway on {label}", f"gateway-{backend}", store, profile
        )
        ratio = load.rps / base.rps if base.rps else 0.0
        self.rows.append(Row(backend, load, ratio))
        messages, jobs = asyncio.run(_stored(store, info["team_id"]))
        # A request the client wrote but whose answer it never read (wrk closes its
        # sockets at the deadline) is stored only if the server had read it by then:
        # every 202 must be stored, and at most ``cut`` more.
        ok = answered <= messages <= answered + cut and jobs == messages
        extra = f" + {messages - answered} of {cut} cut off in flight" if cut else ""
        self.checks.append(
            f"ACCEPTED {label}: stored {messages} messages, {jobs} send jobs; client counted "
            f"{answered} x 202 (probe, warm-up and run){extra} -> "
            + ("MATCH" if ok else "MISMATCH")
        )
        if profile is not None and profile.exists():
            self.profiles.append((label, profile))

    def report(self) -> None:
        """The table, the verdicts and the count checks."""
        print()
        print(
            f"{'run':<10} {'requests':>9} {'seconds':>8} {'req/s':>9} {'p50 ms':>8} "
            f"{'p99 ms':>8} {'ratio':>6}"
        )
        for row in self.rows:
            ld = row.load
            p50 = f"{ld.p50_ms:.2f}" if ld.p50_ms is not None else "-"
            p99 = f"{ld.p99_ms:.2f}" if ld.p99_ms is not None else "-"
            shown = f"{row.ratio:.2f}" if row.ratio is not None else ""
            print(
                f"{row.name:<10} {ld.accepted:>9} {ld.seconds:>8.2f} {ld.rps:>9,.0f} "
                f"{p50:>8} {p99:>8} {shown:>6}"
            )
        print()
        for backend in dict.fromkeys(r.name for r in self.rows if r.ratio is not None):
            ratios = sorted(r.ratio for r in self.rows if r.name == backend and r.ratio is not None)
            ratio = statistics.median(ratios) if ratios else 0.0
            verdict = "GOAL MET" if ratio >= GOAL else "GOAL MISSED"
            spread = (
                f" (median of {', '.join(f'{r:.2f}' for r in ratios)})" if len(ratios) > 1 else ""
            )
            print(f"RATIO {backend}: {ratio:.3f}{spread} (goal >= {GOAL}) {verdict}")
        for line in self.checks:
            print(line)
        for label, path in self.profiles:
            print()
            print(f"py-spy profile of the gateway on {label} ({path}; the profiled run is slower):")
            print(hot_spots(path))


def header(bench: Bench) -> None:
    """What was measured, and how."""
    import starlette
    import uvicorn

    a = bench.args
    if bench.wrk is not None:
        out = subprocess.run([bench.wrk, "-v"], capture_output=True, text=True, check=False)
        first = (out.stdout or out.stderr).splitlines()
        client = f"wrk ({first[0] if first else 'unknown version'}), 1 thread"
    else:
        client = "Python asyncio raw-socket client (wrk not available)"
    pinned = (
        f"server on CPU {bench.server_cpu}, client and redis-server on CPU {bench.client_cpu}"
        if bench.server_cpu is not None
        else "no CPU pinning"
    )
    print("Ingest benchmark: POST /v1/messages, messages accepted per second")
    print(
        f"  python {platform.python_version()}, uvicorn {uvicorn.__version__} "
        f"(loop={bench.loop}, http={bench.http}, 1 process, access_log off), "
        f"starlette {starlette.__version__}, {os.cpu_count()} CPUs ({pinned})"
    )
    print(f"  client: {client}; {a.connections} connections; {a.duration} s per run")
    print(
        "  gateway: job workers OFF (acceptance only: validate, authorize, charge, store, "
        "enqueue; nothing is sent); member API key; business team, credit limit never hit"
    )
    print(
        f"  request body {len(BODY)} bytes, the same for every server; baseline = bare "
        "Starlette route that parses the JSON and answers 202 with a message-sized object"
    )
    print()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--serve``, be one of its servers)."""
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--backends", default="sqlite,redis", help="comma-separated: sqlite,redis")
    p.add_argument("--warmup", type=int, default=None, help="seconds (default: min(2, duration))")
    p.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    p.add_argument("--no-pin", action="store_true", help="do not pin server and client to CPUs")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--rounds", type=int, default=1, help="baseline+gateway pairs per backend")
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="sample each measured gateway run with py-spy; write and summarise the stacks",
    )
    # Server mode (used by the benchmark itself).
    p.add_argument(
        "--serve", choices=["baseline", "gateway-sqlite", "gateway-redis"], help=argparse.SUPPRESS
    )
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--loop", default="asyncio", help=argparse.SUPPRESS)
    p.add_argument("--http", default="h11", help=argparse.SUPPRESS)
    p.add_argument("--info", help=argparse.SUPPRESS)
    p.add_argument("--store", default="", help=argparse.SUPPRESS)
    p.add_argument("--blobs", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args)
        return 0
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if not backends or set(backends) - {"sqlite", "redis"}:
        p.error("--backends: choose from sqlite, redis")
    if args.duration < 1 or args.connections < 1 or args.rounds < 1:
        p.error("--duration, --connections and --rounds must be at least 1")
    if args.warmup is None:
        args.warmup = min(2, args.duration)
    work = Path(tempfile.mkdtemp(prefix="gw-bench-ingest-"))
    try:
        bench = Bench(args, work)
        header(bench)
        with contextlib.ExitStack() as stack:
            redis_url = None
            for round_ in range(1, args.rounds + 1):
                for backend in backends:
                    if backend == "sqlite":
                        bench.run_backend("sqlite", f"sqlite:///{work}/gateway-{round_}.db", round_)
                        continue
                    if redis_url is None:
                        redis_url = stack.enter_context(redis_server(work, bench.client_cpu))
                    prefix = f"bench{uuid.uuid4().hex[:12]}"
                    sep = "&" if "?" in redis_url else "?"
                    try:
                        bench.run_backend("redis", f"{redis_url}{sep}prefix={prefix}", round_)
                    finally:
                        if os.environ.get("REDIS_URL"):
                            asyncio.run(_drop_prefix(redis_url, prefix))
        bench.report()
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    sys.exit(main())
