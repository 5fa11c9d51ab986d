"""Chaos bench: sends through two API processes and two workers on one Redis while
processes (and Redis itself) are SIGKILLed and restarted; then every invariant is checked.

Processes, all on free loopback ports and all started (and stopped) by this bench:

- **Redis**: a throwaway ``redis-server`` with AOF and ``appendfsync always``: a write is
  on disk before Redis answers it, so a SIGKILL of Redis loses nothing it acknowledged,
  whatever the timing. (``everysec`` hands its writes to the kernel before it answers too,
  except when a slow fsync made it postpone them, and loses up to about a second of them
  when the machine itself crashes: messages answered 202, job acks, ledger charges.) With
  ``REDIS_URL`` set, that server is used under a fresh key prefix, deleted at the end, and
  never killed (it is not ours): the Redis kill is skipped.
- **two API processes**: ``gateway serve`` (``python -m gateway.cli serve``), each on its
  own port. ``gateway serve`` always runs job workers beside the API today (API-only
  processes come with issue 14), so killing an API process also kills job workers.
- **two workers**: ``gateway worker``.
- **the SMSC**: the gateway's SMSC simulator (``connectors.smpp.simulator``), in this
  process, recording every submit_sm it accepts and when.
- **the client** (this process): ``--connections`` keep-alive connections, half to each
  API process, send ``--sends`` SMS with an ``Idempotency-Key`` each. A connection error,
  a 5xx, a 409 (the key's first request still in progress) or a 429 is retried with the
  same key and body (to the other API process after a connection error), as a careful
  client does; the retries are counted. Each message's text carries its number, so the
  SMSC side can tell which send it is.

Kills: ``--kills api=2,worker=2,redis=1`` SIGKILLs at moments drawn at random (``--seed``)
while the load runs; the API or worker instance is picked at random and restarted at once,
Redis after ``--redis-down`` seconds, on its AOF. After a process kill the bench reads
which send jobs the dead process held (their leases name its pid); before the Redis kill
and after its restart it reads every leased send job. A message sent twice is *attributed*
to a kill when its job was among those (its submit_sm may have been on the wire, or
answered but not recorded, when the process died: SMPP has no idempotency key), or when
its first copy reached the SMSC while Redis was down.

Afterwards (the load done, every accepted message at the SMSC and no send job left, at
most ``--drain`` seconds), the processes are stopped and the store is read:

- LOST: accepted (202) messages whose text never reached the SMSC;
- NOT STORED: 202 answers whose message id the store does not hold (a 202 without a
  stored message);
- DUPLICATES: texts the SMSC accepted more than once, each attributed to a kill or not;
- DOUBLE CHARGES: sends stored (and charged) as more than one message, and the quota
  ledger against the charged messages;
- answers while Redis was down: must be errors (5xx problem+json), never a 202;
- throughput (accepted and delivered to the SMSC per second), CPU per message of the
  gateway processes and of Redis, and per kill how long recovery took.

The last line is ``INVARIANTS OK`` or ``INVARIANTS VIOLATED``. Like every bench it exits 0
either way (``tests/test_chaos.py`` runs a small version and asserts the invariants).

Usage::

    .venv/bin/python -m bench.chaos [--sends 10000] [--connections 32] [--rate 0]
        [--kills api=2,worker=2,redis=1] [--seed N] [--redis-down 3] [--visibility 10]
        [--drain 300] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if not __package__:  # run as a script (bench/chaos.py): make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench._common import REPO, SENDER, free_port, seed_sender

SYSTEM_ID, PASSWORD = "chaos", "secret"
BINDS = 8  # binds to the SMSC in all (2 per gateway process once spread over the four)
PATH = "/v1/messages"
CONTACTS = 1000
_TEXT = re.compile(r"chaos ([0-9a-f]+) (\d{6})")
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.I)
_CONTENT_TYPE = re.compile(rb"\r\ncontent-type:\s*([^\r]+)", re.I)
_REPLAYED = re.compile(rb"\r\nidempotency-replayed:\s*true", re.I)
_CLOSE = re.compile(rb"\r\nconnection:\s*close", re.I)
_ID = re.compile(rb'"id":"(msg_[^"]+)"')
_CODE = re.compile(rb'"code":"([a-z_]+)"')


# ---------------------------------------------------------------------------------------
# Child processes
# ---------------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process so far (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Child:
    """One process the bench runs, restarted as often as it is killed."""

    name: str
    kind: str  # "api", "worker" or "redis"
    cmd: list[str]
    log: Path
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    cpu: float = 0.0  # CPU of the instances that ended, within the measured span
    base: float = 0.0  # CPU the current instance had used when the measured span began
    starts: int = 0
    startup: float = 0.0  # CPU of the restarted instances until they were ready

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        """Start an instance (its output appended to the log)."""
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(
                self.cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        self.starts += 1
        self.base = 0.0

    def begin_measuring(self) -> None:
        """The measured span starts now: what the instance used so far does not count."""
        self.base = cpu_seconds(self.pid) or 0.0

    def _account(self) -> None:
        used = cpu_seconds(self.pid)
        if used is not None:
            self.cpu += max(0.0, used - self.base)

    def kill(self) -> None:
        """SIGKILL the instance (its CPU so far is counted first)."""
        assert self.proc is not None
        self._account()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit within 30 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self._account()
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


async def wait_listening(child: Child, timeout: float = 60.0) -> None:
    """Until ``child``'s port accepts connections (RuntimeError if it exits first)."""
    assert child.port is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited; see {child.log}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", child.port)
        except OSError:
            await asyncio.sleep(0.02)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    raise TimeoutError(f"{child.name} does not listen on {child.port} after {timeout} s")


