"""Fixtures for the SIP tests: a scratch directory for SIPp's traces, a started UA factory."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fax.t38.sip.config import UserAgentConfig
from fax.t38.sip.ua import UserAgent


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A scratch directory (SIPp writes its traces here)."""
    path = Path(tempfile.mkdtemp(prefix="gw-sipp-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


UaFactory = Callable[..., Any]


@pytest.fixture
async def make_ua() -> AsyncIterator[UaFactory]:
    """Start user agents on free loopback ports; all are closed after the test."""
    started: list[UserAgent] = []

    async def make(**kw: Any) -> UserAgent:
        on_incoming = kw.pop("on_incoming", None)
        timers = kw.pop("timers", None)
        tls_client = kw.pop("tls_client", None)
        kw.setdefault("listen", "127.0.0.1:0")
        ua = UserAgent(UserAgentConfig(**kw), on_incoming=on_incoming, timers=timers,
                       tls_client=tls_client)
        started.append(ua)
        await ua.start()
        return ua

    try:
        yield make
    finally:
        for ua in started:
            await ua.aclose()
