"""The WhatsApp Cloud connector's limits shared by several real ``gateway worker``
processes on one Redis store: one messages-per-second budget per business number for
all of them together (not one per process), and a recipient's pair backoff after error
131056 that holds back every process, not only the one that got the answer.

The simulator runs in this test's process on a loopback port and notes when each send
arrived (``SentMessage.received``); the workers are ``python -m gateway.cli worker``
processes reading one config file, their store given by ``GATEWAY_STORE``. Which process
made a request is read from its own log: the worker logs at INFO, where httpx writes one
``HTTP Request: POST …/messages "HTTP/1.1 200 OK"`` line per Graph call it makes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors.whatsapp.simulator import SentMessage, WhatsAppSimulator
from connectors.whatsapp.throughput import PairBackoff
from gateway.auth import Principal
from gateway.clock import FrozenClock, SystemClock
from gateway.commands import SendRequest, convert
from gateway.config import load_settings
from gateway.outbound import submit
from gateway.process import open_runtime
from gateway.runtime import Runtime
from tests.conftest import start_worker, store_url, until
from tests.gateway.conftest import CONTACT, MOBILE_A, seed_directory

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
PNID = "106540352242922"  # Meta's phone_number_id of the business number (Anna's mobile)
CONNECTOR = "wa"
RATE = 10  # messages/s of the business number: low, so that one second holds many sends
BURST = 2  # sends allowed at once
MESSAGES = 40
PROCESSES = 2
TIMEOUT = 45.0  # seconds a test waits for something that must happen
PAIR_BACKOFF = 4.0  # the first 131056 of a recipient: no message to it for 4^1 s
# One budget (GCRA) lets at most BURST + ceil(RATE * L) - 1 sends into any span of L
# seconds: 11 in a second here. A 1-s window at the simulator spans 1 s plus the spread
# of the delivery delays (wake-up after the limiter's sleep, building the request,
# loopback HTTP, this process's loop serving the simulator) at the reservations; the two
# workers and this process share two cores, so a spread up to SPREAD is tolerated: 14 in
# a second (a budget per process: 24), and SPREAD off the shortest time the run can take.
SPREAD = 0.3
RECIPIENTS = [f"+49176123456{n}" for n in range(70, 74)]  # 10 each: policy allows 20/h


def config_text(sim: WhatsAppSimulator) -> str:
    opts = sim.connector_options()
    ids = ", ".join(
        f"{json.dumps(k)} = {json.dumps(v)}" for k, v in opts["phone_number_ids"].items()
    )
    return f"""
[gateway]
workers = 8
poll_interval = 0.1

