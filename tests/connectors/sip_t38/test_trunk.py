"""The connector on a registering trunk (SIPp as registrar, digest auth): registered and
healthy; refused credentials are an AuthError that waits for an operator."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.base import AuthError, ConnectorContext
from connectors.sip_t38.connector import SipT38Connector
from gateway.clock import FrozenClock
from gateway.config import ConnectorConfig
from tests.connectors.smpp.conftest import RecordingSink, eventually
from tests.fax.t38.sip.peers import Sipp

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


def connector(proxy: str) -> SipT38Connector:
    context = ConnectorContext(None, RecordingSink(), FrozenClock(datetime(2026, 1, 1, tzinfo=UTC)),  # type: ignore[arg-type]
                               None, "")  # type: ignore[arg-type]
    config = ConnectorConfig("fax", "sip_t38", frozenset({"fax"}), None, {
        "proxy": proxy, "listen": "127.0.0.1:0", "username": "alice", "password": "secret",
        "register": True})
    return SipT38Connector(config, context)


async def test_registers_with_digest(tmp_path: Path) -> None:
    sipp = Sipp("uas_register.xml", tmp_path)
    await sipp.start()
    fax = connector(sipp.uri)
    try:
        await fax.start()
        assert fax.health().ok
        reg = fax.ua.registration
        assert reg is not None and reg.registered
        await eventually(lambda: reg.count == 2, timeout=5)  # the scenario's refresh
        await fax.aclose()  # unREGISTER
        await sipp.finish()
    finally:
        await fax.aclose()
        await sipp.stop()


async def test_refused_registration_is_an_auth_error(tmp_path: Path) -> None:
    sipp = Sipp("uas_register_reject.xml", tmp_path)
    await sipp.start()
    fax = connector(sipp.uri)
    try:
        with pytest.raises(AuthError) as err:
            await fax.start()
        assert err.value.carrier_code == "sip:403"
        health = fax.health()
        assert not health.ok and health.retry_after is None
        await sipp.finish()
    finally:
        await fax.aclose()
        await sipp.stop()
