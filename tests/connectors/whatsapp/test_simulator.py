"""The simulator behaves like Meta: tokens, wamids, the 24-hour window, status webhooks
(signed, batched, duplicated, reordered), programmed errors, and its command line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.whatsapp.simulator import WhatsAppSimulator
from connectors.whatsapp.webhook import verify_signature
from gateway.clock import FrozenClock
from tests.connectors.whatsapp.conftest import BUSINESS, META_PNID, USER, serving

pytestmark = pytest.mark.anyio


class Receiver:
    """A webhook endpoint that records what it gets and answers ``status``."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.signatures: list[str | None] = []
        self.status = 200

    async def hook(self, request: Request) -> Response:
        self.bodies.append(await request.body())
        self.signatures.append(request.headers.get("x-hub-signature-256"))
        return Response("ok", status_code=self.status)

    def statuses(self) -> list[tuple[str, str]]:
        out = []
        for body in self.bodies:
            value = json.loads(body)["entry"][0]["changes"][0]["value"]
            out += [(s["id"], s["status"]) for s in value.get("statuses", [])]
        return out


@pytest.fixture
async def receiver(sim: WhatsAppSimulator) -> AsyncIterator[Receiver]:
    rec = Receiver()
    async with serving(Starlette(routes=[Route("/hook", rec.hook, methods=["POST"])])) as base:
        sim.webhook_url = f"{base}/hook"
        yield rec


def bearer(sim: WhatsAppSimulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {sim.access_token}"}


async def send(
    http: httpx.AsyncClient, sim: WhatsAppSimulator, body: dict[str, Any] | None = None
) -> httpx.Response:
    body = body or {
        "messaging_product": "whatsapp",
        "to": USER,
        "type": "text",
        "text": {"body": "hi"},
    }
    return await http.post(f"{sim.graph_url}/{META_PNID}/messages", json=body, headers=bearer(sim))


async def test_bearer_token_is_required(sim: WhatsAppSimulator, http: httpx.AsyncClient) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": f"Basic {sim.access_token}"},
    ):
        resp = await http.post(f"{sim.graph_url}/{META_PNID}/messages", json={}, headers=headers)
        assert resp.status_code == 401
        error = resp.json()["error"]
        assert error["code"] == 190 and error["type"] == "OAuthException" and error["fbtrace_id"]
    info = await http.get(f"{sim.graph_url}/{META_PNID}", headers=bearer(sim))
    assert info.json()["display_phone_number"] == BUSINESS.lstrip("+")


async def test_accepted_sends_get_wamids(
    sim: WhatsAppSimulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    await sim.inject_inbound(USER, BUSINESS, "Hallo")
    resp = await send(http, sim)
    assert resp.status_code == 200
    body = resp.json()
    assert body["contacts"] == [{"input": USER, "wa_id": USER.lstrip("+")}]
    wamid = body["messages"][0]["id"]
    assert (
        wamid.startswith("wamid.") and wamid != (await send(http, sim)).json()["messages"][0]["id"]
    )
    assert [s.wamid for s in sim.sends] == [wamid, sim.sends[1].wamid]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"messaging_product": "sms", "to": USER, "type": "text", "text": {"body": "x"}}, 100),
        ({"messaging_product": "whatsapp", "to": USER, "type": "text", "text": {"body": ""}}, 100),
        (
            {
                "messaging_product": "whatsapp",
                "to": USER,
                "type": "text",
                "text": {"body": "x" * 4097},
            },
            100,
        ),
        (
            {"messaging_product": "whatsapp", "to": "abc", "type": "text", "text": {"body": "x"}},
            100,
        ),
        (
            {"messaging_product": "whatsapp", "to": USER, "type": "image", "image": {"id": "1"}},
            131009,
        ),
        (
            {
                "messaging_product": "whatsapp",
                "to": USER,
                "type": "template",
                "template": {"name": "x"},
            },
            100,
        ),
        ({"messaging_product": "whatsapp", "to": USER, "type": "fax"}, 100),
    ],
)
async def test_bad_requests_are_refused(
    sim: WhatsAppSimulator, http: httpx.AsyncClient, body: dict[str, Any], code: int
) -> None:
    resp = await send(http, sim, body)
    assert resp.status_code == 400 and resp.json()["error"]["code"] == code
    assert sim.sends[-1].error == code and sim.sends[-1].wamid is None


