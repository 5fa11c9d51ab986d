"""What the UA tells the application about an incoming INVITE, and the two ways to decide."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fax.t38.sdp import SessionDescription
from fax.t38.sip.control import CallControl
from fax.t38.sip.media import MediaHandler
from fax.t38.sip.message import SipRequest
from fax.t38.sip.transport import Target


@dataclass(frozen=True)
class IncomingCall:
    """An INVITE that is not part of a call yet.

    ``number`` is the dialled number: the Request-URI user, else the To user (the trunk
    may put it in either). ``offer`` is None for an INVITE without SDP (delayed offer).
    """

    call: CallControl
    number: str | None
    to_user: str | None
    caller: str | None
    caller_display: str | None
    offer: SessionDescription | None
    source: Target
    request: SipRequest


@dataclass(frozen=True)
class Answer:
    """Take the call with ``handler``; ring ``ring_for`` seconds (180) before the 200."""

    handler: MediaHandler
    ring_for: float = 0.0


@dataclass(frozen=True)
class Reject:
    """Refuse the call: 404 unknown number, 486 busy, 603 declined, …"""

    status: int
    reason: str | None = None

    def __post_init__(self) -> None:
        if not 300 <= self.status <= 699:
            raise ValueError(f"a rejection needs a 3xx-6xx status, not {self.status}")


IncomingHandler = Callable[[IncomingCall], Awaitable[Answer | Reject]]
"""Decides one incoming INVITE (the UA already refused it with 486 when over max_calls)."""