[[connectors]]
id = "{CONNECTOR}"
kind = "whatsapp_cloud"
channels = ["whatsapp"]
graph_url = {json.dumps(opts["graph_url"])}
access_token = {json.dumps(opts["access_token"])}
app_secret = {json.dumps(opts["app_secret"])}
verify_token = {json.dumps(opts["verify_token"])}
phone_number_ids = {{ {ids} }}
throughput = {RATE}
burst = {BURST}
"""


@dataclass
class Cluster:
    """The simulator, the worker processes and a runtime (this process) on one store."""

    sim: WhatsAppSimulator
    rt: Runtime
    principal: Principal
    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]

    def log(self, i: int) -> str:
        return self.logs[i].read_text(errors="replace")

    def posts(self, i: int, answer: str = '"HTTP/1.1 200 OK"') -> int:
        """Sends (Graph ``POST /messages``) worker ``i`` made that got ``answer``."""
        line = f"HTTP Request: POST {self.sim.graph_url}/{PNID}/messages {answer}"
        return self.log(i).count(line)

    async def send(self, to: str, n: int) -> list[str]:
        """Submit ``n`` template messages (no 24-hour window needed) from Anna to ``to``."""
        ids = []
        for _ in range(n):
            body = {
                "channel": "whatsapp",
                "from": MOBILE_A,
                "to": to,
                "template": {"name": "order_update", "language": "de"},
            }
            request = convert(SendRequest, body)
            ids.append((await submit(self.rt, self.principal, request)).message.id)
        return ids

    async def all_sent(self, ids: list[str]) -> bool:
        for message_id in ids:
            msg = await self.rt.store.get_message(message_id)
            if msg is None or msg.status != "sent":
                return False
        return True

    def logs_text(self) -> str:
        return "\n".join(f"--- worker {i}\n{self.log(i)}" for i in range(len(self.logs)))


@contextlib.asynccontextmanager
async def cluster(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Cluster]:
    """PROCESSES workers (started, their connectors checked in with the simulator)."""
    url = store_url("redis", redis_url, tmp_path)
    blobs = str(tmp_path / "blobs")
    monkeypatch.setenv("GATEWAY_STORE", url)
    monkeypatch.setenv("GATEWAY_BLOBS", blobs)
    env = {**os.environ, "GATEWAY_STORE": url, "GATEWAY_BLOBS": blobs}
    async with WhatsAppSimulator(numbers={MOBILE_A: PNID}) as sim:
        config = tmp_path / "gateway.toml"
        config.write_text(config_text(sim))
        # This process only submits: its connector is never started, so never sends.
        rt = await open_runtime(load_settings(config), clock=SystemClock(), start_connectors=False)
        logs = [tmp_path / f"worker{i}.log" for i in range(PROCESSES)]
        procs: list[subprocess.Popen[bytes]] = []
        try:
            seed = await seed_directory(rt, FrozenClock(rt.clock.now()))
            c = Cluster(sim, rt, Principal(seed.team.id, None, "test"), procs, logs)
            procs.extend(start_worker(config, env, log) for log in logs)
            # Ready: the worker loops run and the connector checked its number (GET).
            checked = f"HTTP Request: GET {sim.graph_url}/{PNID}?"

            def ready() -> bool:
                return all(
                    "worker started" in c.log(i) and checked in c.log(i) for i in range(PROCESSES)
                )

            await until(ready, "every worker started", TIMEOUT, every=0.05)
            yield c
        finally:
            for p in procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGCONT)  # one may have been stopped
                    p.send_signal(signal.SIGTERM)
            codes = [p.wait(30) for p in procs]
            await rt.aclose()
        assert codes == [0] * PROCESSES, c.logs_text()


def most_in_a_second(times: list[float]) -> int:
    """The most of ``times`` within any 1-second window [t, t + 1)."""
    times = sorted(times)
    most, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - 1.0:
            j += 1
        most = max(most, i - j + 1)
    return most


def accepted(sends: list[SentMessage]) -> list[SentMessage]:
    return [s for s in sends if s.wamid is not None]


async def test_one_budget_per_business_number_across_processes(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with cluster(redis_url, tmp_path, monkeypatch) as c:
        ids = []
        for to in RECIPIENTS:
            ids += await c.send(to, MESSAGES // len(RECIPIENTS))
        await until(lambda: c.all_sent(ids), f"all {MESSAGES} messages sent", TIMEOUT, every=0.05)
        sends = accepted(c.sim.sends)
        per_process = [c.posts(i) for i in range(PROCESSES)]

    # Each message reached the simulator once, all from the one business number.
    assert len(sends) == len(c.sim.sends) == MESSAGES
    assert {s.phone_number_id for s in sends} == {PNID}
    each = MESSAGES // len(RECIPIENTS)
    assert sorted(s.to for s in sends) == sorted(r.lstrip("+") for r in RECIPIENTS * each)
    # Both processes took part: their own logs hold every send between them.
    assert sum(per_process) == MESSAGES and min(per_process) > 0, per_process

    times = sorted(s.received for s in sends)
    most = most_in_a_second(times)
    took = times[-1] - times[0]
    allowed = BURST + math.ceil(round(RATE * (1 + SPREAD), 6)) - 1  # one budget, SPREAD
    shortest = (MESSAGES - BURST) / RATE - SPREAD
    # What a budget per process would have allowed with the same share of the sends:
    # each process its own RATE + BURST in a second, and done after its own share.
    separate = sum(min(n, RATE + BURST) for n in per_process)
    separate_took = max((n - BURST) / RATE for n in per_process)
    print(
        f"\nsends per process {per_process}; most in 1 s: {most} (one budget: {allowed}, "
        f"one per process: {separate}); first to last: {took:.2f} s (one budget: >= "
        f"{shortest:.2f} s, one per process: {separate_took:.2f} s); mean rate "
        f"{(MESSAGES - 1) / took:.1f}/s (budget {RATE}/s)"
    )
    # The control: this run tells one budget from one per process.
    assert separate > allowed and separate_took < shortest
    assert most <= allowed, f"{most} sends within one second; one budget allows {allowed}"
    assert took >= shortest, f"{MESSAGES} sends in {took:.2f} s; one budget takes {shortest:.2f}"


async def test_a_pair_backoff_holds_back_every_process(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = RECIPIENTS[0]
    async with cluster(redis_url, tmp_path, monkeypatch) as c:
        # One message to CONTACT, refused with 131056 by whichever process takes it.
        c.sim.fail_next(131056)
        [first] = await c.send(CONTACT, 1)
        await until(lambda: c.sim.sends, "the first send", TIMEOUT, every=0.05)
        [refused] = c.sim.sends
        assert refused.error == 131056 and refused.to == CONTACT.lstrip("+")
        too_fast = '"HTTP/1.1 429 Too Many Requests"'
        await until(
            lambda: any(c.posts(i, too_fast) for i in range(PROCESSES)),
            "the 429 logged", TIMEOUT, every=0.05,
        )
        [got] = [i for i in range(PROCESSES) if c.posts(i, too_fast)]
        await until(
            lambda: "retry at" in c.log(got),
            "the refused send scheduled again", TIMEOUT, every=0.05,
        )
        # That process is frozen: what happens next is done by the others, which never
        # had a 131056 answer themselves.
        c.procs[got].send_signal(signal.SIGSTOP)
        pairs = PairBackoff(c.rt.store.coordination(), prefix=f"wa:{CONNECTOR}:pair:")
        assert await pairs.hits(PNID, CONTACT) == 1  # in the shared store

        held = await c.send(CONTACT, 3)
        free = await c.send(other, 3)
        await until(
            lambda: c.all_sent([first, *held, *free]),
            "every message sent", TIMEOUT, every=0.05,
        )
        sends = list(c.sim.sends)
        rest = [i for i in range(PROCESSES) if i != got]
        made = sum(c.posts(i) for i in rest)
        # The processes that sent were given the pair's messages during the backoff and
        # put them off (a durable retry, logged, for the rest of the backoff).
        pair_line = f"pair rate limit: no message to {CONTACT}"
        held_back = sum(c.log(i).count(pair_line) for i in rest)

    to_pair = [
        s.received - refused.received for s in accepted(sends) if s.to == CONTACT.lstrip("+")
    ]
    to_other = [s.received - refused.received for s in accepted(sends) if s.to == other.lstrip("+")]
    print(
        f"\nafter the 131056 (s): to the pair {sorted(round(t, 2) for t in to_pair)}, "
        f"to another recipient {sorted(round(t, 2) for t in to_other)}"
    )
    assert len(to_pair) == 4 and len(to_other) == 3 and len(sends) == 8
    assert made == 7  # the frozen process sent nothing after the 131056
    assert held_back >= 1
    # No message to that recipient before the backoff ended (both on this machine's
    # clock: the simulator's monotonic receipts, the backoff's wall-clock end)…
    assert min(to_pair) >= PAIR_BACKOFF - 0.05, to_pair
    # … and the other recipient's messages went out within it, submitted at the same
    # time: the process that sent them held back the pair only.
    assert max(to_other) < PAIR_BACKOFF, to_other
