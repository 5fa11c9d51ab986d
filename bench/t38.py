"""Fax calls one gateway process keeps in real time: ``sip_t38`` connector → fax simulator.

Processes on loopback:

- the **far end**: ``--sim-procs`` fax simulators (``python -m bench.t38 --serve-sim
  --port N``), each a `fax.simulator.FaxSimulator` answering every call in real time;
  calls are spread over them round-robin (spandsp's page work is heavy: the far end must
  not be what runs late);
- the **gateway side** (this process, measured): one ``sip_t38`` connector per simulator
  (``max_calls`` = the calls), all on the process's one 20 ms media ticker. For each
  count in ``--calls`` it starts that many sends at once (``--pages`` fine A4 pages each,
  every call to its own number, T.38 with ECM), waits for all to end, and reports:
  calls that ended OK (started evenly over ``--ramp`` seconds: real calls do not all
  start in the same 20 ms, and spandsp's page work would then stall together), wall
  time, ticks run, ticks late by more than one tick (the
  real-time criterion: none), the worst lag, CPU seconds of this process and CPU per call
  (ms per call, and the share of a core one call takes while it runs).

The estimate "calls per core" is the calls divided by the cores this process used
(CPU seconds / wall seconds) — meaningful only for a count that kept real time. Goal: at
least 300 concurrent calls per core.

Usage::

    .venv/bin/python -m bench.t38 [--calls 10,50,100] [--pages 2] [--sim-procs 1] [--ramp 5]

A 2-page fine fax takes about 28 s in real time. It is a benchmark, not a test: it exits
0 whether or not the goal is met.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench._common import free_port, stop_process, wait_port  # noqa: E402
from connectors.base import (  # noqa: E402
    ConnectorContext,
    ConnectorError,
    InboundMessage,
    OutboundAttachment,
    OutboundMessage,
    StatusReport,
)
from connectors.sip_t38.connector import SipT38Connector  # noqa: E402
from fax.simulator import FaxSimulator  # noqa: E402
from fax.t38.ticker import MediaTicker  # noqa: E402
from gateway.clock import SystemClock  # noqa: E402
from gateway.config import ConnectorConfig  # noqa: E402

GOAL = 300  # concurrent calls per core


def make_pages(path: Path, pages: int) -> Path:
    """A TIFF-F of ``pages`` fine A4 pages with some text and lines (G4, 204x196 dpi)."""
    images = []
    for k in range(pages):
        img = Image.new("1", (1728, 2292), 1)
        draw = ImageDraw.Draw(img)
        for row in range(12):
            draw.text((120, 120 + 160 * row), f"Page {k + 1}, line {row + 1}: benchmark fax",
                      fill=0)
        draw.rectangle((100, 2100, 1600, 2200), outline=0, width=4)
        images.append(img)
    images[0].save(path, "TIFF", compression="group4", dpi=(204, 196), save_all=True,
                   append_images=images[1:])
    return path


class NullSink:
    """Inbound messages and reports go nowhere (the bench only sends)."""

    async def inbound(self, message: InboundMessage) -> Any:
        """Drop it."""
        return None

    async def status(self, report: StatusReport) -> Any:
        """Drop it."""
        return None


async def serve_sim(port: int) -> None:
    """Run one simulator on ``port`` until killed."""
    sim = FaxSimulator(listen=f"127.0.0.1:{port}", max_calls=100_000)
    await sim.start()
    print("READY", flush=True)
    await asyncio.Event().wait()


async def one_round(connectors: list[SipT38Connector], calls: int, tiff: Path,
                    ramp: float) -> dict[str, Any]:
    """Start ``calls`` sends spread evenly over ``ramp`` seconds; the figures once all
    ended."""
    ticker = MediaTicker.shared()
    base = (ticker.ticks, ticker.late_ticks)
    ticker.max_lag = 0.0
    attachment = OutboundAttachment("att", str(tiff), "image/tiff", tiff.stat().st_size, "")

    async def send(n: int) -> bool:
        await asyncio.sleep(ramp * n / calls)
        message = OutboundMessage(f"msg{n}", "fax", "+4930123456701", f"+49405{n:06d}", None,
                                  [attachment])
        try:
            await connectors[n % len(connectors)].send(message)
            return True
        except ConnectorError as exc:
            print(f"  call {n}: {exc.message}", file=sys.stderr)
            return False

    cpu0, wall0 = time.process_time(), time.monotonic()
    results = await asyncio.gather(*(send(n) for n in range(calls)))
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    return {
        "calls": calls, "ok": sum(results), "wall": wall, "cpu": cpu,
        "ticks": ticker.ticks - base[0], "late": ticker.late_ticks - base[1],
        "max_lag_ms": ticker.max_lag * 1000,
    }


async def run(counts: list[int], pages: int, sim_procs: int, ramp: float) -> None:
    """Start the simulators, run every round, print the table."""
    procs: list[subprocess.Popen[bytes]] = []
    connectors: list[SipT38Connector] = []
    workdir = tempfile.TemporaryDirectory(prefix="bench-t38-")
    try:
        ports = []
        for _ in range(sim_procs):
            port = free_port()
            proc = subprocess.Popen(  # noqa: ASYNC220 (start-up, before any measurement)
                [sys.executable, "-m", "bench.t38", "--serve-sim", "--port", str(port)],
                cwd=REPO, stdout=subprocess.DEVNULL)
            procs.append(proc)
            wait_port(port, proc)
            ports.append(port)
        context = ConnectorContext(None, NullSink(), SystemClock(), None, "")  # type: ignore[arg-type]
        for i, port in enumerate(ports):
            config = ConnectorConfig(f"fax{i}", "sip_t38", frozenset({"fax"}), None, {
                "proxy": f"sip:127.0.0.1:{port}", "listen": "127.0.0.1:0",
                "max_calls": max(counts), "retry_protocol": 60.0})
            connector = SipT38Connector(config, context)
            await connector.start()
            connectors.append(connector)
        tiff = make_pages(Path(workdir.name) / "pages.tif", pages)
        print(f"t38 bench {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, "
              f"{pages} fine pages per call, {sim_procs} simulator process(es), calls "
              f"started over {ramp:g} s")
        print(f"{'calls':>6} {'ok':>5} {'wall_s':>7} {'ticks':>6} {'late':>5} "
              f"{'max_lag_ms':>10} {'cpu_s':>7} {'ms/call':>8} {'%core/call':>10} "
              f"{'calls/core':>10}")
        best = 0.0
        for calls in counts:
            r = await one_round(connectors, calls, tiff, ramp)
            cores = r["cpu"] / r["wall"] if r["wall"] else 0.0
            per_core = calls / cores if cores else 0.0
            share = 100 * cores / calls
            realtime = r["late"] == 0 and r["ok"] == calls
            if realtime:
                best = max(best, per_core)
            print(f"{calls:>6} {r['ok']:>5} {r['wall']:>7.1f} {r['ticks']:>6} {r['late']:>5} "
                  f"{r['max_lag_ms']:>10.1f} {r['cpu']:>7.2f} {1000 * r['cpu'] / calls:>8.1f} "
                  f"{share:>10.3f} {per_core:>10.0f}"
                  f"{'' if realtime else '  (not real time)'}", flush=True)
        verdict = "MET" if best >= GOAL else "MISSED"
        print(f"RATIO calls per core (real-time rounds) vs goal {GOAL}: {best / GOAL:.2f} "
              f"({best:.0f}) -> GOAL {verdict}")
    finally:
        for connector in connectors:
            await connector.aclose()
        for proc in procs:
            stop_process(proc)
        workdir.cleanup()


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="10,50,100",
                        help="comma-separated concurrent call counts, one round each")
    parser.add_argument("--pages", type=int, default=2)
    parser.add_argument("--sim-procs", type=int, default=1)
    parser.add_argument("--ramp", type=float, default=5.0,
                        help="seconds over which a round's calls are started")
    parser.add_argument("--serve-sim", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_sim:
        asyncio.run(serve_sim(args.port))
        return
    counts = [int(c) for c in args.calls.split(",") if c.strip()]
    asyncio.run(run(counts, args.pages, args.sim_procs, args.ramp))


if __name__ == "__main__":
    main()
