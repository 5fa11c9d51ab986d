"""Latency histograms on /metrics: requests per route and method, jobs per kind and
outcome, in the Prometheus text format (buckets cumulative, with _sum and _count)."""

from __future__ import annotations

import re

import httpx
import pytest

from gateway.metrics import standard_metrics
from gateway.process import worker
from gateway.runtime import Runtime
from tests.gateway.conftest import CONTACT, MOBILE_B, Seed, auth

pytestmark = pytest.mark.anyio


def test_histogram_exposition() -> None:
    m = standard_metrics()
    name = "gateway_http_request_duration_seconds"
    for seconds in (0.001, 0.004, 0.02, 3.0, 30.0):
        m.observe(name, (("handler", "get_message"), ("method", "GET")), seconds)
    h = m.histogram(name, handler="get_message", method="GET")
    assert (h["0.005"], h["0.025"], h["2.5"], h["5.0"], h["+Inf"]) == (2, 3, 3, 4, 5)
    assert h["count"] == 5 and h["sum"] == pytest.approx(33.025)
    text = m.render()
    assert f"# TYPE {name} histogram" in text
    assert f'{name}_bucket{{handler="get_message",le="0.005",method="GET"}} 2.0' in text
    assert f'{name}_count{{handler="get_message",method="GET"}} 5.0' in text
    assert "_created" not in text
    assert m.histogram(name, handler="nope", method="GET") == {}


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_requests_and_jobs_are_timed(
    client: httpx.AsyncClient, rt: Runtime, seed: Seed
) -> None:
    body = {"channel": "sms", "from": MOBILE_B, "to": CONTACT, "text": "Hallo"}
    assert (
        await client.post("/v1/messages", json=body, headers=auth(seed.ben_key))
    ).status_code == 202
    assert (await client.get("/v1/messages", headers=auth(seed.ben_key))).status_code == 200
    assert await worker(rt).run_once()  # the send job
    text = (await client.get("/metrics")).text
    count = re.compile(
        r'^gateway_http_request_duration_seconds_count\{handler="(\w+)",method="(\w+)"\} (\S+)$',
        re.M,
    )
    seen = {(h, m): float(n) for h, m, n in count.findall(text)}
    assert seen[("create_message", "POST")] == 1 and seen[("list_messages", "GET")] == 1
    jobs = re.findall(
        r'^gateway_job_duration_seconds_count\{kind="(\w+)",outcome="(\w+)"\} (\S+)$', text, re.M
    )
    assert ("send", "done", "1.0") in jobs
