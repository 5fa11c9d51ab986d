"""CPU cost per ``POST /v1/messages``, in process: the quiet complement of ``bench/ingest.py``.

The servers of ``bench/ingest.py`` are built the same way here (``baseline_app``,
``gateway_setup`` and ``create_app(rt, workers=False)``; Redis on a throwaway
``redis-server`` on a free loopback port), but no socket carries the requests: each of
``--connections`` simulated keep-alive connections feeds the same request bytes (the
1000 rotating bodies, the same headers) to

- ``http``: uvicorn's own h11 protocol object (``H11Protocol``, with the app wrapped by
  ``uvicorn.Config.load`` as the server does) over an in-memory transport; the next
  request of a connection arrives one loop tick after its answer, like from a fast
  client. This is what the server process really spends per request, minus the kernel.
- ``app``: the ASGI app alone (scope, receive and send built here), the same concurrency.

Each run serves ``--requests`` requests and reports ``time.process_time()`` per request
(all threads of the process, so the SQLite checkpointer counts; redis-server does not,
it is another process, as in the real bench where it has its own CPU). The median of
``--runs`` runs is printed, and their minimum, after one warm-up run. CPU time depends far
less than throughput on what else the machine runs, but on a shared machine contention
(caches, clock) still inflates it by 10-20% at times; the minimum is the least disturbed
run. Every answer must be 202 (the harness stops otherwise).

``predicted ratio`` is baseline ``http`` µs / gateway ``http`` µs: what ``bench/ingest.py``
should measure if the server's CPU is the bottleneck (kernel and socket time excluded).

Usage::

    .venv/bin/python -m bench.ingest_cpu [--kinds baseline,sqlite,redis]
                                         [--layers http,app] [--requests 20000]
                                         [--runs 5] [--connections 32]
                                         [--cprofile FILE]  # profile one gateway run

It is a benchmark, not a test: it exits 0 and only prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.ingest import (  # noqa: E402 (runnable as a script too)
    BODIES,
    DUMMY_KEY,
    PATH,
    baseline_app,
    gateway_setup,
    headers_for,
    redis_server,
)

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length: *(\d+)", re.IGNORECASE)
PORT = 8000


def raw_requests(key: str) -> list[bytes]:
    """The HTTP/1.1 requests a client sends, one per rotating body."""
    head = [f"POST {PATH} HTTP/1.1", f"Host: 127.0.0.1:{PORT}"]
    head += [f"{k}: {v}" for k, v in headers_for(key).items()]
    head.append(f"Content-Length: {len(BODIES[0])}")
    prefix = ("\r\n".join(head) + "\r\n\r\n").encode()
    return [prefix + body for body in BODIES]


class _Transport(asyncio.Transport):
    """An in-memory transport: collects what the server writes, calls back per answer."""

    def __init__(self, on_answer: Callable[[int], None]) -> None:
        super().__init__()
        self._buf = bytearray()
        self._on_answer = on_answer
        self._closing = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """What uvicorn asks for: addresses, no socket, no TLS."""
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", PORT)}.get(
            name, default
        )

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Collect; report each complete answer (head + Content-Length body)."""
        self._buf += data
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            match = _CONTENT_LENGTH.search(self._buf, 0, end + 2)
            size = int(match.group(1)) if match else 0
            if len(self._buf) < end + 4 + size:
                return
            status = int(self._buf[9:12])
            del self._buf[: end + 4 + size]
            self._on_answer(status)

    def is_closing(self) -> bool:
        """Whether the server closed it."""
        return self._closing

    def close(self) -> None:
        """The server closed the connection (it must not, on keep-alive)."""
        self._closing = True

    def pause_reading(self) -> None:
        """Flow control: nothing to pause."""

    def resume_reading(self) -> None:
        """Flow control: nothing to resume."""

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Flow control: unlimited."""

    def get_write_buffer_size(self) -> int:
        """Always drained."""
        return 0


class Driver:
    """Serves a number of requests over simulated connections; counts 202 answers."""

    def __init__(self, requests: list[bytes], connections: int, spread: int = 1) -> None:
        self.requests = requests
        self.connections = connections
        self.spread = spread
        self.sent = 0
        self.answered = 0
        self.todo = 0
        self.done: asyncio.Future[None] | None = None

    def _next(self) -> bytes | None:
        if self.sent >= self.todo:
            return None
        self.sent += 1
        return self.requests[self.sent % len(self.requests)]

    def _answer(self, status: int) -> None:
        if status != 202:
            raise RuntimeError(f"answered {status}, not 202")
        self.answered += 1
        if self.answered >= self.todo and self.done is not None and not self.done.done():
            self.done.set_result(None)

    async def run_http(self, config: Any, n: int) -> None:
        """``n`` requests through uvicorn's H11Protocol over in-memory transports."""
        from uvicorn.protocols.http.h11_impl import H11Protocol
        from uvicorn.server import ServerState

        loop = asyncio.get_running_loop()
        self.sent = self.answered = 0
        self.todo = n
        self.done = loop.create_future()
        state = ServerState()
        protocols = []

        def later(ticks: int, proto: H11Protocol, data: bytes) -> None:
            if ticks:
                loop.call_soon(later, ticks - 1, proto, data)
            else:
                proto.data_received(data)

        for i in range(self.connections):
            proto = H11Protocol(config, state, {}, loop)
            # The client's next request, a loop tick later, or up to ``spread`` ticks
            # later (connection i always waits 1 + i % spread ticks).
            wait = i % self.spread

            def on_answer(status: int, proto: H11Protocol = proto, wait: int = wait) -> None:
                self._answer(status)
                data = self._next()
                if data is not None:
                    loop.call_soon(later, wait, proto, data)

            proto.connection_made(_Transport(on_answer))
            protocols.append(proto)
        for proto in protocols:
            data = self._next()
            if data is not None:
                proto.data_received(data)
        await self.done
        for proto in protocols:
            proto.connection_lost(None)
        if state.tasks:
            await asyncio.gather(*state.tasks, return_exceptions=True)

    async def run_app(self, app: Any, n: int) -> None:
        """``n`` requests straight into the ASGI app."""
        self.sent = self.answered = 0
        self.todo = n
        self.done = None
        bodies = [req.partition(b"\r\n\r\n")[2] for req in self.requests]
        key = self.requests[0].split(b"Authorization: ", 1)[1].split(b"\r\n", 1)[0]
        headers = [
            (b"host", f"127.0.0.1:{PORT}".encode()),
            (b"content-type", b"application/json"),
            (b"authorization", key),
            (b"content-length", str(len(bodies[0])).encode()),
        ]

        async def connection() -> None:
            while self.sent < self.todo:
                self.sent += 1
                body = bodies[self.sent % len(bodies)]
                scope = {
                    "type": "http",
                    "asgi": {"version": "3.0", "spec_version": "2.3"},
                    "http_version": "1.1",
                    "server": ("127.0.0.1", PORT),
                    "client": ("127.0.0.1", 40000),
                    "scheme": "http",
                    "method": "POST",
                    "root_path": "",
                    "path": PATH,
                    "raw_path": PATH.encode(),
                    "query_string": b"",
                    "headers": list(headers),
                    "state": {},
                }
                sent_body = False

                async def receive(body: bytes = body) -> dict[str, Any]:
                    nonlocal sent_body
                    if sent_body:
                        await asyncio.Event().wait()  # a disconnect never comes
                    sent_body = True
                    return {"type": "http.request", "body": body, "more_body": False}

                status = 0

                async def send(message: dict[str, Any]) -> None:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]

                await app(scope, receive, send)
                self._answer(status)

        await asyncio.gather(*(connection() for _ in range(self.connections)))


