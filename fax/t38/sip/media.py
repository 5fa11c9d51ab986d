"""The seam between the SIP user agent and the media layer (UDPTL / RTP sessions).

The UA never touches media ports: it asks its call's `MediaHandler` for SDP and tells it
what was agreed. `SdpMediaHandler` implements the SDP half on top of `fax.t38.sdp` for a
handler that only needs to say which ports it has and what to do with the result.
"""

from __future__ import annotations

from typing import Protocol

from fax.t38.sdp import (
    LocalMedia,
    MediaKind,
    Negotiated,
    SdpOrigin,
    SessionDescription,
    build_answer,
    build_offer,
    negotiate,
)
from fax.t38.sip.outcome import CallOutcome


class MediaHandler(Protocol):
    """What the UA asks of a call's media layer.

    Order of calls: ``offer`` or ``answer`` for every SDP we send; ``answered`` when the far
    end answered one of our offers; ``media_changed`` whenever the agreed streams change —
    the first time means the call is up (audio or image), later ones mean a switch (audio →
    image after a re-INVITE); ``ended`` exactly once at the end. A session refresh (same
    SDP) calls none of them.
    """

    async def offer(self, kind: MediaKind) -> SessionDescription:
        """Our SDP offer with one stream of ``kind`` (the handler owns the port)."""
        ...

    async def answer(self, remote: SessionDescription) -> tuple[SessionDescription, Negotiated]:
        """Our answer to the far end's offer; raise `MediaNotAcceptable` to refuse (488)."""
        ...

    async def answered(
        self, offer: SessionDescription, answer: SessionDescription
    ) -> Negotiated:
        """Read the far end's answer to our ``offer``; raise `MediaNotAcceptable` if unusable."""
        ...

    async def media_changed(self, negotiated: Negotiated) -> None:
        """Start (or switch to) the agreed stream."""
        ...

    async def ended(self, outcome: CallOutcome) -> None:
        """The call is over: stop media, free ports."""
        ...


class SdpMediaHandler:
    """A `MediaHandler` whose SDP comes from `local_media`; subclasses add the media work.

    ``prefer`` decides which stream to take when an offer holds both audio and image.
    """

    prefer: MediaKind = MediaKind.IMAGE

    def __init__(self, local: LocalMedia) -> None:
        self.local = local
        self.origin = SdpOrigin(local.address)
        self.negotiated: Negotiated | None = None
        self.history: list[Negotiated] = []
        self.outcome: CallOutcome | None = None

    async def offer(self, kind: MediaKind) -> SessionDescription:
        """`build_offer` on our local media."""
        return build_offer(self.local, kind, self.origin)

    async def answer(self, remote: SessionDescription) -> tuple[SessionDescription, Negotiated]:
        """`build_answer` on our local media."""
        return build_answer(remote, self.local, self.origin, self.prefer)

    async def answered(
        self, offer: SessionDescription, answer: SessionDescription
    ) -> Negotiated:
        """`negotiate` on our local media."""
        return negotiate(offer, answer, self.local)

    async def media_changed(self, negotiated: Negotiated) -> None:
        """Remember the agreed stream (subclasses start media here)."""
        self.negotiated = negotiated
        self.history.append(negotiated)

    async def ended(self, outcome: CallOutcome) -> None:
        """Remember the outcome (subclasses stop media here)."""
        self.outcome = outcome
