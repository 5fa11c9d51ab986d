"""The public face of a call, as a protocol: what an application holds on to.

`Call` implements it; `IncomingCall.call` is typed with it so the incoming-call side does
not import the call machinery.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from fax.t38.sdp import MediaKind, Negotiated
from fax.t38.sip.outcome import CallOutcome


class CallState(StrEnum):
    """Where a call stands."""

    CALLING = "calling"  # INVITE sent or received, nothing more yet
    RINGING = "ringing"  # 180/183 received (outbound) or sent (inbound)
    ESTABLISHED = "established"
    ENDING = "ending"  # BYE or CANCEL under way
    ENDED = "ended"


class CallControl(Protocol):
    """A call as the application sees it."""

    @property
    def call_id(self) -> str:
        """The Call-ID."""
        ...

    @property
    def state(self) -> CallState:
        """Where the call stands."""
        ...

    @property
    def media(self) -> Negotiated | None:
        """The stream in use (None before the answer)."""
        ...

    @property
    def outcome(self) -> CallOutcome | None:
        """How it ended (None while it lasts)."""
        ...

    @property
    def answered(self) -> bool:
        """It was established (it may have ended since)."""
        ...

    async def wait_answered(self) -> Negotiated:
        """The media agreed at the answer; `CallFailed` if there was none."""
        ...

    async def wait_ended(self) -> CallOutcome:
        """The outcome, once the media handler was told."""
        ...

    async def reinvite_to_t38(self) -> bool:
        """Switch to T.38; False if the far end refused (the media stays)."""
        ...

    async def reinvite(self, kind: MediaKind) -> bool:
        """Switch to ``kind``."""
        ...

    async def refresh(self) -> bool:
        """Refresh the session (RFC 4028) without touching the media."""
        ...

    async def hangup(self) -> CallOutcome:
        """End the call (BYE, CANCEL or a final response)."""
        ...