@contextlib.asynccontextmanager
async def served(kind: str, work: Path) -> AsyncIterator[tuple[Any, str]]:
    """The app of ``kind`` (baseline, sqlite, redis) with its lifespan running, and the key."""
    from uvicorn.config import Config
    from uvicorn.lifespan.on import LifespanOn

    rt = None
    with contextlib.ExitStack() as stack:
        if kind == "baseline":
            app, key = baseline_app(), DUMMY_KEY
        else:
            from gateway.api.app import create_app

            if kind == "sqlite":
                store = f"sqlite:///{work}/gateway-{uuid.uuid4().hex[:8]}.db"
            else:
                sub = work / uuid.uuid4().hex[:8]
                sub.mkdir()
                url = stack.enter_context(redis_server(sub, None))
                store = f"{url}?prefix=cpu{uuid.uuid4().hex[:8]}"
            (work / "blobs").mkdir(exist_ok=True)
            rt, info = await gateway_setup(store, str(work / "blobs"))
            app, key = create_app(rt, workers=False), info["key"]
        config = Config(app, http="h11", lifespan="on", access_log=False, log_level="warning")
        config.load()
        lifespan = LifespanOn(config)
        await lifespan.startup()
        try:
            yield config, key
        finally:
            await lifespan.shutdown()
            if rt is not None:
                await rt.aclose()


