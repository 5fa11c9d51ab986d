"""Latency histograms on the ingest path: what ``gateway.metrics`` records per request
(``prometheus_client``'s ``Histogram``, its children kept per label set) beside
hand-rolled fixed buckets (one ``bisect``, two additions, no lock), side by side in one
process — the measurement behind using the library.

Each round records ``--observations`` request latencies (seeded, log-normal around 2 ms,
over ten routes and two methods) into a fresh registry of each kind, alternating which
goes first, and takes the CPU time (``time.process_time()``) per observation; the
minimum over ``--rounds`` is the least disturbed figure. It then serves ``--sends``
``POST /v1/messages`` in process (the ASGI app alone on a throwaway SQLite store, as
``bench/ingest_cpu.py --layers app`` does) to put the difference beside what a send costs.

Prints ns per observation for both, their ratio (``prometheus_client`` / own buckets),
and the extra CPU the library costs per send as a share of a send's CPU.

Usage::

    .venv/bin/python -m bench.metrics_histogram [--observations 200000] [--rounds 5]
                                                [--sends 2000]

It is a benchmark, not a test: it exits 0 and only prints figures.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from bisect import bisect_left
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.ingest import BODIES, PATH, gateway_setup  # noqa: E402 (runnable as a script too)

NAME = "gateway_http_request_duration_seconds"
HANDLERS = [f"handler_{i}" for i in range(10)]


def samples(n: int) -> list[tuple[str, str, float]]:
    """``n`` (handler, method, seconds), the same every run."""
    rng = random.Random(7)
    return [
        (rng.choice(HANDLERS), rng.choice(("GET", "POST")), rng.lognormvariate(-6.2, 1.0))
        for _ in range(n)
    ]


BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class OwnBuckets:
    """The alternative: per series, a count per bucket and the sum, in a list."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, tuple[tuple[str, str], ...]], list[float]] = {}

    def observe(self, name: str, key: tuple[tuple[str, str], ...], value: float) -> None:
        counts = self.series.get((name, key))
        if counts is None:
            counts = self.series[(name, key)] = [0.0] * (len(BUCKETS) + 2)
        counts[bisect_left(BUCKETS, value)] += 1
        counts[-1] += value


def own(data: list[tuple[str, str, float]]) -> float:
    """CPU seconds to record ``data`` into hand-rolled buckets."""
    observe = OwnBuckets().observe
    start = time.process_time()
    for handler, method, seconds in data:
        observe(NAME, (("handler", handler), ("method", method)), seconds)
    return time.process_time() - start


def prometheus(data: list[tuple[str, str, float]]) -> float:
    """CPU seconds to record ``data`` as the gateway does (``Metrics.observe``)."""
    from gateway.metrics import standard_metrics

    metrics = standard_metrics()
    observe = metrics.observe
    start = time.process_time()
    for handler, method, seconds in data:
        observe(NAME, (("handler", handler), ("method", method)), seconds)
    took = time.process_time() - start
    assert metrics.histogram(NAME, handler="handler_0", method="GET")["count"] > 0
    return took


async def send_cpu(sends: int) -> float:
    """CPU seconds per ``POST /v1/messages`` served by the ASGI app in process."""
    from gateway.api.app import create_app

    with tempfile.TemporaryDirectory(prefix="gw-bench-hist-") as tmp:
        rt, info = await gateway_setup(f"sqlite:///{tmp}/gw.db", f"{tmp}/blobs")
        try:
            app = create_app(rt, workers=False)
            headers = [
                (b"authorization", f"Bearer {info['key']}".encode()),
                (b"content-type", b"application/json"),
            ]
            statuses: list[int] = []

            async def one(body: bytes) -> None:
                scope = {
                    "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                    "method": "POST", "scheme": "http", "path": PATH, "raw_path": PATH.encode(),
                    "root_path": "", "query_string": b"", "client": ("127.0.0.1", 1),
                    "server": ("127.0.0.1", 80), "state": {},
                    "headers": [*headers, (b"content-length", str(len(body)).encode())],
                }  # fmt: skip
                sent = False

                async def receive() -> dict[str, Any]:
                    nonlocal sent
                    if sent:
                        await asyncio.sleep(3600)
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}

                async def send(message: dict[str, Any]) -> None:
                    if message["type"] == "http.response.start":
                        statuses.append(message["status"])

                await app(scope, receive, send)

            async def run(n: int) -> float:
                start = time.process_time()
                for i in range(0, n, 32):  # 32 in flight, as the ingest bench's connections
                    await asyncio.gather(
                        *(one(BODIES[j % len(BODIES)]) for j in range(i, min(n, i + 32)))
                    )
                return time.process_time() - start

            await run(min(200, sends))  # warm-up
            took = await run(sends)
            assert set(statuses) == {202}, set(statuses)
            return took / sends
        finally:
            await rt.aclose()


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--observations", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sends", type=int, default=2000)
    args = parser.parse_args(argv)
    data = samples(args.observations)
    kinds: dict[str, Callable[[list[tuple[str, str, float]]], float]] = {
        "own buckets": own,
        "prometheus_client": prometheus,
    }
    best = {name: float("inf") for name in kinds}
    order = list(kinds)
    for _ in range(args.rounds):
        for name in order:
            best[name] = min(best[name], kinds[name](data))
        order.reverse()
    ns = {name: best[name] / args.observations * 1e9 for name in kinds}
    per_send = asyncio.run(send_cpu(args.sends))
    extra = (ns["prometheus_client"] - ns["own buckets"]) / 1e9
    print(f"observations per round: {args.observations}, rounds: {args.rounds} (minimum)")
    for name in kinds:
        print(f"{name:<18} {ns[name]:8.0f} ns cpu/observation")
    print(f"ratio prometheus_client/own buckets: {ns['prometheus_client'] / ns['own buckets']:.2f}")
    print(f"POST /v1/messages in process: {per_send * 1e6:.0f} us cpu/send ({args.sends} sends)")
    print(
        f"prometheus_client costs {extra * 1e9:.0f} ns more per send: "
        f"{extra / per_send * 100:.2f} % of a send's CPU"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
