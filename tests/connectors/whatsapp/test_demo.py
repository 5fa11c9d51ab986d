"""``gateway demo`` carries WhatsApp through the simulator: a contact writes, a member
answers through the API, and the simulator's status webhooks bring it to ``read``."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from connectors.whatsapp.cloud import WhatsAppCloudConnector
from gateway.api.app import create_app
from gateway.auth import create_key
from gateway.demo import WHATSAPP_DEMO_CONTACT, run_demo, whatsapp_phone_number_ids
from gateway.runtime import Runtime
from tests.conftest import free_port
from tests.connectors.whatsapp.conftest import _Server

pytestmark = pytest.mark.anyio


def test_whatsapp_members_get_phone_number_ids() -> None:
    assert whatsapp_phone_number_ids() == {
        "+4915112345671": "100000000000001",
        "+4915112345673": "100000000000002",
    }


async def test_demo_whatsapp_round_trip(capsys: pytest.CaptureFixture[str]) -> None:
    import uvicorn

    outcome: dict[str, object] = {}

    async def serve(rt: Runtime, host: str, port: int) -> None:
        server = _Server(
            uvicorn.Config(create_app(rt), host=host, port=port, log_level="warning", ws="none")
        )
        task = asyncio.create_task(server.serve())
        try:
            for _ in range(1000):  # at most ~10 s
                if server.started:
                    break
                await asyncio.sleep(0.01)
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
        finally:
            server.should_exit = True
            with contextlib.suppress(SystemExit):
                await task

    await run_demo("127.0.0.1", free_port(), serve)
    assert outcome == {"webhook": 200, "status": "read", "inbound": ["Hallo!"]}
    banner = capsys.readouterr().out
    assert "WhatsApp     simulated Cloud API at http://127.0.0.1:" in banner
    assert "/_sim/inbound" in banner