async def wait_logged(child: Child, text: str, times: int, timeout: float = 60.0) -> None:
    """Until ``child``'s log holds ``text`` ``times`` times (RuntimeError if it exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited; see {child.log}")
        if child.log.read_text(errors="replace").count(text) >= times:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{child.name} did not log {text!r} within {timeout} s")


def redis_child(work: Path) -> Child:
    """A throwaway redis-server with AOF (appendfsync always) in ``work``."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed: run `make test`, which installs it")
    port = free_port()
    data = work / "redis"
    data.mkdir()
    cmd = [
        exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--save", "",
        "--appendonly", "yes", "--appendfsync", "always", "--protected-mode", "no",
    ]  # fmt: skip
    return Child("redis", "redis", cmd, work / "redis.log", port)


def write_config(work: Path, store: str, smsc_port: int, visibility: float) -> Path:
    """The configuration every gateway process reads."""
    path = work / "gateway.toml"
    path.write_text(
        f"""
[gateway]
store = "{store}"
blobs = "{work / "blobs"}"
workers = 64
job_visibility_seconds = {visibility}
poll_interval = 0.2

[[connectors]]
id = "smsc"
kind = "smpp"
channels = ["sms"]
host = "127.0.0.1"
port = {smsc_port}
system_id = "{SYSTEM_ID}"
password = "{PASSWORD}"
# The total over the four gateway processes (bind slots in Redis): 2 each once spread.
binds = {BINDS}
bind_lease = 5
window = 64
rate = 0

[policy]
# One sender to 1000 recipients at full speed: the flood limits would refuse most of it.
member_limit = false
destination_limit = false
""",
        encoding="utf-8",
    )
    return path


