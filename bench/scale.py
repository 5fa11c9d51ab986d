"""Scale-out benchmark: several gateway processes on one Redis, and a store that grows.

Two parts, each a row per configuration:

- ``processes`` (a): 1, 2 and 3 ``gateway worker`` processes plus ``--api`` API-only
  processes (``gateway serve --no-workers``) on one Redis, an SMPP ``smpp`` connector with
  ``--binds`` binds in all (bind slots), and the gateway's SMSC simulator in a process of
  its own. The client POSTs ``--messages`` one-part SMS over the API processes at one
  paced ``--rate`` and waits until every accepted message is ``delivered`` (it follows
  the event log); ``--rounds`` interleaved rounds. Printed: delivered per second,
  CPU-seconds per 1,000 delivered over all gateway processes **and Redis** (``INFO
  cpu``), the Redis commands per message (``INFO commandstats``), the median per
  configuration and its ratio to one worker's. On a 2-core machine judge it by CPU per
  message staying flat (within 10 %) as processes are added, not by throughput.
- ``growth`` (b): one ``gateway serve`` (API and workers) on each backend, with
  ``--sizes`` messages already in the store (10,000 and 500,000 by default), seeded fast
  in this process through the one outbound path (``outbound.submit``, no HTTP; their send
  jobs are then leased and acked, so the queue is empty: the messages stay ``accepted``)
  before the gateway starts. The gateway first catches its read models up on that event
  log (printed, not counted: a running gateway keeps them current); then the same load at
  one paced ``--rate`` for every size (a closed loop would let a slower store batch more
  and blur the comparison), in ``--rounds`` interleaved rounds. Printed: CPU-seconds per
  1,000 delivered (the gateway process, plus Redis on Redis) per round, the median per
  store, and the ratio of the later size's median to the first's (goal: within 10 %).

- ``cpu``: CPU per delivered message of ONE process, Redis vs SQLite side by side, the
  send path in process (``outbound.submit`` → send job → SMPP to a simulator in the same
  process → receipt → ``delivered``; no HTTP, Redis's own CPU not counted): the RATIO
  line's goal is Redis at most SQLite's figure (medians of ``--rounds`` interleaved rounds).

Every run checks: 0 lost (every message answered 202 is ``delivered``), 0 duplicated
(the SMSC accepted exactly one submit_sm per message), and never more binds at the SMSC
at once than configured. A run that fails a check says so on its row and the command
exits 1.

Usage::

    .venv/bin/python -m bench.scale [--part processes,growth,cpu] [--messages 20000]
        [--workers 1,2,3] [--api 1] [--binds 3] [--sizes 10000,500000]
        [--backends sqlite,redis] [--concurrency 64] [--receipt-delay 0.2]

Honours ``REDIS_URL`` (a key prefix of its own per run); otherwise it starts a throwaway
redis-server on a free loopback port.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if not __package__:  # run as a script (bench/scale.py): make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import REPO, SENDER, free_port, seed_sender, stop_process, wait_port

TEXT = "Ihr Code lautet 481516. Er gilt 10 Minuten. Bitte nicht weitergeben."
CONTACTS = 1000
SYSTEM_ID, PASSWORD = "bench", "secret"
BIND_LEASE = 2.0  # seconds: binds spread over the worker processes quickly
GROWTH_GOAL = 1.10  # the later size's CPU per message within 10 % of the first's
FLAT = 1.10  # (a): CPU per message with more processes within 10 % of one worker's
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Result:
    """One configuration's figures and checks."""

    label: str
    accepted: int
    delivered: int
    seconds: float
    cpu: float  # gateway processes and Redis, CPU-seconds
    submits: int
    most_bound: int
    binds: int
    redis_calls: dict[str, int] | None = None  # commands Redis served meanwhile, by name
    cpu_roles: dict[str, float] | None = None  # CPU-seconds: API, workers, Redis
    wakeups: dict[str, int] | None = None  # the processes' wake-ups: API, workers

    @property
    def lost(self) -> int:
        """Accepted but never delivered."""
        return self.accepted - self.delivered

    @property
    def duplicated(self) -> int:
        """submit_sm beyond one per accepted message."""
        return max(0, self.submits - self.accepted)

    @property
    def ok(self) -> bool:
        """0 lost, 0 duplicated, never more binds than configured."""
        return self.lost == 0 and self.duplicated == 0 and self.most_bound <= self.binds

    @property
    def per_1000(self) -> float:
        """CPU-seconds per 1,000 delivered."""
        return self.cpu / max(self.delivered, 1) * 1000

    def row(self) -> str:
        rate = self.delivered / self.seconds if self.seconds else 0.0
        checks = "OK" if self.ok else "FAILED"
        return (
            f"{self.label:<28} {self.delivered:>8,} {rate:>10,.0f} {self.per_1000:>12.2f}"
            f"   lost {self.lost} dup {self.duplicated} binds {self.most_bound}/{self.binds}"
            f" -> {checks}"
        )


