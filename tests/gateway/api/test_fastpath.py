"""The send fast path answers exactly what the regular ``create_message`` route answers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from gateway.api import fastpath
from gateway.runtime import Runtime
from tests.gateway.conftest import CONTACT, FAX_A, MOBILE_A, MOBILE_B, Seed, auth

pytestmark = pytest.mark.anyio

# Fields that differ between two otherwise equal sends.
_VARYING = {"id", "created_at", "updated_at"}


def _cases(seed: Seed) -> list[tuple[str, dict[str, str], bytes]]:
    """(name, headers, body) of sends that pass and sends that fail at every stage."""
    json = {"Content-Type": "application/json"}

    def send(channel: str, sender: str, to: str, text: str | None) -> bytes:
        said = "" if text is None else f',"text":"{text}"'
        return f'{{"channel":"{channel}","from":"{sender}","to":"{to}"{said}}}'.encode()

    def sms(sender: str = MOBILE_B, to: str = CONTACT, text: str = "Hallo") -> bytes:
        return send("sms", sender, to, text)

    ben = {**json, **auth(seed.ben_key)}
    return [
        ("member key", ben, sms()),
        ("team key", {**json, **auth(seed.team_key)}, sms(MOBILE_A)),
        ("national numbers", ben, sms(to="0176 12345678")),
        ("padded bearer", {"Authorization": f"Bearer  {seed.ben_key} "}, sms()),
        ("no authorization", json, sms()),
        ("basic scheme", {"Authorization": "Basic eDp5"}, sms()),
        ("unknown key", auth("gwk_nope"), sms()),
        ("other team's key", auth(seed.other_key), sms()),
        ("empty body", ben, b""),
        ("broken json", ben, b'{"channel": '),
        ("not utf-8", ben, b'{"text": "\xff"}'),
        ("array", ben, b"[]"),
        ("unknown field", ben, b'{"channel":"sms","colour":"red"}'),
        ("bad channel", ben, b'{"channel":"pigeon","from":"x","to":"y","text":"z"}'),
        ("bad number", ben, sms(to="12")),
        ("not the sender's number", ben, sms(MOBILE_A)),
        ("same number", ben, sms(to=MOBILE_B)),
        ("too long", ben, sms(text="x" * 1601)),
        ("no text", ben, send("sms", MOBILE_B, CONTACT, None)),
        ("addon missing", ben, send("fax", MOBILE_B, CONTACT, "x")),
        ("fax number", {**json, **auth(seed.anna_key)}, send("fax", FAX_A, "+4930123456799", "x")),
        ("wrong type", ben, b'{"channel":"sms","from":1,"to":"y","text":"z"}'),
    ]  # fmt: skip


def _comparable(resp: httpx.Response) -> tuple[int, list[tuple[str, str]], Any]:
    body = resp.json()
    if resp.status_code == 202:
        body = {k: v for k, v in body.items() if k not in _VARYING}
    return resp.status_code, sorted(resp.headers.multi_items()), body


async def test_same_answers_as_the_route(
    client: httpx.AsyncClient, seed: Seed, rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = []
    for name, headers, body in _cases(seed):
        fast = await client.post("/v1/messages", content=body, headers=headers)
        with monkeypatch.context() as m:
            m.setattr(fastpath, "PATH", "/nowhere")  # every request takes the route
            slow = await client.post("/v1/messages", content=body, headers=headers)
        assert _comparable(fast) == _comparable(slow), name
        answers.append(fast.status_code)
    # The cases reach every outcome: accepted, and each error class on the way.
    assert sorted(set(answers)) == [202, 400, 401, 403, 422]
    # Both copies of every accepted send were stored and queued.
    assert (await rt.store.job_counts())["ready"] == 2 * answers.count(202)
    text = (await client.get("/metrics")).text
    line = 'gateway_http_requests_total{handler="create_message",method="POST",status="202"}'
    assert f"{line} {2 * answers.count(202)}" in text


async def test_idempotent_sends_take_the_route(client: httpx.AsyncClient, seed: Seed) -> None:
    # The fast path has no idempotency: a keyed send must still be replayed.
    body = {"channel": "sms", "from": MOBILE_B, "to": CONTACT, "text": "Hallo"}
    headers = {**auth(seed.ben_key), "Idempotency-Key": "k1"}
    first = await client.post("/v1/messages", json=body, headers=headers)
    again = await client.post("/v1/messages", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.headers["idempotency-replayed"] == "true"
    assert again.json() == first.json()


async def test_client_gone_before_the_body(
    client: httpx.AsyncClient, seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client that disconnects while the body is read: no answer and no exception either
    # way (counted as 499, ``test_body_limits``), and nothing is stored.
    app = client._transport.app  # type: ignore[attr-defined]

    async def run() -> list[dict[str, Any]]:
        key = f"Bearer {seed.ben_key}".encode()
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": "/v1/messages", "root_path": "",
            "raw_path": b"/v1/messages", "query_string": b"", "server": ("gw.test", 80),
            "client": ("127.0.0.1", 1), "headers": [(b"authorization", key)],
        }  # fmt: skip
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(scope, receive, send)
        return sent

    fast = await run()
    monkeypatch.setattr(fastpath, "PATH", "/nowhere")
    slow = await run()
    assert fast == slow == []
