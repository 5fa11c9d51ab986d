"""The portal: the inbox page of a member with 10,000 conversations, and 1,000 open event
streams.

    python -m bench.portal [--conversations 10000] [--requests 300] [--streams 1000]
                           [--events 40] [--stores sqlite,redis] [--skip-pages|--skip-streams]

1. **Inbox page** (one process, no network), on each store of ``--stores`` (default both
   backends: SQLite, and Redis): ``GET /`` of a signed-in member whose index holds
   ``--conversations`` conversations, through the whole app (guard, session, index query,
   template) called as ASGI, ``--requests`` times; the baseline renders the same template
   from the same rows held in memory (``render(request, "inbox.html", …)``), in the same
   run. RATIO = server time / baseline, per store. Goal (issue 13): <= 2.0.
2. **Event streams** (three processes): a real ``gateway serve`` (the portal's event tail
   polling the store at ``[portal] poll_interval``) on a Redis store with ``--streams``
   open ``/events`` streams of one member (each its own session), and this process
   receiving ``--events`` inbound messages into the same store through the gateway's
   inbound path — another gateway process, as a carrier's webhook would land on any of
   them. Latency: from just before the inbound call to each stream's receipt of the
   event. Baseline: a bare Starlette app (a queue per stream, ``POST /publish`` puts the
   same payload in every queue) with as many streams, events posted the same way apart.
   RATIO = p99 / baseline p99. Goal (issue 13): <= 2.0. CPU per event: the server
   process's CPU time during the events over their number (both servers).

Redis is our own throwaway ``redis-server`` (AOF, everysec) on a free loopback port, or
``REDIS_URL`` when set: then every run uses a fresh key prefix and deletes its keys at the
end. Bounded: every wait has a timeout; the servers are our own children on free loopback
ports and stop at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import REPO, free_port, pin, stop_process, wait_port

MOBILE = "+4915112345671"
GOAL = 2.0


# -- 1. the inbox page -----------------------------------------------------------------------
async def _seed_member(rt: Any) -> tuple[Any, Any, str]:
    """A team, a member with a portal account, and a session token."""
    from gateway.ids import new_id
    from gateway.models import Member, Team
    from gateway.portal import accounts
    from gateway.portal.roles import PORTAL_STORE
    from gateway.portal.settings import PortalSettings
    from gateway.portal.storage import Account

    now = rt.clock.now()
    team = Team(new_id("team"), "Bench GmbH", "business", 0, "DE", now)
    await rt.store.create_team(team)
    member = Member(
        new_id("mem"),
        team.id,
        "Bench Member",
        "bench@example.com",
        MOBILE,
        None,
        frozenset({"sms", "whatsapp"}),
        True,
        now,
    )
    await rt.store.create_member(member, 10)
    portal = rt.role(PORTAL_STORE)
    await portal.put_account(Account(member.id, team.id, member.email, "member", now))
    _, token = await accounts.start_session(
        portal, PortalSettings(), (await portal.get_account(member.id)), now, None
    )  # type: ignore[arg-type]
    return team, member, token


async def _fill_index(rt: Any, team: Any, member: Any, count: int) -> None:
    """``count`` conversations in the member's inbox (a text, a name now and then, some
    unread, some failed), applied as the event tail applies them."""
    from gateway.ids import new_id
    from gateway.portal import search
    from gateway.portal.roles import PORTAL_STORE
    from gateway.portal.storage import IndexChange

    portal = rt.role(PORTAL_STORE)
    now = rt.clock.now()
    batch: list[IndexChange] = []
    cursor = await portal.index_cursor()
    for i in range(count):
        remote = f"+49176{10_000_000 + i:08d}"
        name = f"Kundin Müller {i}" if i % 3 == 0 else None
        channel = ("sms", "whatsapp")[i % 2]
        text = f"Guten Tag, hier ist Nachricht Nummer {i} mit etwas Text über den Termin."
        inbound = i % 4 != 0
        batch.append(
            IndexChange(
                conversation_id=new_id("conv"),
                team_id=team.id,
                member_id=member.id,
                member_number=MOBILE,
                remote_number=remote,
                message_id=new_id("msg"),
                at=now - timedelta(minutes=count - i),
                channel=channel,
                direction="inbound" if inbound else "outbound",
                status="received" if inbound else ("failed" if i % 50 == 0 else "delivered"),
                text=text,
                new_message=True,
                inbound=inbound,
                failed=i % 50 == 0,
                contact_name=name,
                search_text=search.fold(text),
                search_head=search.head(remote, name),
            )
        )
        if len(batch) == 1000:
            await portal.apply_index(cursor, cursor + 1, batch)
            cursor, batch = cursor + 1, []
    if batch:
        await portal.apply_index(cursor, cursor + 1, batch)


async def _asgi_get(app: Any, path: str, cookie: str) -> tuple[int, bytes]:
    """One GET through the ASGI app, no network."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("127.0.0.1", 8080),
        "client": ("127.0.0.1", 50000),
        "headers": [
            (b"host", b"127.0.0.1:8080"),
            (b"cookie", cookie.encode()),
            (b"accept-language", b"de-DE,de;q=0.9"),
        ],
        "app": app,
    }
    status = 0
    body: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(body)


