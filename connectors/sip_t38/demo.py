"""The fax simulator as a demo carrier (entry point ``gateway.simulators: sip_t38``):
``gateway demo`` starts it on a free loopback port and gives the gateway a ``sip_t38``
connector whose proxy it is. A fax to a demo member's fax number comes back as an
inbound fax for that member (the simulator loops the members' fax numbers).
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Sequence

from connectors.base import DemoNumber
from fax.simulator import FaxSimulator
from gateway.config import ConnectorConfig

CONNECTOR_ID = "fax"


def free_port() -> int:
    """A loopback port free for UDP and TCP now (the connector's SIP listener)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = int(u.getsockname()[1])
            with socket.socket() as t:
                try:
                    t.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port


class FaxDemo:
    """The simulated fax carrier of ``gateway demo``."""

    def __init__(self) -> None:
        self.sim: FaxSimulator | None = None
        self.gateway_port = 0

    async def start(self, public_url: str, numbers: Sequence[DemoNumber]) -> ConnectorConfig:
        """Start the simulator; the connector listens on a free port it calls back to."""
        self.gateway_port = free_port()
        loop = tuple(n.number for n in numbers if "fax" in n.channels)
        sim = FaxSimulator(gateway=f"sip:127.0.0.1:{self.gateway_port}", loop_numbers=loop)
        await sim.start()
        self.sim = sim
        options = {"proxy": sim.uri, "listen": f"127.0.0.1:{self.gateway_port}"}
        return ConnectorConfig(CONNECTOR_ID, "sip_t38", frozenset({"fax"}), None, options)

    def banner(self) -> str:
        """What the simulated fax carrier does."""
        if self.sim is None:
            return ""
        return "\n".join([
            f"  Fax          simulated fax machines (SIP + T.38) at {self.sim.uri}",
            "               (every number answers; a fax to a demo member's fax number",
            "               also arrives as an inbound fax for that member). Fax a TIFF-F",
            # The virtualenv's interpreter: a minimal Debian has no ``python``, and the
            # system's python3 does not see the gateway's packages.
            f"               to a member: {sys.executable} -m fax.simulator send --gateway "
            f"sip:127.0.0.1:{self.gateway_port} --to <member's fax> pages.tif",
            "",
        ])

    async def stop(self) -> None:
        """Stop the simulator."""
        if self.sim is not None:
            await self.sim.stop()
            self.sim = None