async def test_window_of_24_hours_like_meta(
    sim: WhatsAppSimulator, http: httpx.AsyncClient, receiver: Receiver, clock: FrozenClock
) -> None:
    # Never wrote: accepted, then a failed webhook with 131047.
    wamid = (await send(http, sim)).json()["messages"][0]["id"]
    await sim.flush()
    (doc,) = [json.loads(b) for b in receiver.bodies]
    (status,) = doc["entry"][0]["changes"][0]["value"]["statuses"]
    assert (status["id"], status["status"]) == (wamid, "failed")
    assert status["errors"][0]["code"] == 131047
    # Wrote just now: open for 24 hours.
    await sim.inject_inbound(USER, BUSINESS, "Hallo")
    assert sim.window_open(BUSINESS, USER)
    clock.advance(hours=23, minutes=59)
    assert sim.window_open(BUSINESS, USER)
    clock.advance(minutes=1)
    assert not sim.window_open(BUSINESS, USER)
    # Templates go any time; free-form refused at once in "sync" mode.
    template = {"name": "hello_world", "language": {"code": "en_US"}}
    ok = await send(
        http,
        sim,
        {"messaging_product": "whatsapp", "to": USER, "type": "template", "template": template},
    )
    assert ok.status_code == 200
    sim.window_errors = "sync"
    refused = await send(http, sim)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == 131047


