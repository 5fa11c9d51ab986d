"""The carrier simulator itself: auth, validation, segments, signed callbacks, faults, CLI."""

from __future__ import annotations

import base64
import json
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connectors.http_sms import signature
from connectors.http_sms.simulator import Simulator, serving
from tests.conftest import free_port

pytestmark = pytest.mark.anyio


class Receiver:
    """A webhook receiver on a loopback port that checks every signature it gets."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.url = ""
        self.posts: list[tuple[str, dict[str, str], bool]] = []
        self.app = Starlette(routes=[Route("/{name}", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        params = parse_qsl((await request.body()).decode(), keep_blank_values=True)
        ok = signature.verify(
            self.token, str(request.url), params, request.headers.get("x-twilio-signature")
        )
        self.posts.append((request.url.path, dict(params), ok))
        return Response(status_code=204 if ok else 403)


@pytest.fixture
async def receiver(sim: Simulator) -> AsyncIterator[Receiver]:
    """Receives the simulator's callbacks."""
    rec = Receiver(sim.auth_token)
    async with serving(rec.app) as url:
        rec.url = url
        yield rec


def messages_url(sim: Simulator, account: str | None = None) -> str:
    return f"{sim.base_url}/2010-04-01/Accounts/{account or sim.account_sid}/Messages.json"


async def create(
    http: httpx.AsyncClient,
    sim: Simulator,
    form: dict[str, str],
    auth: tuple[str, str] | None = None,
) -> httpx.Response:
    return await http.post(
        messages_url(sim), data=form, auth=auth or (sim.account_sid, sim.auth_token)
    )


async def test_basic_auth_with_twilios_error_shape(http: httpx.AsyncClient, sim: Simulator) -> None:
    form = {"To": "+4917612345678", "From": "+4915112345671", "Body": "x"}

    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    refused = [
        basic(sim.account_sid, "wrong"),
        basic("ACother", sim.auth_token),
        "Basic !!not-base64!!",
        f"Bearer {sim.auth_token}",
        "",
    ]
    for header in refused:
        headers = {"Authorization": header} if header else {}
        resp = await http.post(messages_url(sim), data=form, headers=headers)
        assert resp.status_code == 401
        assert resp.json() == {
            "code": 20003,
            "message": "Authenticate",
            "more_info": "https://www.twilio.com/docs/errors/20003",
            "status": 401,
        }
    other_account = await http.post(
        messages_url(sim, "AC" + "0" * 32), data=form, auth=(sim.account_sid, sim.auth_token)
    )
    assert other_account.status_code == 401
    account = await http.get(
        f"{sim.base_url}/2010-04-01/Accounts/{sim.account_sid}.json",
        auth=(sim.account_sid, sim.auth_token),
    )
    assert account.json()["status"] == "active"
    assert sim.sends == []


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"From": "+4915112345671", "Body": "x"}, 21604),
        ({"To": "017612345678", "From": "+4915112345671", "Body": "x"}, 21211),
        ({"To": "+4917612345678", "Body": "x"}, 21603),
        ({"To": "+4917612345678", "From": "+4915112345671"}, 21602),
        ({"To": "+4917612345678", "From": "+4915112345671", "Body": "x" * 1601}, 21617),
    ],
)
async def test_validation(
    http: httpx.AsyncClient, sim: Simulator, form: dict[str, str], code: int
) -> None:
    resp = await create(http, sim, form)
    assert resp.status_code == 400 and resp.json()["code"] == code
    assert sim.sends[-1].error == code and sim.sends[-1].sid is None


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("Hello", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 307, 3),
        ("a" * 159 + "€", 2),
        ("Preis: 5€" * 16, 1),
        ("ж" * 70, 1),
        ("ж" * 71, 2),
        ("😀" * 35, 1),
    ],
)
async def test_created_message_resource(
    http: httpx.AsyncClient, sim: Simulator, body: str, segments: int
) -> None:
    form = {"To": "+4917612345678", "From": "+4915112345671", "Body": body}
    resp = await create(http, sim, form)
    assert resp.status_code == 201
    doc = resp.json()
    assert re.fullmatch(r"SM[0-9a-f]{32}", doc["sid"])
    assert doc["status"] == "queued" and doc["num_segments"] == str(segments)
    assert (doc["to"], doc["from"], doc["body"]) == (form["To"], form["From"], body)
    assert doc["account_sid"] == sim.account_sid and doc["direction"] == "outbound-api"