async def measure(kind: str, layer: str, args: argparse.Namespace, work: Path) -> list[float]:
    """CPU µs per request of each run (after one warm-up run)."""
    async with served(kind, work) as (config, key):
        driver = Driver(raw_requests(key), args.connections, args.spread)

        async def one(n: int) -> float:
            start = time.process_time()
            if layer == "http":
                await driver.run_http(config, n)
            else:
                await driver.run_app(config.loaded_app, n)
            return (time.process_time() - start) * 1e6 / n

        await one(max(1000, args.requests // 4))
        out = []
        for _ in range(args.runs):
            out.append(await one(args.requests))
        if args.cprofile and kind != "baseline":
            import cProfile

            prof = cProfile.Profile()
            prof.enable()
            await one(args.requests)
            prof.disable()
            path = f"{args.cprofile}-{kind}-{layer}.prof"
            prof.dump_stats(path)
            print(f"  cProfile of one {kind}/{layer} run: {path}", flush=True)
        return out


def main(argv: list[str] | None = None) -> int:
    """Measure and print CPU µs per request for each kind and layer."""
    p = argparse.ArgumentParser(
        prog="python -m bench.ingest_cpu", description=__doc__.split("\n")[0]
    )
    p.add_argument("--kinds", default="baseline,sqlite,redis", help="baseline,sqlite,redis")
    p.add_argument("--layers", default="http,app", help="http (uvicorn h11 + app), app")
    p.add_argument("--requests", type=int, default=20_000, help="requests per run")
    p.add_argument("--runs", type=int, default=5, help="measured runs (median shown)")
    p.add_argument("--connections", type=int, default=32)
    p.add_argument(
        "--spread",
        type=int,
        default=1,
        help="http layer: connection i sends its next request 1 + i %% SPREAD loop ticks "
        "after its answer (1: all in the next tick, as from one fast client)",
    )
    p.add_argument("--cprofile", metavar="PREFIX", help="cProfile one extra gateway run")
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    layers = [x.strip() for x in args.layers.split(",") if x.strip()]
    if set(kinds) - {"baseline", "sqlite", "redis"} or set(layers) - {"http", "app"}:
        p.error("--kinds: baseline,sqlite,redis; --layers: http,app")
    import platform

    import starlette
    import uvicorn

    print(
        f"CPU per POST /v1/messages, in process: python {platform.python_version()}, "
        f"uvicorn {uvicorn.__version__} (h11), starlette {starlette.__version__}; "
        f"{args.requests} requests x {args.runs} runs, {args.connections} connections, "
        f"spread {args.spread}"
    )
    print(f"{'kind':<10} {'layer':<5} {'median µs':>10} {'min µs':>7}  runs")
    results: dict[tuple[str, str], float] = {}
    work = Path(tempfile.mkdtemp(prefix="gw-bench-cpu-"))
    try:
        for kind in kinds:
            for layer in layers:
                runs = asyncio.run(measure(kind, layer, args, work))
                results[kind, layer] = med = statistics.median(runs)
                shown = " ".join(f"{r:.0f}" for r in runs)
                print(f"{kind:<10} {layer:<5} {med:>10.1f} {min(runs):>7.1f}  {shown}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = results.get(("baseline", "http"))
    for kind in ("sqlite", "redis"):
        gw = results.get((kind, "http"))
        if base and gw:
            print(f"predicted ratio {kind}: {base / gw:.3f} (baseline http µs / gateway http µs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