def redis_line(calls: dict[str, int], delivered: int) -> str:
    """Redis commands per delivered message, the most frequent first."""
    per = sorted(((n / max(delivered, 1), c) for c, n in calls.items()), reverse=True)
    shown = ", ".join(f"{c} {n:.2f}" for n, c in per if n >= 0.01)
    return f"  Redis commands per message: {sum(n for n, _ in per):.2f} ({shown})"


def roles_line(roles: dict[str, float], wakeups: dict[str, int], delivered: int) -> str:
    """Where the CPU per message went (the API processes, the workers, Redis), and the
    gateway processes' wake-ups per message."""
    n = max(delivered, 1)
    cpu = ", ".join(f"{r} {c / n * 1000:.2f}" for r, c in roles.items())
    wakes = ", ".join(f"{r} {w / n:.1f}" for r, w in wakeups.items())
    return f"  CPU-s per 1,000 by role: {cpu}; wake-ups per message: {wakes}"


HEADER = f"{'configuration':<28} {'delivered':>8} {'deliv/s':>10} {'CPU-s/1000':>12}   checks"


# -- processes ---------------------------------------------------------------------------
@contextmanager
def redis_server() -> Iterator[str]:
    """``REDIS_URL`` when set, else a throwaway redis-server on a free loopback port."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server)")
    workdir = tempfile.mkdtemp(prefix="scale-redis-")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", workdir, "--save", "",
         "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "no"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port, proc)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def with_prefix(url: str) -> str:
    """``url`` with a fresh key prefix (runs never see each other's keys)."""
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}prefix=scale{uuid.uuid4().hex[:10]}"


def settings_doc(store: str, blobs: str, smsc_port: int, binds: int) -> dict[str, Any]:
    """The configuration every gateway process of a run gets."""
    smpp = {"id": "smsc", "kind": "smpp", "channels": ["sms"], "host": "127.0.0.1",
            "port": smsc_port, "system_id": SYSTEM_ID, "password": PASSWORD, "binds": binds,
            "window": 64, "rate": 0, "bind_lease": BIND_LEASE}  # fmt: skip
    return {
        "gateway": {"store": store, "blobs": blobs, "poll_interval": 0.2},
        "connectors": [smpp],
        # One sender to 1000 recipients at full speed: the flood limits would refuse most.
        "policy": {"member_limit": False, "destination_limit": False},
    }


