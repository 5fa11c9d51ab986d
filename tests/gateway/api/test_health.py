"""Probes: the public ``/readyz`` answers its status only (no exception text, no carrier
address); what is wrong is logged once per change and shown to operator keys by
``GET /v1/health``, as the OpenAPI document says."""

from __future__ import annotations

import logging

import httpx
import pytest

from gateway.api.openapi import openapi_document
from gateway.auth import create_key
from gateway.clock import FrozenClock
from gateway.runtime import Runtime
from tests.gateway.api.test_openapi import Checker
from tests.gateway.conftest import Seed, auth

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]
SECRET_DETAIL = "token expired"  # the fake connector's detail when unhealthy


@pytest.fixture
def check(rt: Runtime) -> Checker:
    return Checker(openapi_document(rt.settings.public_url))


async def test_readyz_says_status_only_and_health_says_why(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed, clock: FrozenClock, check: Checker,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    _, operator = await create_key(rt.store, clock, "", operator=True)
    rt.connectors["fake1"].connector.healthy = False  # type: ignore[attr-defined]
    with caplog.at_level(logging.INFO, logger="gateway.api"):
        for _ in range(3):
            r = await client.get("/readyz")
            assert r.status_code == 503 and r.json() == {"status": "unavailable"}
            assert SECRET_DETAIL not in r.text
            check(r, "/readyz")
    logged = [r.getMessage() for r in caplog.records if "not ready" in r.getMessage()]
    assert len(logged) == 1 and SECRET_DETAIL in logged[0]

    r = await client.get("/v1/health", headers=auth(operator))
    assert r.status_code == 200
    check(r, "/v1/health")
    report = r.json()
    assert report["status"] == "unavailable"
    assert report["checks"]["connectors"]["fake1"] == {"ok": False, "detail": SECRET_DETAIL}
    assert report["checks"]["store"] == {"ok": True}

    for key, status in ((seed.team_key, 403), (seed.anna_key, 403), (None, 401)):
        r = await client.get("/v1/health", headers=auth(key) if key else {})
        assert r.status_code == status
        check(r, "/v1/health")
    # An operator key is no team's key.
    r = await client.get("/v1/messages", headers=auth(operator))
    assert r.status_code == 401
    check(r, "/v1/messages")
