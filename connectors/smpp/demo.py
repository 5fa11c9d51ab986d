"""The SMSC simulator as a demo carrier (entry point ``gateway.simulators: smpp``):
``gateway demo`` starts it on a free loopback port and gives the gateway an ``smpp``
connector bound to it. An SMS to a demo member's mobile also comes back as an inbound
SMS (the simulator loops the members' mobiles).
"""

from __future__ import annotations

from collections.abc import Sequence

from connectors.base import DemoNumber
from connectors.smpp.simulator import SmscSimulator
from gateway.config import ConnectorConfig

CONNECTOR_ID = "sms"
SYSTEM_ID = "demo"
PASSWORD = "demo"
RECEIPT_DELAY = 1.0  # seconds until the simulated handset has the SMS
_MOBILE = frozenset({"sms", "whatsapp"})


class SmscDemo:
    """The simulated SMS carrier of ``gateway demo``."""

    def __init__(self) -> None:
        self.sim: SmscSimulator | None = None

    async def start(self, public_url: str, numbers: Sequence[DemoNumber]) -> ConnectorConfig:
        """Start the simulator, looping the members' mobiles."""
        sim = SmscSimulator(
            host="127.0.0.1",
            port=0,
            system_id=SYSTEM_ID,
            password=PASSWORD,
            receipt_delay=RECEIPT_DELAY,
            record=False,
            loop_numbers=[n.number for n in numbers if n.channels & _MOBILE],
        )
        await sim.start()
        self.sim = sim
        options = {"host": "127.0.0.1", "port": sim.port, "system_id": SYSTEM_ID,
                   "password": PASSWORD}  # fmt: skip
        return ConnectorConfig(CONNECTOR_ID, "smpp", frozenset({"sms"}), None, options)

    def banner(self) -> str:
        """What the simulated SMS carrier does."""
        if self.sim is None:
            return ""
        lines = [
            f"  SMS          simulated SMSC (SMPP 3.4) at 127.0.0.1:{self.sim.port}",
            f"               (delivery receipts after {RECEIPT_DELAY:g} s; an SMS to a demo "
            "member's",
            "               mobile also arrives as an inbound SMS for that member)",
            "",
        ]
        return "\n".join(lines)

    async def stop(self) -> None:
        """Stop the simulator."""
        if self.sim is not None:
            await self.sim.stop()
            self.sim = None
