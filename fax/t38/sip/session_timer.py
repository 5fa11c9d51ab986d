"""RFC 4028 session timers: the headers, who refreshes, and when.

The refresher re-sends the session (re-INVITE with the current SDP unchanged, or UPDATE
without a body) at half the interval; the other side gives up — BYE — when no refresh came
by ``interval - min(32, interval / 3)``. A refresh never changes the media.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fax.t38.sip.errors import SipParseError
from fax.t38.sip.message import Headers, SipMessage
from fax.t38.sip.timers import TimerHandle, Timers
from fax.t38.sip.uri import split_params

MIN_SE_FLOOR = 90  # RFC 4028 §4: nobody may ask for less


@dataclass(frozen=True)
class SessionTimerSettings:
    """Our wishes: the interval we ask for, the smallest we accept, how we refresh."""

    enabled: bool = True
    interval: int = 1800
    min_se: int = MIN_SE_FLOOR
    method: str = "auto"  # auto: UPDATE when the peer allows it, else re-INVITE

    def __post_init__(self) -> None:
        if self.method not in ("auto", "invite", "update"):
            raise ValueError(f"session refresh method {self.method!r}: auto, invite or update")
        if self.min_se < MIN_SE_FLOOR or self.interval < self.min_se:
            raise ValueError("session timers need interval >= min_se >= 90 seconds")


@dataclass(frozen=True)
class SessionExpires:
    """A Session-Expires value: seconds and, when given, ``uac`` or ``uas``."""

    interval: int
    refresher: str | None = None

    @classmethod
    def parse(cls, value: str) -> SessionExpires:
        """Parse ``1800;refresher=uac``."""
        num, _, params = value.partition(";")
        num = num.strip()
        if not num.isdigit() or int(num) == 0 or int(num) >= 2**32:
            raise SipParseError(f"malformed Session-Expires {value[:40]!r}")
        refresher = split_params(params).get("refresher")
        if refresher is not None:
            refresher = refresher.lower()
            if refresher not in ("uac", "uas"):
                raise SipParseError(f"malformed refresher {refresher[:10]!r}")
        return cls(int(num), refresher)

    def __str__(self) -> str:
        return f"{self.interval};refresher={self.refresher}" if self.refresher else str(
            self.interval)


def session_expires(msg: SipMessage) -> SessionExpires | None:
    """The message's Session-Expires, if any."""
    value = msg.headers.get("Session-Expires")
    return SessionExpires.parse(value) if value is not None else None


def min_se(msg: SipMessage) -> int | None:
    """The message's Min-SE, if any."""
    value = msg.headers.get("Min-SE")
    if value is None:
        return None
    num = value.split(";")[0].strip()
    if not num.isdigit():
        raise SipParseError(f"malformed Min-SE {value[:40]!r}")
    return int(num)


def refresh_at(interval: int) -> float:
    """When the refresher sends its refresh: half the interval (§10)."""
    return interval / 2


def expire_at(interval: int) -> float:
    """When the other side gives up if no refresh came (§10)."""
    return interval - min(32, interval / 3)


class SessionTimer:
    """One call's session timer: the interval, who refreshes, and the one pending timer.

    ``on_refresh`` runs when we are the refresher and a refresh is due; ``on_expiry`` when
    the other side was and its refresh never came.
    """

    def __init__(self, settings: SessionTimerSettings, timers: Timers,
                 on_refresh: Callable[[], None], on_expiry: Callable[[], None]) -> None:
        self.settings = settings
        self.timers = timers
        self.on_refresh = on_refresh
        self.on_expiry = on_expiry
        self.session: SessionExpires | None = None
        self.we_refresh = False
        self.min_se = settings.min_se  # raised by a 422's Min-SE
        self.update_refused = False  # the peer answered UPDATE with 405/501
        self._handle: TimerHandle | None = None

    def interval(self) -> int:
        """The interval to ask for in our next session request."""
        current = self.session.interval if self.session else self.settings.interval
        return max(current, self.min_se)

    def add_request_headers(self, headers: Headers, interval: int) -> None:
        """Session-Expires (us as refresher) and Min-SE on an INVITE/UPDATE we send."""
        if self.settings.enabled:
            headers.add("Session-Expires", f"{interval};refresher=uac")
            headers.add("Min-SE", str(self.min_se))

    def raised_floor(self, resp: SipMessage, interval: int) -> int | None:
        """A 422 asking for more than ``interval``: the new interval (and floor), else None."""
        floor = min_se(resp)
        if floor is None or floor <= interval:
            return None
        self.min_se = floor
        return floor

    def too_small(self, req: SipMessage) -> bool:
        """The request asks for less than our Min-SE (answer 422)."""
        se = session_expires(req)
        return self.settings.enabled and se is not None and se.interval < self.min_se

    def answer(self, req: SipMessage, headers: Headers) -> None:
        """As the UAS of ``req``: choose interval and refresher (§9), write them, arm."""
        if not self.settings.enabled:
            return
        se = session_expires(req)
        uac_timer = "timer" in req.headers.tokens("Supported")
        interval = se.interval if se is not None else self.interval()
        refresher = (se.refresher if se is not None else None) or (
            "uac" if uac_timer else "uas")
        chosen = SessionExpires(interval, refresher)
        headers.add("Session-Expires", str(chosen))
        if uac_timer:
            headers.add("Require", "timer")
        self.arm(chosen, we_refresh=refresher == "uas")

    def from_response(self, resp: SipMessage) -> None:
        """As the UAC: a 2xx's Session-Expires decides (none: no session timer)."""
        try:
            se = session_expires(resp)
        except SipParseError:
            se = None
        if se is None or not self.settings.enabled:
            self.arm(None, we_refresh=False)
        else:
            self.arm(se, we_refresh=(se.refresher or "uac") == "uac")

    def use_update(self, peer_allow: set[str]) -> bool:
        """Refresh by UPDATE (without SDP) rather than by re-INVITE."""
        method = self.settings.method
        return method == "update" or (
            method == "auto" and "update" in peer_allow and not self.update_refused)

    def arm(self, se: SessionExpires | None, *, we_refresh: bool) -> None:
        """Start over with ``se``: refresh at half of it, or expire near its end."""
        self.stop()
        self.session = se
        self.we_refresh = we_refresh and se is not None
        if se is None:
            return
        if we_refresh:
            self._handle = self.timers.call_later(refresh_at(se.interval), self.on_refresh)
        else:
            self._handle = self.timers.call_later(expire_at(se.interval), self.on_expiry)

    def retry_soon(self) -> None:
        """A refresh failed without killing the dialog: try again shortly."""
        if self.we_refresh and self.session is not None:
            self.stop()
            self._handle = self.timers.call_later(min(10.0, self.session.interval / 8),
                                                  self.on_refresh)

    def stop(self) -> None:
        """Cancel the pending refresh or expiry."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
