"""The WhatsApp Cloud API simulator as a demo carrier (entry point
``gateway.simulators: whatsapp_cloud``): ``gateway demo`` starts it on a free loopback
port and gives the demo's WhatsApp members a ``whatsapp_cloud`` connector reaching it.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence

from connectors.base import DemoNumber
from connectors.whatsapp.simulator import WhatsAppSimulator
from gateway.config import ConnectorConfig

CONNECTOR_ID = "whatsapp"
DEMO_CONTACT = "+4917612345678"  # the contact who writes to the demo's members
STATUS_DELAY = 0.5  # seconds until the simulated handset reports delivered, then read


def phone_number_ids(numbers: Sequence[DemoNumber]) -> dict[str, str]:
    """Made-up Meta phone_number_ids for the numbers used for WhatsApp."""
    mobiles = [n.number for n in numbers if "whatsapp" in n.channels]
    return {mobile: f"10000000000{i:04d}" for i, mobile in enumerate(mobiles, start=1)}


class WhatsAppDemo:
    """The simulated WhatsApp carrier of ``gateway demo``."""

    def __init__(self) -> None:
        self.sim: WhatsAppSimulator | None = None

    async def start(self, public_url: str, numbers: Sequence[DemoNumber]) -> ConnectorConfig:
        """Start the simulator; it posts its webhooks to the gateway at ``public_url``."""
        hook = f"{public_url}/hooks/{CONNECTOR_ID}/"
        sim = WhatsAppSimulator(
            numbers=phone_number_ids(numbers), webhook_url=hook, status_delay=STATUS_DELAY
        )
        await sim.start("127.0.0.1", 0)
        self.sim = sim
        channels = frozenset({"whatsapp"})
        return ConnectorConfig(
            CONNECTOR_ID, "whatsapp_cloud", channels, None, sim.connector_options()
        )

    def banner(self) -> str:
        """How to use the simulated WhatsApp carrier from a shell."""
        sim = self.sim
        if sim is None:
            return ""
        business = next(iter(sim.numbers))
        inbound = json.dumps({"from": DEMO_CONTACT, "to": business, "text": "Hallo!"})
        lines = [
            "  WhatsApp     simulated Cloud API at " + sim.graph_url,
            "               (numbers: " + ", ".join(sim.numbers) + "; it posts signed",
            "               status webhooks and tracks the 24-hour window like Meta)",
            "    A contact writes (opens the 24-hour window for free-form answers):",
            f"    curl -s {sim.base_url}/_sim/inbound -H 'Content-Type: application/json' "
            f"-d {shlex.quote(inbound)}",
            '    Then answer with "channel": "whatsapp", "from": "' + business + '", '
            '"to": "' + DEMO_CONTACT + '".',
            "",
        ]
        return "\n".join(lines)

    async def stop(self) -> None:
        """Stop the simulator."""
        if self.sim is not None:
            await self.sim.stop()
            self.sim = None