async def test_status_webhooks_are_signed_ascii_json_in_order(
    sim: WhatsAppSimulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    await sim.inject_inbound(USER, BUSINESS, "Grüße")
    wamid = (await send(http, sim)).json()["messages"][0]["id"]
    assert sim.pending == 3
    await sim.flush()
    assert receiver.statuses() == [(wamid, "sent"), (wamid, "delivered"), (wamid, "read")]
    for body, signature in zip(receiver.bodies, receiver.signatures, strict=True):
        assert verify_signature(sim.app_secret, body, signature)
        body.decode("ascii")  # non-ASCII is escaped, as Meta does
    assert b"Gr\\u00fc\\u00dfe" in receiver.bodies[0]


async def test_modes_batch_duplicate_reorder_skip(
    sim: WhatsAppSimulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    await sim.inject_inbound(USER, BUSINESS, "Hallo")
    receiver.bodies.clear()
    sim.status_modes = {"out_of_order", "duplicates"}
    sim.batch_size = 3
    a = (await send(http, sim)).json()["messages"][0]["id"]
    b = (await send(http, sim)).json()["messages"][0]["id"]
    deliveries = await sim.flush()
    assert len(deliveries) == 4  # two batches of three, each posted twice
    once = [(a, "sent"), (a, "read"), (a, "delivered"), (b, "sent"), (b, "read"), (b, "delivered")]
    assert receiver.statuses() == once[:3] * 2 + once[3:] * 2
    receiver.bodies.clear()
    sim.status_modes = {"skip_delivered"}
    sim.batch_size = 1
    c = (await send(http, sim)).json()["messages"][0]["id"]
    await sim.flush()
    assert receiver.statuses() == [(c, "sent"), (c, "read")]


async def test_a_refused_webhook_is_posted_again(
    sim: WhatsAppSimulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    await sim.inject_inbound(USER, BUSINESS, "Hallo")
    sim.stop_at = "sent"
    await send(http, sim)
    receiver.status = 500
    await sim.flush()
    assert sim.pending == 1
    receiver.status = 200
    await sim.flush()
    assert sim.pending == 0 and [d.status_code for d in sim.deliveries[-2:]] == [500, 200]


async def test_programmed_errors(
    sim: WhatsAppSimulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    await sim.inject_inbound(USER, BUSINESS, "Hallo")
    sim.fail_next(130429, count=2)
    for _ in range(2):
        resp = await send(http, sim)
        assert resp.status_code == 429 and resp.json()["error"]["code"] == 130429
    assert (await send(http, sim)).status_code == 200
    sim.fail_next(131026)
    assert (await send(http, sim)).json()["error"]["code"] == 131026
    receiver.bodies.clear()
    sim._pending.clear()
    sim.fail_async(131049)
    wamid = (await send(http, sim)).json()["messages"][0]["id"]
    await sim.flush()
    assert receiver.statuses() == [(wamid, "failed")]
    value = json.loads(receiver.bodies[0])["entry"][0]["changes"][0]["value"]
    assert value["statuses"][0]["errors"][0]["code"] == 131049


async def test_automatic_statuses(http: httpx.AsyncClient, clock: FrozenClock) -> None:
    rec = Receiver()
    async with serving(Starlette(routes=[Route("/hook", rec.hook, methods=["POST"])])) as base:
        sim = WhatsAppSimulator(
            numbers={BUSINESS: META_PNID}, webhook_url=f"{base}/hook", clock=clock
        )
        async with sim:
            await sim.inject_inbound(USER, BUSINESS, "Hallo")
            await send(http, sim)
            for task in list(sim._tasks):
                await task
            assert [s for _, s in rec.statuses()] == ["sent", "delivered", "read"]


async def test_media_endpoints(
    sim: WhatsAppSimulator, http: httpx.AsyncClient, clock: FrozenClock
) -> None:
    up = await http.post(
        f"{sim.graph_url}/{META_PNID}/media",
        data={"messaging_product": "whatsapp", "type": "application/pdf"},
        files={"file": ("a.pdf", b"%PDF-1.4 x", "application/pdf")},
        headers=bearer(sim),
    )
    media_id = up.json()["id"]
    info = (await http.get(f"{sim.graph_url}/{media_id}", headers=bearer(sim))).json()
    assert info["mime_type"] == "application/pdf" and info["file_size"] == 10
    assert (await http.get(info["url"], headers=bearer(sim))).content == b"%PDF-1.4 x"
    clock.advance(minutes=5)
    assert (await http.get(info["url"], headers=bearer(sim))).status_code == 404
    fresh = (await http.get(f"{sim.graph_url}/{media_id}", headers=bearer(sim))).json()
    assert (await http.get(fresh["url"], headers=bearer(sim))).status_code == 200
    no_file = await http.post(
        f"{sim.graph_url}/{META_PNID}/media",
        data={"messaging_product": "whatsapp"},
        headers=bearer(sim),
    )
    assert no_file.json()["error"]["code"] == 100


async def test_control_routes(
    sim: WhatsAppSimulator, http: httpx.AsyncClient, receiver: Receiver
) -> None:
    base = sim.base_url
    resp = await http.post(
        f"{base}/_sim/inbound", json={"from": USER, "to": BUSINESS, "text": "Hi"}
    )
    assert resp.status_code == 200 and resp.json()["webhook_status"] == 200
    assert resp.json()["id"].startswith("wamid.")
    bad = await http.post(
        f"{base}/_sim/inbound", json={"from": USER, "to": "+4930000000", "text": "x"}
    )
    assert bad.status_code == 400
    modes = await http.post(
        f"{base}/_sim/modes", json={"status_modes": ["duplicates"], "batch_size": 5}
    )
    assert modes.json() == {
        "status_modes": ["duplicates"],
        "batch_size": 5,
        "window_errors": "async",
    }
    assert (
        await http.post(f"{base}/_sim/modes", json={"status_modes": ["chaos"]})
    ).status_code == 400
    await http.post(f"{base}/_sim/fail", json={"code": 131026})
    assert (await send(http, sim)).json()["error"]["code"] == 131026
    await send(http, sim)
    assert (await http.post(f"{base}/_sim/flush")).json() == {"posted": 2}
    sends = (await http.get(f"{base}/_sim/sends")).json()["sends"]
    assert [s["error"] for s in sends] == [131026, None]


@pytest.mark.slow
def test_command_line() -> None:
    argv = [
        sys.executable,
        "-m",
        "connectors.whatsapp.simulator",
        "--port",
        "0",
        "--number",
        "+4915112345671=106540352242922",
        "--access-token",
        "tok",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    ) as proc:
        try:
            assert proc.stdout is not None
            line = json.loads(proc.stdout.readline())
            assert line["access_token"] == "tok"
            assert line["phone_number_ids"] == {"+4915112345671": "106540352242922"}
            graph = line["graph_url"]
            assert graph.startswith("http://127.0.0.1:") and graph.endswith("/v25.0")
            resp = httpx.get(f"{graph}/106540352242922", headers={"Authorization": "Bearer tok"})
            assert resp.json()["id"] == "106540352242922"
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