def toml(doc: dict[str, Any]) -> str:
    """The little TOML these documents need (tables, arrays of tables, scalars)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)

    out = []
    for name, table in doc.items():
        for item in table if isinstance(table, list) else [table]:
            out.append(f"[[{name}]]" if isinstance(table, list) else f"[{name}]")
            out += [f"{k} = {value(v)}" for k, v in item.items()]
    return "\n".join(out) + "\n"


class Run:
    """The processes of one configuration: SMSC, gateway processes; CPU and cleanup."""

    def __init__(self, workdir: Path, store: str, binds: int, receipt_delay: float) -> None:
        self.workdir = workdir
        self.store = store
        self.binds = binds
        self.smsc_port = free_port()
        self.stats = workdir / "smsc.json"
        self.smsc = subprocess.Popen(
            [sys.executable, "-m", "connectors.smpp.simulator", "--port", str(self.smsc_port),
             "--system-id", SYSTEM_ID, "--password", PASSWORD, "--receipt-delay",
             str(receipt_delay), "--stats", str(self.stats)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_port(self.smsc_port, self.smsc)
        self.config = workdir / "gateway.toml"
        doc = settings_doc(store, str(workdir / "blobs"), self.smsc_port, binds)
        self.config.write_text(toml(doc), encoding="utf-8")
        self.gateways: list[subprocess.Popen[bytes]] = []
        self.roles: list[str] = []  # each gateway process's: "API" or "workers"
        self.api_ports: list[int] = []

    def start(self, *args: str, port: int | None = None) -> None:
        """One ``gateway …`` process of this run."""
        log = (self.workdir / f"gateway{len(self.gateways)}.log").open("ab")
        cmd = [sys.executable, "-m", "gateway.cli", *args, "--config", str(self.config)]
        if port is not None:
            cmd += ["--port", str(port)]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=log)
        self.gateways.append(proc)
        self.roles.append("workers" if args[0] == "worker" else "API")
        if port is not None:
            wait_port(port, proc)
            self.api_ports.append(port)

    def cpu(self) -> float:
        """CPU-seconds the gateway processes used so far."""
        return sum(self.cpu_by_role().values())

    def cpu_by_role(self) -> dict[str, float]:
        """CPU-seconds so far of the API processes and of the worker processes."""
        by: dict[str, float] = {}
        for proc, role in zip(self.gateways, self.roles, strict=True):
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            by[role] = by.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
        return by

    def wakeups_by_role(self) -> dict[str, int]:
        """Times the processes of each role slept and were woken so far (voluntary context
        switches, all threads): an event loop's wake-ups, which more processes sharing
        one load make more of per message."""
        by: dict[str, int] = {}
        for proc, role in zip(self.gateways, self.roles, strict=True):
            for task in Path(f"/proc/{proc.pid}/task").iterdir():
                for line in (task / "status").read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        by[role] = by.get(role, 0) + int(line.split()[1])
        return by

    def stop(self) -> dict[str, int]:
        """Stop everything; the SMSC's counts (accepted submits, most binds at once)."""
        for proc in self.gateways:
            stop_process(proc, timeout=60)
        stop_process(self.smsc)
        return dict(json.loads(self.stats.read_text())) if self.stats.exists() else {}


async def redis_info(url: str | None, section: str) -> dict[str, Any]:
    """One section of Redis's ``INFO`` ({} without Redis)."""
    if url is None:
        return {}
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url.split("?")[0])
    try:
        return dict(await client.info(section))
    finally:
        await client.aclose()


