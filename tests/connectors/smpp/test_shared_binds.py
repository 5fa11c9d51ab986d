"""SMPP binds shared by several real ``gateway worker`` processes on one Redis store:
``binds`` is the total at the SMSC, a dead process's binds are taken over, and the parts
of a concatenated inbound SMS are joined although they arrive on different processes."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from connectors.smpp.simulator import SmscSimulator
from gateway.clock import FrozenClock
from gateway.config import parse_settings
from gateway.process import open_runtime
from gateway.runtime import Runtime
from gateway.store.base import MessageFilter
from tests.conftest import start_worker, store_url, until
from tests.gateway.conftest import CONTACT, MOBILE_B, seed_directory

pytestmark = [pytest.mark.anyio, pytest.mark.slow]
BINDS = 2
PROCESSES = 3
LEASE = 1.0  # bind_lease: a dead process's slots are free after a second
TIMEOUT = 60.0  # seconds a test waits for something that must happen


def config_text(port: int) -> str:
    return f"""
[gateway]
workers = 8
poll_interval = 0.1

[[connectors]]
id = "sms1"
kind = "smpp"
channels = ["sms"]
host = "127.0.0.1"
port = {port}
system_id = "gateway"
password = "secret"
rate = 0
binds = {BINDS}
bind_lease = {LEASE}
reconnect_min = 0.05
reconnect_max = 0.2
"""


async def test_binds_are_a_total_taken_over_and_parts_join_across_processes(
    redis_url: str, tmp_path: Path, smsc: SmscSimulator, clock: FrozenClock
) -> None:
    url = store_url("redis", redis_url, tmp_path)
    prefix = url.rsplit("prefix=", 1)[1]
    config = tmp_path / "gateway.toml"
    config.write_text(config_text(smsc.port))
    env = {**os.environ, "GATEWAY_STORE": url, "GATEWAY_BLOBS": str(tmp_path / "blobs")}
    settings = parse_settings({"gateway": {"store": url, "blobs": str(tmp_path / "blobs")}})
    rt: Runtime = await open_runtime(dataclasses.replace(settings))
    seed = await seed_directory(rt, clock)
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    procs = [start_worker(config, env, tmp_path / f"worker{i}.log") for i in range(PROCESSES)]

    async def holders() -> set[int]:
        slots = await r.hgetall(f"{prefix}:co:slot:smpp:sms1")
        return {int(v.split("|")[0].split(":")[1]) for v in slots.values()}

    try:
        await until(lambda: smsc.bound == BINDS, f"{BINDS} binds up", TIMEOUT)
        # Every process keeps trying for a slot: still never more than BINDS at once.
        await asyncio.sleep(LEASE * 3)
        assert smsc.bound == BINDS and smsc.most_bound == BINDS
        # Processes started together take one slot each first: two processes bind.
        assert len(await holders()) == BINDS

        # A three-part SMS, one part at a time: the SMSC takes turns over the binds.
        text = "Teil eins, " * 10 + "Teil zwei, " * 10 + "Teil drei."
        for part in (1, 2, 3):
            smsc.inject(CONTACT, MOBILE_B, text, parts=3, order=[part], ref=77)
            await until(
                lambda n=part: len(smsc.deliver_results) >= n,
                f"part {part} answered", TIMEOUT,
            )
        assert len({conn for kind, conn in smsc.delivered_on if kind == "mo"}) == BINDS
        flt = MessageFilter(seed.team.id, member_id=seed.ben.id, direction="inbound")

        async def stored() -> bool:
            return bool((await rt.store.list_messages(flt, None, 10)).items)

        await until(stored, "the joined message stored", TIMEOUT)
        [message] = (await rt.store.list_messages(flt, None, 10)).items
        assert message.text == text and message.segments == 3

        # The process holding a bind dies: another takes its slot over after the lease.
        held = await holders()
        victim = next(p for p in procs if p.pid in held)
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)

        async def taken_over() -> bool:
            now = await holders()
            return victim.pid not in now and len(now) >= 1 and smsc.bound == BINDS

        await until(taken_over, "the dead process's bind taken over", TIMEOUT)
        assert smsc.most_bound == BINDS  # never more binds at the SMSC than configured
        assert all(kind != "mo" or status == 0 for kind, status in smsc.deliver_results)
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        codes = [p.wait(30) for p in procs]
        await r.aclose()
        await rt.aclose()
    assert sorted(codes)[1:] == [0] * (PROCESSES - 1)  # the killed one aside, clean exits
