"""Shared fixtures: a real Redis server on a free loopback port, stores of both backends."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from gateway.clock import FrozenClock
from gateway.store import make_store
from gateway.store.base import Store

# Property tests assert properties, never speed: on a shared, loaded machine one example
# (or drawing one) can take over a second, which Hypothesis's deadline and its too_slow
# health check would report as a failure of the test.
settings.register_profile("gateway", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("gateway")


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio only (the gateway's runtime)."""
    return "asyncio"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.01)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")


ROOT = Path(__file__).resolve().parents[1]


async def until(
    predicate: Callable[[], object], what: str, timeout: float, every: float = 0.02
) -> None:
    """Wait for ``predicate()`` (sync or async) to hold, looking every ``every`` seconds;
    after ``timeout`` seconds an ``AssertionError`` names ``what`` never happened."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = predicate()
                if asyncio.iscoroutine(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(every)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None


def start_worker(config: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``gateway worker`` as a real process with ``config`` and ``env``, its output in
    ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "worker", "--config", str(config)],
            env=env, cwd=ROOT, stderr=out, stdout=out,
        )  # fmt: skip


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``REDIS_URL`` when set, else a throwaway redis-server (AOF on) on a free port."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed: run `make test`, which installs it")
    workdir = tempfile.mkdtemp(prefix="gw-redis-")
    port = free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            workdir,
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--protected-mode",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def store_url(kind: str, redis_url: str, tmp_path: object) -> str:
    """A fresh store URL of ``kind``: a new SQLite file, or a new key prefix in Redis."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path}/gateway.db"
    sep = "&" if "?" in redis_url else "?"
    return f"{redis_url}{sep}prefix=t{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """Both store backends, one after the other."""
    return str(request.param)


@pytest.fixture
def url(backend: str, redis_url: str, tmp_path: object) -> str:
    """A fresh store URL for the backend under test."""
    return store_url(backend, redis_url, tmp_path)


@pytest.fixture
async def store(url: str) -> AsyncIterator[Store]:
    """An open, empty store of the backend under test."""
    s = make_store(url)
    await s.open()
    try:
        yield s
    finally:
        await s.aclose()


@pytest.fixture
def clock() -> FrozenClock:
    """A clock standing at 2026-03-15 12:00 UTC."""
    return FrozenClock(datetime(2026, 3, 15, 12, 0, tzinfo=UTC))