async def redis_commands(url: str | None) -> dict[str, int]:
    """Calls Redis served so far, by command (``INFO commandstats``; {} without Redis)."""
    info = await redis_info(url, "commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()}


async def redis_cpu(url: str | None) -> float:
    """CPU-seconds Redis used so far (0 without Redis)."""
    info = await redis_info(url, "cpu")
    return float(info.get("used_cpu_sys", 0)) + float(info.get("used_cpu_user", 0))


# -- the store: seeding, following the event log -------------------------------------------
async def open_rt(store: str, blobs: str, smsc_port: int, binds: int) -> Any:
    """A runtime on ``store`` (connectors built, not started) for seeding and watching."""
    import connectors.smpp.connector  # noqa: F401  (registers kind "smpp")
    from gateway.config import parse_settings
    from gateway.process import open_runtime

    settings = parse_settings(settings_doc(store, blobs, smsc_port, binds))
    return await open_runtime(settings, start_connectors=False)


async def seed_messages(rt: Any, info: dict[str, Any], count: int) -> None:
    """``count`` SMS through the one outbound path, in process (no HTTP); their send
    jobs are then leased and acked: the queue is empty, the messages stay accepted."""
    from datetime import timedelta

    from gateway import outbound
    from gateway.auth import Principal
    from gateway.commands import SendRequest
    from gateway.models import Channel

    principal = Principal(info["team_id"], info["member_id"], "seed")
    contacts = itertools.cycle(f"+49151{12340000 + i}" for i in range(CONTACTS))

    async def one() -> None:
        req = SendRequest(channel=Channel.SMS, from_=SENDER, to=next(contacts), text=TEXT)
        await outbound.submit(rt, principal, req)

    for start in range(0, count, 500):
        await asyncio.gather(*(one() for _ in range(min(500, count - start))))
    while jobs := await rt.store.lease_jobs(
        rt.clock.now(), "seed", timedelta(minutes=10), 1000, kinds={"send"}
    ):
        await asyncio.gather(*(rt.store.ack_job(j.id, j.token or "") for j in jobs))


async def last_seq(store: Any) -> int:
    """The event log's last seq."""
    seq = 0
    while batch := await store.list_events(seq, 5000):
        seq = batch[-1].seq
    return seq


async def follow_delivered(store: Any, after: int, ids: set[str], timeout: float) -> set[str]:
    """Read the event log from ``after`` until every one of ``ids`` is delivered (or
    ``timeout`` passes without progress); the delivered ones."""
    from gateway.events import MESSAGE_STATUS

    delivered: set[str] = set()
    quiet_since = time.monotonic()
    while delivered < ids and time.monotonic() - quiet_since < timeout:
        batch = await store.list_events(after, 5000)
        if not batch:
            await asyncio.sleep(0.1)
            continue
        quiet_since = time.monotonic()
        after = batch[-1].seq
        for ev in batch:
            data = ev.data
            if ev.type == MESSAGE_STATUS and data.get("status") == "delivered" and (
                data.get("id") in ids
            ):
                delivered.add(str(data["id"]))
    return delivered


# -- the client --------------------------------------------------------------------------
class _Http:
    """One keep-alive HTTP/1.1 connection of the load client, as lean as it can be: the
    client must not be what the machine is busy with (httpx spends about a core's
    worth of CPU on its connection pool at 250 requests a second, on a 2-core machine
    the gateway is measured on)."""

    def __init__(self, port: int, key: str) -> None:
        self.port = port
        self.head = (
            f"POST /v1/messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
        )
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """POST ``body``; the status and the response body. A connection the server
        closed while it was idle (so it never read the request) is opened again, once."""
        for _ in range(2):
            if self.writer is None or self.writer.is_closing():
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            assert self.reader is not None
            self.writer.write(f"{self.head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
            try:
                head = await self.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                self.writer.close()  # closed by the server while idle: once more
                continue
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            length, close = 0, False
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value)
                elif name.lower() == "connection" and value.strip().lower() == "close":
                    close = True
            data = await self.reader.readexactly(length)
            if close:
                self.writer.close()
            return status, data
        raise ConnectionError(f"the API on port {self.port} keeps closing the connection")

    def close(self) -> None:
        """Close the connection."""
        if self.writer is not None:
            self.writer.close()


async def post_all(
    ports: Sequence[int], key: str, count: int, concurrency: int, rate: float = 0
) -> set[str]:
    """POST ``count`` SMS over the API processes (round robin), ``rate`` a second at most
    (0: as fast as ``concurrency`` connections allow); the ids answered 202."""
    conns = [_Http(ports[n % len(ports)], key) for n in range(concurrency)]
    ids: set[str] = set()
    counter = itertools.count()
    start = time.monotonic()

    async def worker(conn: _Http) -> None:
        while (n := next(counter)) < count:
            if rate:  # paced: message n leaves at n / rate seconds, not before
                await asyncio.sleep(start + n / rate - time.monotonic())
            body = {"channel": "sms", "from": SENDER, "to": f"+49151{12340000 + n % CONTACTS}",
                    "text": TEXT}  # fmt: skip
            status, data = await conn.post(json.dumps(body).encode())
            if status == 202:
                ids.add(json.loads(data)["id"])

    try:
        await asyncio.gather(*(worker(c) for c in conns))
    finally:
        for c in conns:
            c.close()
    return ids


async def measure(run: Run, rt: Any, info: dict[str, Any], args: argparse.Namespace,
                  label: str, redis_url: str | None, rate: float = 0) -> Result:  # fmt: skip
    """The load on a started run (``rate`` a second at most; 0: as fast as it goes): CPU
    from the first POST to the last delivered."""
    after = await last_seq(rt.store)
    calls0 = await redis_commands(redis_url)
    roles0, wakes0 = run.cpu_by_role(), run.wakeups_by_role()
    rcpu0, t0 = await redis_cpu(redis_url), time.monotonic()
    ids = await post_all(run.api_ports, info["key"], args.messages, args.concurrency, rate)
    delivered = await follow_delivered(rt.store, after, ids, args.drain)
    seconds = time.monotonic() - t0
    roles = {r: c - roles0.get(r, 0.0) for r, c in run.cpu_by_role().items()}
    wakes = {r: n - wakes0.get(r, 0) for r, n in run.wakeups_by_role().items()}
    if redis_url is not None:
        roles["Redis"] = await redis_cpu(redis_url) - rcpu0
    cpu = sum(roles.values())
    # The bench's own reads of the log (follow_delivered) are among them, the same for
    # every configuration.
    calls = {c: n - calls0.get(c, 0) for c, n in (await redis_commands(redis_url)).items()}
    smsc = run.stop()
    submits, most = int(smsc.get("accepted", -1)), int(smsc.get("most_bound", 0))
    return Result(label, len(ids), len(delivered), seconds, cpu, submits, most, run.binds,
                  {c: n for c, n in calls.items() if n > 0} if redis_url else None, roles,
                  wakes)


async def wait_binds(rt: Any, binds: int, timeout: float = 120) -> None:
    """Until the worker processes hold every bind slot (they spread one lease apart)."""
    deadline = time.monotonic() + timeout
    co = rt.store.coordination()
    while await co.slots_held("smpp:smsc", binds) < binds and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.2)