def gateway_child(work: Path, name: str, kind: str, config: Path) -> Child:
    """``gateway serve`` (kind api, on a free port) or ``gateway worker``."""
    cmd = [sys.executable, "-m", "gateway.cli"]
    if kind == "api":
        port = free_port()
        cmd += ["serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]
        return Child(name, kind, cmd, work / f"{name}.log", port)
    return Child(name, kind, [*cmd, "worker", "--config", str(config)], work / f"{name}.log")


# ---------------------------------------------------------------------------------------
# The SMSC, in this process
# ---------------------------------------------------------------------------------------
class Smsc:
    """The SMSC simulator, and when each accepted text arrived (polled every 10 ms)."""

    def __init__(self, run: str) -> None:
        from connectors.smpp.simulator import SmscSimulator

        self.run = run
        self.sim = SmscSimulator(system_id=SYSTEM_ID, password=PASSWORD, receipt_delay=0.2)
        self.arrivals: dict[int, list[float]] = collections.defaultdict(list)
        self.other = 0  # accepted texts that are not this run's
        self._seen = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        await self.sim.start()
        self._task = asyncio.create_task(self._poll())
        return self.sim.port

    def collect(self) -> None:
        """Note the submits that arrived since the last look."""
        now = time.monotonic()
        submits = self.sim.submits
        for sub in submits[self._seen :]:
            if sub.status != 0:
                continue
            m = _TEXT.search(sub.text)
            if m and m.group(1) == self.run:
                self.arrivals[int(m.group(2))].append(now)
            else:
                self.other += 1
        self._seen = len(submits)

    async def _poll(self) -> None:
        while True:
            self.collect()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.collect()
        await self.sim.stop()


# ---------------------------------------------------------------------------------------
# The client
# ---------------------------------------------------------------------------------------
@dataclass
class Load:
    """What the client saw."""

    accepted: dict[int, str] = field(default_factory=dict)  # seq -> message id
    accepted_at: dict[int, float] = field(default_factory=dict)
    answers: collections.Counter[str] = field(default_factory=collections.Counter)
    retries: collections.Counter[str] = field(default_factory=collections.Counter)
    errors: list[tuple[float, str]] = field(default_factory=list)  # (time, what) non-202
    bad_errors: list[str] = field(default_factory=list)  # 5xx that is not problem+json
    refused: list[str] = field(default_factory=list)  # 4xx a retry cannot fix
    gave_up: set[int] = field(default_factory=set)
    start: float = 0.0
    end: float = 0.0


class Client:
    """Sends ``total`` messages over ``connections`` connections, half to each API port."""

    def __init__(
        self, ports: list[int], key: str, run: str, total: int, connections: int, rate: float
    ) -> None:
        self.ports = ports
        self.key = key
        self.run = run
        self.total = total
        self.connections = connections
        self.rate = rate
        self.issued = 0  # sends started (the kill schedule follows it)
        self.load = Load()
        self.deadline = 0.0

    def body(self, seq: int) -> bytes:
        to = f"+49151{12340000 + seq % CONTACTS}"
        text = f"chaos {self.run} {seq:06d} Ihr Code lautet {seq % 1000000:06d}."
        doc = {"channel": "sms", "from": SENDER, "to": to, "text": text}
        return json.dumps(doc, separators=(",", ":")).encode()

    def request(self, seq: int, port: int) -> bytes:
        body = self.body(seq)
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer {self.key}\r\n"
            f"Idempotency-Key: chaos-{self.run}-{seq}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def run_load(self, max_seconds: float) -> Load:
        self.load.start = time.monotonic()
        self.deadline = self.load.start + max_seconds
        await asyncio.gather(*(self._conn(i) for i in range(self.connections)))
        self.load.end = time.monotonic()
        return self.load

    def _next(self) -> int | None:
        if self.issued >= self.total:
            return None
        seq = self.issued
        self.issued += 1
        return seq

    async def _conn(self, index: int) -> None:
        target = index % len(self.ports)
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        load = self.load
        try:
            while (seq := self._next()) is not None:
                if self.rate > 0:
                    due = load.start + seq / self.rate
                    if due > time.monotonic():
                        await asyncio.sleep(due - time.monotonic())
                attempt = 0
                while True:
                    if time.monotonic() > self.deadline:
                        load.gave_up.add(seq)
                        break
                    if attempt:
                        await asyncio.sleep(min(1.0, 0.05 * 2 ** min(attempt - 1, 5)))
                    attempt += 1
                    try:
                        if writer is None:
                            reader, writer = await asyncio.wait_for(
                                asyncio.open_connection("127.0.0.1", self.ports[target]), 5
                            )
                        assert reader is not None
                        writer.write(self.request(seq, self.ports[target]))
                        status, head, body = await asyncio.wait_for(_response(reader), 60)
                    except (OSError, EOFError, TimeoutError, asyncio.IncompleteReadError) as exc:
                        if writer is not None:
                            writer.close()
                        reader = writer = None
                        what = f"connection error ({type(exc).__name__})"
                        load.answers[what] += 1
                        load.errors.append((time.monotonic(), what))
                        load.retries["connection error"] += 1
                        target = (target + 1) % len(self.ports)  # as a load balancer would
                        continue
                    if _CLOSE.search(head):
                        assert writer is not None
                        writer.close()
                        reader = writer = None
                    if status == 202 and (m := _ID.search(body)):
                        replayed = bool(_REPLAYED.search(head))
                        load.answers["202 replayed" if replayed else "202"] += 1
                        load.accepted[seq] = m.group(1).decode()
                        load.accepted_at[seq] = time.monotonic()
                        break
                    code = m.group(1).decode() if (m := _CODE.search(body)) else "-"
                    what = f"{status} {code}"
                    load.answers[what] += 1
                    load.errors.append((time.monotonic(), what))
                    if status >= 500:
                        ctype = _CONTENT_TYPE.search(head)
                        if not ctype or b"application/problem+json" not in ctype.group(1):
                            load.bad_errors.append(f"{what}: {head[:200]!r}")
                    elif status not in (409, 429):
                        load.refused.append(f"seq {seq}: {what}: {body[:300]!r}")
                        break
                    load.retries[what] += 1
        finally:
            if writer is not None:
                writer.close()


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    m = _CONTENT_LENGTH.search(head)
    body = await reader.readexactly(int(m.group(1))) if m else b""
    return status, head, body


# ---------------------------------------------------------------------------------------
# Kills
# ---------------------------------------------------------------------------------------
@dataclass
class Kill:
    """One SIGKILL and what it left behind."""

    kind: str
    target: str
    pid: int
    at: float = 0.0
    up: float = 0.0  # restarted and (for API and Redis) listening again
    jobs: set[str] = field(default_factory=set)  # message ids of send jobs it may have held
    first_202_after: float | None = None
    recovered: float | None = None  # the last of ``jobs`` reached the SMSC


def plan_kills(spec: dict[str, int], rng: random.Random) -> list[tuple[float, str]]:
    """(fraction of the sends issued, kind) of every kill, spread over the load."""
    kinds = [kind for kind, n in spec.items() for _ in range(n)]
    rng.shuffle(kinds)
    n = len(kinds)
    # One kill per slot of the 5-85 % stretch, at a random moment inside it: kills are
    # spread out, so each restart has happened before the next kill.
    return [(0.05 + 0.8 * (i + rng.uniform(0.15, 0.85)) / n, kind) for i, kind in enumerate(kinds)]


async def leased_send_jobs(store: Any, owner_pid: int | None) -> set[str]:
    """Message ids of the leased send jobs (of one process: its pid ends the owner)."""
    r = store.backend.client
    ids = await r.zrange(store.backend.key("jobs", "leased"), 0, -1)
    if not ids:
        return set()
    raws = await r.mget([store.backend.key("job", i) for i in ids])
    out = set()
    for raw in raws:
        if raw is None:
            continue
        job = json.loads(raw)
        token = str(job.get("token") or "")
        if job.get("kind") != "send":
            continue
        if owner_pid is None or f":{owner_pid}:" in token:
            out.add(str(job["payload"]["message_id"]))
    return out


async def drop_keys(store: Any) -> None:
    """Delete every key of the store's prefix (a run on someone else's Redis)."""
    r = store.backend.client
    batch = []
    async for key in r.scan_iter(match=store.backend.key("*"), count=1000):
        batch.append(key)
        if len(batch) >= 1000:
            await r.delete(*batch)
            batch = []
    if batch:
        await r.delete(*batch)


async def send_jobs_left(store: Any) -> int:
    """Send jobs still ready or leased."""
    r = store.backend.client
    left = 0
    for state in ("ready", "leased"):
        ids = await r.zrange(store.backend.key("jobs", state), 0, -1)
        if ids:
            raws = await r.mget([store.backend.key("job", i) for i in ids])
            left += sum(1 for raw in raws if raw and json.loads(raw).get("kind") == "send")
    return left


# ---------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------
def parse_kills(text: str) -> dict[str, int]:
    out = {"api": 0, "worker": 0, "redis": 0}
    for part in filter(None, text.split(",")):
        kind, _, n = part.partition("=")
        if kind not in out or not n.isdigit():
            raise argparse.ArgumentTypeError(f"--kills: {part!r} is not api=N, worker=N, redis=N")
        out[kind] = int(n)
    return out


@dataclass
class Stored:
    """The store as read after the run."""

    messages: dict[str, Any]  # message id -> Message
    by_seq: dict[int, list[Any]]  # this run's sends by number
    ledger_used: int
    charged_units: int


class Chaos:
    """One chaos run: the processes, the load, the kills, then the report."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.rng = random.Random(args.seed)
        self.run = uuid.uuid4().hex[:8]
        self.spec = parse_kills(args.kills)
        self.redis: Child | None = None
        self.apis: list[Child] = []
        self.workers: list[Child] = []
        self.kills: list[Kill] = []
        self.redis_down: list[tuple[float, float]] = []
        self.restarting: set[str] = set()  # children being restarted after a planned kill
        self.unplanned: list[str] = []  # children that exited without being killed
        self.store: Any = None
        self.smsc = Smsc(self.run)
        self.client: Client | None = None
        self.info: dict[str, Any] = {}
        self.appendfsync = "always"

    @property
    def gateways(self) -> list[Child]:
        return self.apis + self.workers

    async def main(self) -> bool:
        try:
            await self.setup()
            load = await self.load()
            stored = await self.read_store()
        finally:
            for child in self.gateways:
                child.stop()
            if self.store is not None:
                if self.redis is None:  # REDIS_URL: take this run's keys away again
                    await drop_keys(self.store)
                await self.store.aclose()
            if self.redis is not None:
                self.redis.stop()
            await self.smsc.stop()
        return self.report(load, stored)

    async def setup(self) -> None:
        from gateway.clock import SystemClock
        from gateway.store import make_store

        args, work = self.args, self.work
        if os.environ.get("REDIS_URL"):
            base = os.environ["REDIS_URL"]
            if self.spec["redis"]:
                print("redis kill: skipped (REDIS_URL is set: that server is not ours to kill)")
                self.spec["redis"] = 0
            self.appendfsync = "as configured at REDIS_URL"
        else:
            self.redis = redis_child(work)
            self.redis.start()
            await wait_listening(self.redis)
            base = f"redis://127.0.0.1:{self.redis.port}/0"
        sep = "&" if "?" in base else "?"
        url = f"{base}{sep}prefix=chaos{self.run}"
        smsc_port = await self.smsc.start()
        config = write_config(work, url, smsc_port, args.visibility)
        self.store = make_store(url)
        await self.store.open()
        clock = SystemClock()
        self.info = await seed_sender(types.SimpleNamespace(store=self.store, clock=clock))
        self.apis = [gateway_child(work, f"api-{i}", "api", config) for i in range(2)]
        self.workers = [gateway_child(work, f"worker-{i}", "worker", config) for i in range(2)]
        for child in self.gateways:
            child.start()
        for child in self.apis:
            await wait_listening(child)
        # The gateway processes share BINDS binds to the SMSC (bind slots): all of them up.
        await self.smsc.sim.wait_for(lambda: self.smsc.sim.bound >= BINDS, 60)
        print(
            f"chaos run {self.run}: {args.sends} sends over {args.connections} connections "
            f"(rate {args.rate or 'max'}), kills {self.spec}, seed {args.seed}, "
            f"job_visibility_seconds {args.visibility:g}, Redis AOF appendfsync "
            f"{self.appendfsync}; 2 x `gateway serve` (API + job workers) + 2 x "
            "`gateway worker`"
        )
        print(f"work directory {work}; store {url}", flush=True)

    # -- kills -----------------------------------------------------------------------------
    async def _restart(self, child: Child) -> None:
        """Start ``child`` again, as a supervisor would (again if it exits at once), and
        note the CPU it took to be ready (listening, or its worker started)."""
        for _ in range(50):
            child.start()
            try:
                if child.kind == "api":
                    await wait_listening(child)
                else:
                    await wait_logged(child, "worker started", child.starts)
            except RuntimeError:
                await asyncio.sleep(0.5)  # e.g. Redis still restarting: try again
                continue
            child.startup += cpu_seconds(child.pid) or 0.0
            return
        raise RuntimeError(f"{child.name} does not come back; see {child.log}")

    async def _leased(self, pid: int | None) -> set[str]:
        for _ in range(100):  # Redis may be restarting
            try:
                return await leased_send_jobs(self.store, pid)
            except Exception:
                await asyncio.sleep(0.1)
        return set()

    async def kill(self, kind: str) -> None:
        if kind == "redis":
            redis = self.redis
            assert redis is not None
            kill = Kill("redis", "redis", redis.pid)
            kill.jobs = await self._leased(None)
            kill.at = time.monotonic()
            redis.kill()
            self.kills.append(kill)
            await asyncio.sleep(self.args.redis_down)
            redis.start()
            await wait_listening(redis)
            kill.up = time.monotonic()
            self.redis_down.append((kill.at, kill.up))
            kill.jobs |= await self._leased(None)
            return
        child = self.rng.choice(self.apis if kind == "api" else self.workers)
        kill = Kill(kind, child.name, child.pid)
        self.restarting.add(child.name)
        kill.at = time.monotonic()
        child.kill()
        self.kills.append(kill)
        restart = asyncio.create_task(self._restart(child))
        kill.jobs = await self._leased(kill.pid)
        await restart
        kill.up = time.monotonic()
        self.restarting.discard(child.name)

    async def killer(self, client: Client) -> None:
        for fraction, kind in plan_kills(self.spec, self.rng):
            await self.smsc.sim.wait_for(
                lambda f=fraction: client.issued >= f * self.args.sends, self.args.max_seconds
            )
            await asyncio.sleep(self.rng.uniform(0.0, 0.2))
            await self.kill(kind)

    async def supervise(self) -> None:
        """Restart a gateway process that exited without being killed (and say so)."""
        while True:
            await asyncio.sleep(0.5)
            for child in self.gateways:
                if child.name not in self.restarting and not child.alive():
                    self.unplanned.append(
                        f"{child.name} exited with {child.proc and child.proc.returncode}"
                    )
                    self.restarting.add(child.name)
                    await asyncio.sleep(0.5)
                    await self._restart(child)
                    self.restarting.discard(child.name)

    # -- load and drain --------------------------------------------------------------------
    async def load(self) -> Load:
        args = self.args
        client = Client([c.port or 0 for c in self.apis], self.info["key"], self.run,
                        args.sends, args.connections, args.rate)  # fmt: skip
        self.client = client
        for child in [*self.gateways, *([self.redis] if self.redis else [])]:
            child.begin_measuring()
        killing = asyncio.create_task(self.killer(client))
        supervisor = asyncio.create_task(self.supervise())
        load = await client.run_load(args.max_seconds)
        await killing
        load_end = time.monotonic()
        # Drain: every accepted message at the SMSC and no send job left (bounded).
        deadline = time.monotonic() + args.drain
        smsc = self.smsc
        while time.monotonic() < deadline:
            smsc.collect()
            if all(s in smsc.arrivals for s in load.accepted):
                with contextlib.suppress(Exception):
                    if await send_jobs_left(self.store) == 0:
                        break
            await asyncio.sleep(0.25)
        await asyncio.sleep(1.0)  # late duplicates
        smsc.collect()
        self.drain_seconds = time.monotonic() - load_end
        supervisor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await supervisor
        for child in self.gateways:
            child.stop()
        return load

    async def read_store(self) -> Stored:
        """Every outbound message of the team and the member's ledger, after the run."""
        from gateway.models import Direction
        from gateway.store.base import MessageFilter

        store, info = self.store, self.info
        messages: dict[str, Any] = {}
        cursor = None
        flt = MessageFilter(team_id=info["team_id"], direction=Direction.OUTBOUND.value)
        while True:
            page = await store.list_messages(flt, cursor, 200)
            messages.update((m.id, m) for m in page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        by_seq: dict[int, list[Any]] = collections.defaultdict(list)
        for msg in messages.values():
            m = _TEXT.search(msg.text or "")
            if m and m.group(1) == self.run:
                by_seq[int(m.group(2))].append(msg)
        used = 0
        for period in {m.charged_period for m in messages.values() if m.charged_period}:
            lines, _ = await store.ledger(info["team_id"], period)
            used += sum(ln.used for ln in lines if ln.member_id == info["member_id"])
        charged = sum(m.units for m in messages.values() if m.charged_period)
        return Stored(messages, by_seq, used, charged)

    # -- the report ------------------------------------------------------------------------
    def report(self, load: Load, stored: Stored) -> bool:
        ok = True
        args, arrivals, accepted = self.args, self.smsc.arrivals, load.accepted
        print()
        print(
            f"SENDS {args.sends}: {len(accepted)} accepted (202), {len(load.gave_up)} given "
            f"up, {len(load.refused)} refused; {sum(load.retries.values())} retries with the "
            "same Idempotency-Key"
        )
        print("  answers: " + ", ".join(f"{k} {v}" for k, v in sorted(load.answers.items())))
        if load.retries:
            print(
                "  retried after: " + ", ".join(f"{k} {v}" for k, v in sorted(load.retries.items()))
            )
        for line in load.refused[:5]:
            print(f"  refused: {line}")
        ok &= not load.gave_up and not load.refused
        lost = sorted(s for s in accepted if s not in arrivals)
        ok &= not lost
        print(
            f"LOST {len(lost)} of {len(accepted)} accepted messages never reached the SMSC"
            + (f": seqs {lost[:20]}" if lost else "")
            + (" -> OK" if not lost else " -> FAIL")
        )
        not_stored = sorted(s for s, mid in accepted.items() if mid not in stored.messages)
        ok &= not not_stored
        print(
            f"NOT STORED {len(not_stored)} 202 answers whose message the store does not hold"
            + (f": seqs {not_stored[:20]}" if not_stored else "")
            + (" -> OK" if not not_stored else " -> FAIL")
        )
        ok &= self.report_duplicates(load, stored)
        double = sorted(
            s for s, msgs in stored.by_seq.items() if sum(1 for m in msgs if m.charged_period) > 1
        )
        ledger_ok = stored.ledger_used == stored.charged_units
        ok &= not double and ledger_ok
        print(
            f"DOUBLE CHARGES {len(double)} sends stored and charged as more than one message"
            + (f": seqs {double[:20]}" if double else "")
            + f"; ledger {stored.ledger_used} units used, charged messages "
            f"{stored.charged_units} units" + (" -> OK" if not double and ledger_ok else " -> FAIL")
        )
        orphans = sorted(s for s in stored.by_seq if s not in accepted)
        answered = set(accepted.values())
        unnamed = [mid for mid in stored.messages if mid not in answered]
        print(
            f"  stored messages {len(stored.messages)}; sends stored but never answered 202 "
            f"{len(orphans)}; stored messages no 202 named {len(unnamed)}"
        )
        statuses = collections.Counter(m.status for m in stored.messages.values())
        print("  final statuses: " + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items())))
        for down, up in self.redis_down:
            errs = collections.Counter(what for t, what in load.errors if down <= t <= up)
            during = sum(1 for t in load.accepted_at.values() if down <= t <= up)
            print(
                f"WHILE REDIS WAS DOWN ({up - down:.1f} s from the kill until the bench saw it "
                f"listen again): errors "
                + (", ".join(f"{k} {v}" for k, v in sorted(errs.items())) or "none")
                + f"; {during} x 202 (answered once it was back, a moment before the bench "
                "saw it: each must be stored, see NOT STORED)"
            )
        ok &= not load.bad_errors
        print(
            f"5XX WITHOUT problem+json {len(load.bad_errors)}"
            + "".join(f"\n  {b}" for b in load.bad_errors[:5])
            + (" -> OK" if not load.bad_errors else " -> FAIL")
        )
        if self.unplanned:
            ok = False
            print(f"UNPLANNED EXITS {len(self.unplanned)}: {'; '.join(self.unplanned)} -> FAIL")
        self.report_figures(load)
        done = {kind: sum(1 for k in self.kills if k.kind == kind) for kind in self.spec}
        if done != self.spec:
            ok = False
            print(f"KILLS DONE {done}, planned {self.spec} -> FAIL")
        print("INVARIANTS OK" if ok else "INVARIANTS VIOLATED")
        return ok

    def report_duplicates(self, load: Load, stored: Stored) -> bool:
        arrivals = self.smsc.arrivals
        dups = {s: t for s, t in arrivals.items() if len(t) > 1}
        unattributed = 0
        lines = []
        for seq, times in sorted(dups.items()):
            mids = {m.id for m in stored.by_seq.get(seq, [])} | {load.accepted.get(seq, "")}
            reason = None
            for k, kill in enumerate(self.kills, 1):
                if mids & kill.jobs:
                    reason = f"kill {k} ({kill.kind} {kill.target}): its send job was leased"
                    break
                if kill.kind == "redis" and kill.at - 0.5 <= times[0] <= kill.up + 0.5:
                    reason = f"kill {k} (redis): first copy while Redis was down"
                    break
            if reason is None:
                unattributed += 1
                reason = "NOT ATTRIBUTABLE to a kill"
            lines.append(
                f"  seq {seq}: {len(times)} copies, first at {times[0] - load.start:.2f} s; "
                + reason
            )
        print(
            f"DUPLICATES {len(dups)} messages reached the SMSC more than once "
            f"({len(dups) - unattributed} attributed to kills, {unattributed} not)"
            + (" -> OK" if not unattributed else " -> FAIL")
        )
        for line in lines[:50]:
            print(line)
        return unattributed == 0

    def report_figures(self, load: Load) -> None:
        arrivals, accepted = self.smsc.arrivals, load.accepted
        span = load.end - load.start
        firsts = [t[0] for s, t in arrivals.items() if s in accepted]
        last = max(firsts) if firsts else load.end
        print(
            f"THROUGHPUT accepted {len(accepted) / span:,.0f}/s over the load ({span:.1f} s); "
            f"at the SMSC {len(firsts) / max(1e-9, last - load.start):,.0f}/s from the first "
            f"send to the last arrival ({last - load.start:.1f} s); drain "
            f"{self.drain_seconds:.1f} s"
        )
        n = max(1, len(accepted))
        gw = sum(c.cpu for c in self.gateways)
        startup = sum(c.startup for c in self.gateways)
        restarts = sum(c.starts - 1 for c in self.gateways)
        print(
            f"CPU gateway processes {gw:.1f} s = {1e6 * gw / n:,.0f} us/message (api "
            f"{sum(c.cpu for c in self.apis):.1f} s, workers "
            f"{sum(c.cpu for c in self.workers):.1f} s); of it {startup:.1f} s the start-up "
            f"of {restarts} restarted processes; without it {1e6 * (gw - startup) / n:,.0f} "
            "us/message"
        )
        if self.redis is not None:
            print(f"CPU redis {self.redis.cpu:.1f} s = {1e6 * self.redis.cpu / n:,.0f} us/message")
        seq_of = {mid: seq for seq, mid in accepted.items()}
        print("KILLS  kind    target      at s  up after s  jobs held  jobs sent after s", end="")
        print("  first 202 after s")
        for k, kill in enumerate(self.kills, 1):
            late = [max(arrivals[seq_of[m]]) for m in kill.jobs if seq_of.get(m) in arrivals]
            sent = f"{max(late) - kill.at:.2f}" if late else "-"
            after = [t for t in load.accepted_at.values() if t > kill.at]
            first = f"{min(after) - kill.at:.2f}" if after else "-"
            print(
                f"  {k:<4} {kill.kind:<7} {kill.target:<9} {kill.at - load.start:6.2f} "
                f"{kill.up - kill.at:11.2f} {len(kill.jobs):10d} {sent:>18} {first:>18}"
            )


def main(argv: list[str] | None = None) -> int:
    """Run the bench (see the module docstring); exits 0 whatever it finds."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=float, default=0.0, help="sends per second (0: max)")
    parser.add_argument("--kills", default="api=2,worker=2,redis=1", type=str)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--redis-down", type=float, default=3.0, help="seconds Redis is down")
    parser.add_argument("--visibility", type=float, default=10.0,
                        help="job_visibility_seconds of the gateway processes")  # fmt: skip
    parser.add_argument("--drain", type=float, default=300.0,
                        help="seconds to wait for accepted messages after the load")  # fmt: skip
    parser.add_argument("--max-seconds", type=float, default=900.0,
                        help="the client gives up on a send after this (whole load)")  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    parse_kills(args.kills)
    work = Path(tempfile.mkdtemp(prefix="gw-bench-chaos-"))
    try:
        asyncio.run(Chaos(args, work).main())
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
