"""``gateway demo`` carries WhatsApp through the simulator: a contact writes, a member
answers through the API, and the simulator's status webhooks bring it to ``read``."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from connectors.whatsapp.cloud import WhatsAppCloudConnector
from connectors.whatsapp.demo import DEMO_CONTACT as WHATSAPP_DEMO_CONTACT
from connectors.whatsapp.demo import phone_number_ids
from gateway.api.app import create_app
from gateway.auth import create_key
from gateway.demo import demo_numbers, run_demo
from gateway.runtime import Runtime
from gateway.serving import serving
from tests.conftest import free_port

pytestmark = pytest.mark.anyio


def test_whatsapp_members_get_phone_number_ids() -> None:
    assert phone_number_ids(demo_numbers()) == {
        "+4915112345671": "100000000000001",
        "+4915112345673": "100000000000002",
    }


async def test_demo_whatsapp_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    outcome: dict[str, object] = {}

    async def serve(rt: Runtime, host: str, port: int) -> None:
        async with serving(create_app(rt), host, port, lifespan="on"):
            connector = rt.connectors["whatsapp"].connector
            assert isinstance(connector, WhatsAppCloudConnector)
            sim_url = connector.options.graph_url.rsplit("/", 1)[0]
            (team,) = await rt.store.list_teams()
            _, key = await create_key(rt.store, rt.clock, team.id)
            headers = {"Authorization": f"Bearer {key}"}
            business = "+4915112345671"
            async with httpx.AsyncClient(base_url=f"http://{host}:{port}", timeout=10) as gw:
                inbound = {"from": WHATSAPP_DEMO_CONTACT, "to": business, "text": "Hallo!"}
                injected = await gw.post(f"{sim_url}/_sim/inbound", json=inbound)
                outcome["webhook"] = injected.json()["webhook_status"]
                body = {
                    "channel": "whatsapp",
                    "from": business,
                    "to": WHATSAPP_DEMO_CONTACT,
                    "text": "Danke!",
                }
                sent = await gw.post("/v1/messages", json=body, headers=headers)
                assert sent.status_code == 202, sent.text
                for _ in range(200):  # at most ~10 s
                    msg = (
                        await gw.get(f"/v1/messages/{sent.json()['id']}", headers=headers)
                    ).json()
                    if msg["status"] in ("read", "failed"):
                        break
                    await asyncio.sleep(0.05)
                outcome["status"] = msg["status"]
                listing = (await gw.get("/v1/messages", headers=headers)).json()["data"]
                outcome["inbound"] = [m["text"] for m in listing if m["direction"] == "inbound"]

    await run_demo("127.0.0.1", free_port(), serve)
    assert outcome == {"webhook": 200, "status": "read", "inbound": ["Hallo!"]}
    banner = capsys.readouterr().out
    assert "WhatsApp     simulated Cloud API at http://127.0.0.1:" in banner
    assert "/_sim/inbound" in banner