def _prefixed(redis_url: str, prefix: str) -> str:
    """``redis_url`` with the store key prefix ``prefix``."""
    return f"{redis_url}{'&' if '?' in redis_url else '?'}prefix={prefix}"


async def inbox_page(store: str, conversations: int, requests: int) -> dict[str, float]:
    """Measure part 1 (see the module docstring) on ``store``: "sqlite" (a fresh file) or
    a ``redis://`` URL (with its own key prefix)."""
    from starlette.requests import Request

    from gateway.api.app import create_app
    from gateway.config import parse_settings
    from gateway.portal import i18n
    from gateway.portal.accounts import token_hash
    from gateway.portal.routes.inbox import rows_context
    from gateway.portal.security import resolve
    from gateway.portal.storage import InboxQuery
    from gateway.portal.web import portal_for, render
    from gateway.process import open_runtime

    with tempfile.TemporaryDirectory(prefix="bench-portal-") as work:
        url = store if store != "sqlite" else f"sqlite:///{work}/gateway.db"
        settings = parse_settings({"gateway": {"store": url, "blobs": f"{work}/blobs"}})
        rt = await open_runtime(settings, start_connectors=False)
        try:
            team, member, token = await _seed_member(rt)
            t = time.perf_counter()
            await _fill_index(rt, team, member, conversations)
            took = time.perf_counter() - t
            print(f"  index filled: {conversations:,} conversations in {took:.1f} s")
            app = create_app(rt, workers=False)
            cookie = f"portal_session={token}"
            status, html = await _asgi_get(app, "/", cookie)
            assert status == 200 and b"Guten Tag" in html, (status, html[:500])
            portal = await portal_for(rt)
            viewer = await resolve(portal, token)
            assert viewer is not None and viewer.session.id == token_hash(token)
            # The baseline's data: the same page of rows, in memory.
            page = await portal.store.list_inbox(
                InboxQuery(member.id), None, portal.settings.page_size
            )
            context = rows_context({}, page, False, rt.clock.now(), "DE")
            scope = {
                "type": "http",
                "method": "GET",
                "path": "/",
                "query_string": b"",
                "headers": [(b"host", b"127.0.0.1:8080")],
                "server": ("127.0.0.1", 8080),
                "scheme": "http",
                "root_path": "",
                "portal": portal,
                "portal_viewer": viewer,
                "portal_lang": "de",
                "portal_csrf": viewer.session.csrf,
                "portal_formats": i18n.Formats("de", rt.settings.tz),
            }

            def baseline_once() -> bytes:
                i18n.activate("de")
                return bytes(render(Request(scope), "inbox.html", context).body)

            assert len(baseline_once()) > 0.9 * len(html)
            for _ in range(20):  # warm both
                await _asgi_get(app, "/", cookie)
                baseline_once()
            rounds: dict[str, list[float]] = {"server": [], "baseline": []}
            cpu: dict[str, float] = {"server": 0.0, "baseline": 0.0}
            for _ in range(requests):
                c0, t0 = time.process_time(), time.perf_counter()
                await _asgi_get(app, "/", cookie)
                rounds["server"].append(time.perf_counter() - t0)
                cpu["server"] += time.process_time() - c0
                c0, t0 = time.process_time(), time.perf_counter()
                baseline_once()
                rounds["baseline"].append(time.perf_counter() - t0)
                cpu["baseline"] += time.process_time() - c0
        finally:
            await rt.aclose()
    server = statistics.median(rounds["server"])
    base = statistics.median(rounds["baseline"])
    return {
        "server_ms": server * 1000,
        "baseline_ms": base * 1000,
        "ratio": server / base,
        "server_p99_ms": sorted(rounds["server"])[int(0.99 * (requests - 1))] * 1000,
        "server_cpu_ms": cpu["server"] / requests * 1000,
        "baseline_cpu_ms": cpu["baseline"] / requests * 1000,
        "bytes": len(html),
    }