async def caught_up(run: Run, timeout: float = 900) -> float:
    """Seconds until the gateway processes are idle (under 5 % of a core over a second):
    a process started on a store seeded without it first catches its read models (the
    portal's inbox index, the webhook fan-out cursor) up on the whole event log, a cost
    paid once, not per message."""
    t0 = time.monotonic()
    before = run.cpu()
    while time.monotonic() - t0 < timeout:
        await asyncio.sleep(1.0)
        now = run.cpu()
        if now - before < 0.05:
            break
        before = now
    return time.monotonic() - t0


async def processes_round(
    args: argparse.Namespace, redis_url: str, here: Path, workers: int
) -> Result:
    """One run of (a): ``workers`` worker processes and ``--api`` API-only processes."""
    store = with_prefix(redis_url)
    run = Run(here, store, args.binds, args.receipt_delay)
    rt = await open_rt(store, str(run.workdir / "blobs"), run.smsc_port, args.binds)
    try:
        info = await seed_sender(rt)
        for _ in range(args.api):
            run.start("serve", "--no-workers", port=free_port())
        for _ in range(workers):
            run.start("worker")
        await wait_binds(rt, args.binds)
        label = f"{workers} worker + {args.api} API"
        return await measure(run, rt, info, args, label, store, args.rate)
    finally:
        run.stop()
        await rt.aclose()


