"""What a fax send remembers across its retries, kept in the message's ``meta["fax"]``:
tries, dials, the ladder step, the first dial's time and the confirmed pages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.base import ErrorCode, OutboundAttachment, OutboundMessage, PermanentError


@dataclass(slots=True)
class FaxState:
    """The retry state of one outbound fax."""

    tries: int = 0
    dials: int = 0
    step: int = 0
    pages_sent: int = 0
    first_dial: str | None = None

    @classmethod
    def of(cls, meta: dict[str, Any]) -> FaxState:
        """Read it from a message's meta (defaults for a first attempt)."""
        fax = meta.get("fax")
        if not isinstance(fax, dict):
            return cls()

        def num(key: str) -> int:
            value = fax.get(key, 0)
            return value if isinstance(value, int) and not isinstance(value, bool) else 0

        first = fax.get("first_dial")
        return cls(num("tries"), num("dials"), num("ladder"), num("pages_sent"),
                   first if isinstance(first, str) else None)

    def age(self, now: datetime) -> float:
        """Seconds since the first dial (0 before it)."""
        if self.first_dial is None:
            return 0.0
        return (now - datetime.fromisoformat(self.first_dial)).total_seconds()

    def meta(self) -> dict[str, Any]:
        """The fields as stored in ``meta["fax"]``."""
        return {"tries": self.tries, "dials": self.dials, "ladder": self.step,
                "pages_sent": self.pages_sent, "first_dial": self.first_dial}


def tiff_of(message: OutboundMessage) -> OutboundAttachment:
    """The TIFF to transmit: the attachment ``meta["fax"]["tiff"]`` names, else the first
    image/tiff one; PermanentError (content_invalid) when there is none."""
    fax = message.meta.get("fax")
    wanted = fax.get("tiff") if isinstance(fax, dict) else None
    for att in message.attachments:
        if wanted is not None and att.id == wanted:
            return att
    if wanted is None:
        for att in message.attachments:
            if att.content_type == "image/tiff":
                return att
    raise PermanentError("a fax needs its pages as a TIFF-F attachment (image/tiff)",
                         code=ErrorCode.CONTENT_INVALID)