async def test_signed_callbacks_in_carrier_order(
    http: httpx.AsyncClient, sim: Simulator, receiver: Receiver
) -> None:
    sim.deliver_next(1, "undelivered", 30003)
    sim.deliver_next(1, "failed", 30007)
    sids = []
    for name in ("one", "two", "three"):
        form = {
            "To": "+4917612345678",
            "From": "+4915112345671",
            "Body": name,
            "StatusCallback": f"{receiver.url}/{name}?x=1",
        }
        sids.append((await create(http, sim, form)).json()["sid"])
    await sim.settle()
    by_path: dict[str, list[tuple[str, str | None]]] = {}
    for path, params, ok in receiver.posts:
        assert ok, "every callback is signed over its full URL"
        by_path.setdefault(path, []).append((params["MessageStatus"], params.get("ErrorCode")))
        assert params["AccountSid"] == sim.account_sid and params["SmsSid"] == params["MessageSid"]
    assert by_path == {
        "/one": [("sent", None), ("undelivered", "30003")],
        "/two": [("failed", "30007")],  # never left the carrier: no "sent"
        "/three": [("sent", None), ("delivered", None)],
    }
    assert all(c.status_code == 204 for c in sim.callbacks)
    fetched = await http.get(
        f"{sim.base_url}/2010-04-01/Accounts/{sim.account_sid}/Messages/{sids[0]}.json",
        auth=(sim.account_sid, sim.auth_token),
    )
    assert fetched.json()["status"] == "undelivered" and fetched.json()["error_code"] == 30003


async def test_fault_modes_count_down(http: httpx.AsyncClient, sim: Simulator) -> None:
    form = {"To": "+4917612345678", "From": "+4915112345671", "Body": "x"}
    sim.fail_next(2, status=503, code=None, message="maintenance", retry_after="30")
    sim.rate_limit_next(1, retry_after="2")
    answers = [await create(http, sim, form) for _ in range(4)]
    assert [a.status_code for a in answers] == [503, 503, 429, 201]
    assert answers[0].headers["Retry-After"] == "30" and answers[0].text == "maintenance"
    assert answers[2].headers["Retry-After"] == "2" and answers[2].json()["code"] == 20429
    sim.fail_next(1)
    bad_auth = await create(http, sim, form, auth=(sim.account_sid, "nope"))
    assert bad_auth.status_code == 401  # auth comes first and uses up no fault
    assert (await create(http, sim, form)).json()["code"] == 21211


async def test_inject_inbound_is_signed(sim: Simulator, receiver: Receiver) -> None:
    record = await sim.inject_inbound(
        "+4917612345678",
        "+4915112345671",
        "a" * 200,
        url=f"{receiver.url}/inbound",
        media=[("https://media.example/1", "image/png")],
    )
    assert record.status_code == 204
    [(path, params, ok)] = receiver.posts
    assert ok and path == "/inbound"
    assert params["NumSegments"] == "2" and params["NumMedia"] == "1"
    assert params["MediaContentType0"] == "image/png" and params["SmsStatus"] == "received"
    with pytest.raises(ValueError, match="no inbound URL"):
        await sim.inject_inbound("+1", "+2", "x")


async def test_unreachable_callback_is_recorded(http: httpx.AsyncClient, sim: Simulator) -> None:
    form = {
        "To": "+4917612345678",
        "From": "+4915112345671",
        "Body": "x",
        "StatusCallback": f"http://127.0.0.1:{free_port()}/gone",
    }
    assert (await create(http, sim, form)).status_code == 201
    await sim.settle()
    assert [c.status_code for c in sim.callbacks] == [None, None]
    assert all(c.error and "ConnectError" in c.error for c in sim.callbacks)


def test_runs_as_a_process() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "connectors.http_sms.simulator",
            "--port",
            "0",
            "--delays",
            "0",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        assert info["base_url"].startswith("http://127.0.0.1:")
        with httpx.Client(base_url=info["base_url"], timeout=10.0) as client:
            url = f"/2010-04-01/Accounts/{info['account_sid']}/Messages.json"
            form = {"To": "+4917612345678", "From": "+4915112345671", "Body": "hi"}
            created = client.post(url, data=form, auth=(info["account_sid"], info["auth_token"]))
            assert created.status_code == 201
            sends = client.get("/_sim/sends").json()["sends"]
            assert [(s["sid"], s["body"]) for s in sends] == [(created.json()["sid"], "hi")]
            no_target = client.post("/_sim/inbound", data={"From": "+1", "To": "+2"})
            assert no_target.status_code == 400
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()
        if proc.stderr:
            proc.stderr.close()


async def test_serving_a_taken_port_fails_cleanly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"could not start on 127.0.0.1:{port}"):
            async with serving(Starlette(), port=port):
                pass