async def part_processes(args: argparse.Namespace, redis_url: str, workdir: Path) -> list[Result]:
    """(a) 1, 2, 3 … worker processes plus API-only processes on one Redis, in
    ``rounds`` interleaved rounds; the median per configuration is compared with the
    first's (flat: within FLAT)."""
    runs: dict[int, list[Result]] = {w: [] for w in args.workers}
    for n in range(args.rounds):
        for workers in args.workers:
            here = workdir / f"w{workers}" / f"round{n}"
            here.mkdir(parents=True)
            result = await processes_round(args, redis_url, here, workers)
            runs[workers].append(result)
            print(result.row() + f"   (round {n + 1})", flush=True)
            if result.cpu_roles is not None and result.wakeups is not None:
                print(roles_line(result.cpu_roles, result.wakeups, result.delivered), flush=True)
            if result.redis_calls is not None:
                print(redis_line(result.redis_calls, result.delivered), flush=True)
    first = middle([r.per_1000 for r in runs[args.workers[0]]])
    for workers, results in runs.items():
        median = middle([r.per_1000 for r in results])
        rounds = ", ".join(f"{r.per_1000:.2f}" for r in sorted(results, key=lambda r: r.per_1000))
        line = (f"MEDIAN {workers} worker + {args.api} API: {median:.2f} CPU-s per 1,000 "
                f"delivered (rounds: {rounds})")  # fmt: skip
        if workers != args.workers[0]:
            ratio = median / first if first else 0.0
            verdict = "FLAT" if ratio <= FLAT else "NOT FLAT"
            line += (f"; RATIO vs {args.workers[0]} worker: {ratio:.2f} (flat: <= {FLAT:.2f})"
                     f" -> {verdict}")  # fmt: skip
        print(line, flush=True)
    return [r for results in runs.values() for r in results]


