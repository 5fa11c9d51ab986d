"""An Idempotency-Key is scoped to the principal that used it, on both backends: another
member replaying a member's body with that member's key gets their own answer (here: a
refusal, since the number is not theirs), never the member's message; a team key gets its
own new message; the member themself gets the replay."""

from __future__ import annotations

import httpx
import pytest

from gateway.api.idempotency import idempotency_scope
from gateway.auth import Principal
from tests.gateway.conftest import CONTACT, Seed, auth

pytestmark = pytest.mark.anyio


async def test_a_key_is_the_principals_own(client: httpx.AsyncClient, seed: Seed) -> None:
    body = {"channel": "sms", "from": seed.ben.mobile, "to": CONTACT, "text": "Ihre Bestellung"}
    key = {"Idempotency-Key": "order-77"}
    first = await client.post("/v1/messages", json=body, headers={**auth(seed.ben_key), **key})
    assert first.status_code == 202, first.text
    again = await client.post("/v1/messages", json=body, headers={**auth(seed.ben_key), **key})
    assert again.headers.get("idempotency-replayed") == "true"
    assert again.json()["id"] == first.json()["id"]

    other = await client.post("/v1/messages", json=body, headers={**auth(seed.anna_key), **key})
    assert other.status_code == 403, other.text
    assert other.json()["code"] == "sender_not_owned"
    assert "idempotency-replayed" not in other.headers
    assert first.json()["id"] not in other.text and "Ihre Bestellung" not in other.text

    team = await client.post("/v1/messages", json=body, headers={**auth(seed.team_key), **key})
    assert team.status_code == 202
    assert "idempotency-replayed" not in team.headers
    assert team.json()["id"] != first.json()["id"]
    listed = await client.get("/v1/messages", headers=auth(seed.team_key))
    assert len(listed.json()["data"]) == 2


def test_scopes_of_team_and_member_keys_never_meet() -> None:
    team = idempotency_scope(Principal("team_1", None, "key_1"))
    member = idempotency_scope(Principal("team_1", "mem_1", "key_2"))
    assert team == "team_1"  # keys stored before members had their own keep answering
    assert member == "team_1/mem_1"
    assert idempotency_scope(Principal("team_1", "mem_1", "key_3")) == member