# -- 2. event streams ----------------------------------------------------------------------------
BARE_APP = """
import asyncio, sys
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
queues: set[asyncio.Queue[bytes]] = set()
seq = 0
async def events(request: Request) -> Response:
    q: asyncio.Queue[bytes] = asyncio.Queue()
    queues.add(q)
    async def stream():
        try:
            yield b"retry: 3000\\n\\n"
            while True:
                yield await q.get()
        finally:
            queues.discard(q)
    return StreamingResponse(stream(), media_type="text/event-stream")
async def publish(request: Request) -> Response:
    global seq
    seq += 1
    frame = b"id: %d\\nevent: portal\\ndata: " % seq + await request.body() + b"\\n\\n"
    for q in queues:
        q.put_nowait(frame)
    return Response(status_code=204)
app = Starlette(routes=[Route("/events", events), Route("/publish", publish, methods=["POST"])])
if __name__ == "__main__":
    import uvicorn
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                timeout_graceful_shutdown=1)
"""


class Streams:
    """``n`` raw HTTP/1.1 event-stream clients; records when each event id arrives."""

    def __init__(self) -> None:
        self.received: dict[str, list[float]] = {}
        self.open = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._writers: list[asyncio.StreamWriter] = []

    async def connect(self, port: int, cookies: list[str | None]) -> None:
        ready = [asyncio.Event() for _ in cookies]
        for i, cookie in enumerate(cookies):
            self._tasks.append(asyncio.create_task(self._one(port, cookie, ready[i])))
            if i % 50 == 49:
                await asyncio.sleep(0.05)  # do not flood the accept queue
        async with asyncio.timeout(120):
            for r in ready:
                await r.wait()

    async def _one(self, port: int, cookie: str | None, ready: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        self._writers.append(writer)
        head = "GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        if cookie:
            head += f"Cookie: portal_session={cookie}\r\n"
        writer.write((head + "\r\n").encode())
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"stream refused: {status!r}")
        self.open += 1
        ready.set()
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"data: {") and b'"message_id"' in line:
                key = json.loads(line[6:])["message_id"]
                self.received.setdefault(key, []).append(time.perf_counter())

    async def close(self) -> None:
        for w in self._writers:
            w.close()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` (from /proc, no external command)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _wait_all(streams: Streams, key: str, n: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    # A short sleep-poll: the receipt times are taken by the readers, not by this loop.
    while len(streams.received.get(key, ())) < n and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.002)


def _latencies(sent: dict[str, float], streams: Streams, n: int) -> tuple[list[float], int]:
    out, missing = [], 0
    for key, t0 in sent.items():
        got = streams.received.get(key, [])
        missing += n - len(got)
        out += [t - t0 for t in got]
    return sorted(out), missing


def _pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(p * len(values)))] * 1000 if values else float("nan")


async def portal_streams(
    redis_url: str, work: Path, n: int, events: int, gap: float, cpu: int | None
) -> dict[str, float]:
    """The portal's side of part 2."""
    from connectors.base import InboundMessage
    from gateway.config import parse_settings
    from gateway.ids import new_id
    from gateway.inbound import Inbound
    from gateway.portal import accounts
    from gateway.portal.roles import PORTAL_STORE
    from gateway.portal.settings import PortalSettings
    from gateway.process import open_runtime

    store = _prefixed(redis_url, f"bp{os.getpid()}")
    port = free_port()
    config = work / "portal.toml"
    config.write_text(
        f'[gateway]\nstore = "{store}"\nblobs = "{work}/blobs"\n'
        f'public_url = "http://127.0.0.1:{port}"\n'
    )
    rt = await open_runtime(
        parse_settings({"gateway": {"store": store, "blobs": str(work / "blobs")}}),
        start_connectors=False,
    )
    proc = None
    streams = Streams()
    try:
        _, member, _ = await _seed_member(rt)
        portal = rt.role(PORTAL_STORE)
        account = await portal.get_account(member.id)
        assert account is not None
        tokens = [
            (await accounts.start_session(portal, PortalSettings(), account, rt.clock.now(), None))[
                1
            ]
            for _ in range(n)
        ]
        env = {**os.environ, "GATEWAY_CONFIG": str(config)}
        proc = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
            [sys.executable, "-m", "gateway.cli", "serve", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=pin(cpu),
        )
        wait_port(port, proc)
        await streams.connect(port, list(tokens))
        await asyncio.sleep(1.0)
        sent: dict[str, float] = {}
        c0 = _cpu_seconds(proc.pid)
        for i in range(events):
            msg = InboundMessage(
                "bench",
                "sms",
                f"b-{new_id('x')}",
                f"+49176{20_000_000 + i:08d}",
                MOBILE,
                f"Hallo {i}",
                rt.clock.now(),
            )
            t0 = time.perf_counter()
            stored = await Inbound(rt).inbound(msg)
            assert stored is not None
            sent[stored.id] = t0
            await _wait_all(streams, stored.id, n)
            await asyncio.sleep(gap)
        cpu_s = _cpu_seconds(proc.pid) - c0
        lat, missing = _latencies(sent, streams, n)
        return {
            "p50": _pct(lat, 0.5),
            "p99": _pct(lat, 0.99),
            "missing": missing,
            "cpu_ms_per_event": cpu_s / events * 1000,
            "streams": streams.open,
        }
    finally:
        await streams.close()
        if proc is not None:
            stop_process(proc)
        await rt.aclose()


async def bare_streams(
    work: Path, n: int, events: int, gap: float, cpu: int | None, size: int
) -> dict[str, float]:
    """The baseline's side of part 2."""
    port = free_port()
    script = work / "bare_sse.py"
    script.write_text(BARE_APP)
    proc = subprocess.Popen(  # noqa: ASYNC220 (starting it does not block)
        [sys.executable, str(script), str(port)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=pin(cpu),
    )
    streams = Streams()
    try:
        wait_port(port, proc)
        await streams.connect(port, [None] * n)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        await asyncio.sleep(1.0)
        sent: dict[str, float] = {}
        c0 = _cpu_seconds(proc.pid)
        for i in range(events):
            key = f"evt{i}"
            body = json.dumps(
                {"type": "message.received", "message_id": key, "pad": "x" * max(0, size - 60)}
            ).encode()
            t0 = time.perf_counter()
            writer.write(
                b"POST /publish HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
                + body
            )
            await reader.readuntil(b"\r\n\r\n")
            sent[key] = t0
            await _wait_all(streams, key, n)
            await asyncio.sleep(gap)
        cpu_s = _cpu_seconds(proc.pid) - c0
        writer.close()
        lat, missing = _latencies(sent, streams, n)
        return {
            "p50": _pct(lat, 0.5),
            "p99": _pct(lat, 0.99),
            "missing": missing,
            "cpu_ms_per_event": cpu_s / events * 1000,
            "streams": streams.open,
        }
    finally:
        await streams.close()
        stop_process(proc)


def _raise_fd_limit(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 3 * n + 512))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < 2 * n + 256:
        raise SystemExit(f"the file descriptor limit ({hard}) is too low for {n} streams")


@contextlib.contextmanager
def _work() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-portal-") as d:
        yield Path(d)


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--conversations", type=int, default=10_000)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument(
        "--stores",
        default="sqlite,redis",
        help="part 1's stores, comma-separated: sqlite, redis (ours, or REDIS_URL)",
    )
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--events", type=int, default=40)
    p.add_argument("--gap", type=float, default=0.15, help="seconds between events")
    p.add_argument("--server-cpu", type=int, default=None, help="pin the servers to this CPU")
    p.add_argument("--skip-pages", action="store_true")
    p.add_argument("--skip-streams", action="store_true")
    args = p.parse_args()
    stores = [s.strip() for s in args.stores.split(",") if s.strip()]
    unknown = sorted(set(stores) - {"sqlite", "redis"})
    if unknown:
        p.error(f"unknown store(s) {', '.join(unknown)} (use sqlite, redis)")
    try:
        load = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        load = ["?"]
    print(f"bench/portal.py  load average {' '.join(load)}  cpus {os.cpu_count()}")
    from bench.ingest import _drop_prefix, redis_server

    needs_redis = not args.skip_streams or (not args.skip_pages and "redis" in stores)
    with _work() as work, contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(redis_server(work, args.server_cpu)) if needs_redis else ""
        if not args.skip_pages:
            for name in stores:
                url, prefix = "sqlite", f"bp1{os.getpid()}"
                if name == "redis":
                    url = _prefixed(redis_url, prefix)
                n, k = args.conversations, args.requests
                print(f"1. inbox page, {n:,} conversations, {k} requests ({name})")
                try:
                    r = asyncio.run(inbox_page(url, n, k))
                finally:
                    if name == "redis":
                        asyncio.run(_drop_prefix(redis_url, prefix))
                print(
                    f"  server   median {r['server_ms']:.2f} ms  p99 {r['server_p99_ms']:.2f} ms"
                    f"  CPU {r['server_cpu_ms']:.2f} ms/request  ({r['bytes']:,} bytes)"
                )
                print(
                    f"  baseline median {r['baseline_ms']:.2f} ms"
                    f"  CPU {r['baseline_cpu_ms']:.2f} ms/render"
                )
                verdict = "MET" if r["ratio"] <= GOAL else "MISSED"
                what = f"(server / template render, goal <= {GOAL})"
                print(f"RATIO inbox page {name}: {r['ratio']:.2f} {what} GOAL {verdict}")
        if not args.skip_streams:
            _raise_fd_limit(args.streams)
            print(f"2. event streams: {args.streams} open, {args.events} inbound messages")
            try:
                portal = asyncio.run(
                    portal_streams(
                        redis_url, work, args.streams, args.events, args.gap, args.server_cpu
                    )
                )
            finally:
                asyncio.run(_drop_prefix(redis_url, f"bp{os.getpid()}"))
            bare = asyncio.run(
                bare_streams(work, args.streams, args.events, args.gap, args.server_cpu, 180)
            )
            for name, r in (("portal", portal), ("bare", bare)):
                print(
                    f"  {name:<8} streams {int(r['streams'])}  p50 {r['p50']:.1f} ms"
                    f"  p99 {r['p99']:.1f} ms  missing {int(r['missing'])}"
                    f"  server CPU {r['cpu_ms_per_event']:.1f} ms/event"
                )
            ratio = portal["p99"] / bare["p99"]
            verdict = "MET" if ratio <= GOAL else "MISSED"
            what = f"(portal / bare Starlette broadcast, goal <= {GOAL})"
            print(f"RATIO event p99: {ratio:.2f} {what} GOAL {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