def middle(values: Sequence[float]) -> float:
    """The median of the rounds (of an even number, the upper of the middle two)."""
    return sorted(values)[len(values) // 2]


@dataclass
class Seeded:
    """A store of the growth part, seeded once and measured in every round."""

    backend: str
    size: int
    store: str
    info: dict[str, Any]
    results: list[Result]

    @property
    def median(self) -> float:
        """The median CPU-seconds per 1,000 delivered over the rounds."""
        return middle([r.per_1000 for r in self.results])


async def seed_store(backend: str, size: int, redis_url: str | None, here: Path) -> Seeded:
    """A new store on ``backend`` with ``size`` messages (and their events) in it."""
    if backend == "redis":
        assert redis_url is not None
        store = with_prefix(redis_url)
    else:
        store = f"sqlite:///{here}/gateway.db"
    rt = await open_rt(store, str(here / "blobs"), 1, 1)
    try:
        info = await seed_sender(rt)
        t0 = time.monotonic()
        await seed_messages(rt, info, size)
    finally:
        await rt.aclose()  # SQLite: one process owns the file, the gateway comes next
    print(f"  ({backend}: {size:,} messages seeded in {time.monotonic() - t0:.0f} s)", flush=True)
    return Seeded(backend, size, store, info, [])


async def growth_round(seeded: Seeded, args: argparse.Namespace, here: Path) -> Result:
    """One ``gateway serve`` on the seeded store: caught up, then the load."""
    run = Run(here, seeded.store, 1, args.receipt_delay)
    rt = None
    try:
        run.start("serve", port=free_port())
        took = await caught_up(run)
        if took > 5:  # the first round: the read models were never run on the seeded log
            print(f"  ({seeded.backend}, {seeded.size:,}: the gateway caught up on the event "
                  f"log in {took:.0f} s)", flush=True)  # fmt: skip
        rt = await open_rt(seeded.store, str(here / "blobs"), run.smsc_port, 1)
        label = f"{seeded.backend}, {seeded.size:,} in store"
        red = seeded.store if seeded.backend == "redis" else None
        return await measure(run, rt, seeded.info, args, label, red, args.rate)
    finally:
        run.stop()
        if rt is not None:
            await rt.aclose()


async def part_growth(
    args: argparse.Namespace, redis_url: str | None, workdir: Path
) -> list[Result]:
    """(b) CPU per message with ``sizes`` messages already in the store, per backend: the
    stores are seeded first, then measured in ``rounds`` interleaved rounds at one paced
    rate (the median counts: a shared 2-core machine moves single runs by 20 %)."""
    stores = []
    for backend in args.backends:
        for size in args.sizes:
            here = workdir / f"{backend}{size}"
            here.mkdir()
            stores.append(await seed_store(backend, size, redis_url, here))
    for n in range(args.rounds):
        for seeded in stores:
            here = workdir / f"{seeded.backend}{seeded.size}" / f"round{n}"
            here.mkdir()
            result = await growth_round(seeded, args, here)
            seeded.results.append(result)
            print(result.row() + f"   (round {n + 1})", flush=True)
    results = []
    for seeded in stores:
        results += seeded.results
        rounds = ", ".join(f"{f:.2f}" for f in sorted(r.per_1000 for r in seeded.results))
        print(f"MEDIAN {seeded.backend}, {seeded.size:,} in store: {seeded.median:.2f} CPU-s per "
              f"1,000 delivered (rounds: {rounds})", flush=True)  # fmt: skip
        first = next(s for s in stores if s.backend == seeded.backend)
        if seeded is not first:
            ratio = seeded.median / first.median if first.median else 0.0
            verdict = "GOAL MET" if ratio <= GROWTH_GOAL else "GOAL MISSED"
            print(f"RATIO {seeded.backend} CPU per message, {seeded.size:,} vs {first.size:,} "
                  f"in store: {ratio:.2f} (goal <= {GROWTH_GOAL:.2f}) -> {verdict}",
                  flush=True)  # fmt: skip
    return results


async def cpu_in_process(store: str, blobs: str, count: int) -> float:
    """CPU-seconds per 1,000 delivered of ONE process (this one, its Redis not counted)
    running the send path in process: ``outbound.submit`` → send job → SMPP (an SMSC
    simulator in this process) → receipt → ``delivered``; no HTTP."""
    from datetime import timedelta

    from connectors.smpp.simulator import SmscSimulator
    from gateway import outbound
    from gateway.auth import Principal
    from gateway.commands import SendRequest
    from gateway.models import Channel
    from gateway.process import worker

    sim = SmscSimulator(system_id=SYSTEM_ID, password=PASSWORD, receipt_delay=0.05,
                        record=False)  # fmt: skip
    await sim.start()
    from gateway.config import parse_settings
    from gateway.process import open_runtime

    rt = await open_runtime(parse_settings(settings_doc(store, blobs, sim.port, 2)))
    stop = asyncio.Event()
    try:
        await rt.wait_started(30)
        info = await seed_sender(rt)
        principal = Principal(info["team_id"], info["member_id"], "bench")
        jobs = asyncio.create_task(worker(rt).run(stop))
        gate = asyncio.Semaphore(64)

        async def send(n: int) -> str:
            async with gate:
                to = f"+49151{12340000 + n % CONTACTS}"
                req = SendRequest(channel=Channel.SMS, from_=SENDER, to=to, text=TEXT)
                accepted = await outbound.submit(rt, principal, req)
                rt.wake_workers()
                return accepted.message.id

        async def batch(first: int, n: int) -> None:
            after = await last_seq(rt.store)
            ids = set(await asyncio.gather(*(send(i) for i in range(first, first + n))))
            delivered = await follow_delivered(rt.store, after, ids, 60)
            if delivered != ids:
                raise SystemExit(f"cpu: {len(ids - delivered)} messages not delivered")

        await batch(0, min(200, count))  # warm-up: imports, caches, connections
        c0 = time.process_time()
        await batch(10_000, count)
        cpu = time.process_time() - c0
        stop.set()
        await asyncio.wait_for(jobs, timedelta(seconds=60).total_seconds())
    finally:
        stop.set()
        await rt.aclose()
        await sim.stop()
    return cpu / count * 1000


async def part_cpu(args: argparse.Namespace, redis_url: str | None, workdir: Path) -> None:
    """Item 5: CPU per message of one process, Redis vs SQLite, side by side in
    ``rounds`` interleaved rounds (the medians count: single runs move by 10 %)."""
    figures: dict[str, list[float]] = {b: [] for b in args.backends}
    for n in range(args.rounds):
        for backend in args.backends:
            here = workdir / f"cpu-{backend}-{n}"
            here.mkdir()
            store = with_prefix(redis_url) if backend == "redis" and redis_url else (
                f"sqlite:///{here}/gateway.db")  # fmt: skip
            figure = await cpu_in_process(store, str(here / "blobs"), args.messages)
            figures[backend].append(figure)
            print(f"  one process, {backend:<6} {figure:.3f} CPU-s per 1,000 delivered (in "
                  f"process, no HTTP; Redis's own CPU not counted)   (round {n + 1})",
                  flush=True)  # fmt: skip
    medians = {b: middle(f) for b, f in figures.items()}
    for backend, median in medians.items():
        rounds = ", ".join(f"{f:.3f}" for f in sorted(figures[backend]))
        print(f"MEDIAN one process, {backend}: {median:.3f} CPU-s per 1,000 delivered "
              f"(rounds: {rounds})", flush=True)  # fmt: skip
    if {"sqlite", "redis"} <= medians.keys():
        ratio = medians["redis"] / medians["sqlite"]
        verdict = "GOAL MET" if ratio <= 1.0 else "GOAL MISSED"
        print(f"RATIO one process CPU per message, redis vs sqlite: {ratio:.2f} (goal <= 1.00)"
              f" -> {verdict}", flush=True)  # fmt: skip


def _numbers(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main(argv: list[str] | None = None) -> int:
    """Run the parts asked for; 1 when a run failed a check."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--part", default="processes,growth")
    p.add_argument("--messages", type=int, default=20_000)
    p.add_argument("--workers", type=_numbers, default=[1, 2, 3])
    p.add_argument("--api", type=int, default=1)
    p.add_argument("--binds", type=int, default=3)
    p.add_argument("--sizes", type=_numbers, default=[10_000, 500_000])
    p.add_argument("--backends", default="sqlite,redis")
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--receipt-delay", type=float, default=0.2)
    p.add_argument("--rate", type=float, default=250.0,
                   help="processes and growth: messages a second the client offers, one rate "
                        "for every configuration (0: as fast as it goes)")
    p.add_argument("--rounds", type=int, default=3,
                   help="every part: interleaved rounds (the median counts)")
    p.add_argument("--drain", type=float, default=60.0, help="seconds without progress")
    args = p.parse_args(argv)
    args.backends = [b for b in args.backends.split(",") if b]
    parts = set(args.part.split(","))
    print(f"scale: {args.messages:,} messages per run, {os.cpu_count()} CPUs; CPU-s/1000 "
          "counts every gateway process and Redis", flush=True)  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp, redis_server() as redis_url:
        workdir = Path(tmp)
        results: list[Result] = []
        print(HEADER, flush=True)
        if "processes" in parts:
            results += asyncio.run(part_processes(args, redis_url, workdir))
        if "growth" in parts:
            results += asyncio.run(part_growth(args, redis_url, workdir))
        if "cpu" in parts:
            asyncio.run(part_cpu(args, redis_url, workdir))
    failed = [r for r in results if not r.ok]
    print(f"CHECKS {len(results) - len(failed)} of {len(results)} runs: 0 lost, 0 duplicated, "
          f"binds within the limit -> {'ALL OK' if not failed else 'FAILED'}")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
