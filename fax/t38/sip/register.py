"""REGISTER with the trunk and keep it fresh (RFC 3261 §10), with digest auth.

One Call-ID for the UA's life and a rising CSeq; the refresh goes out 60 s before the
granted expiry runs out (halfway through a short one); 423 raises the asked expiry to the
server's Min-Expires; a failure retries with a growing pause. ``stop`` unregisters.
"""

from __future__ import annotations

import asyncio
import logging

from fax.t38.sip.dialog import new_call_id, new_tag
from fax.t38.sip.errors import RequestFailed, SipError
from fax.t38.sip.host import SipHost
from fax.t38.sip.message import SipRequest, SipResponse
from fax.t38.sip.timers import sleep
from fax.t38.sip.uri import Address

log = logging.getLogger(__name__)
RETRY_PAUSES = (5.0, 15.0, 30.0, 60.0, 120.0)


class Registration:
    """The UA's binding at its registrar."""

    def __init__(self, ua: SipHost) -> None:
        self.ua = ua
        self.call_id = new_call_id(ua.host)
        self.tag = new_tag()
        self.cseq = 0
        self.expires = ua.config.register_expires
        self.granted: int | None = None
        self.registered_at: float | None = None
        self.count = 0  # successful REGISTERs, refreshes included
        self.last_error: SipError | None = None
        self._task: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @property
    def registered(self) -> bool:
        """A binding is in place and not expired."""
        if self.granted is None or self.registered_at is None:
            return False
        return self.ua.timers.now() < self.registered_at + self.granted

    async def start(self) -> None:
        """Register once (raising `RequestFailed` / `SipError` if refused), then keep fresh."""
        self._task = self.ua.spawn(self._run())
        await asyncio.shield(self._first)

    async def _run(self) -> None:
        failures = 0
        while True:
            try:
                granted = await self.register_once(self.expires)
            except SipError as exc:
                self.last_error = exc
                if not self._first.done():
                    self._first.set_exception(exc)
                    return
                pause = RETRY_PAUSES[min(failures, len(RETRY_PAUSES) - 1)]
                failures += 1
                log.warning("REGISTER failed (%s); again in %.0f s", exc, pause)
                await sleep(self.ua.timers, pause)
                continue
            failures = 0
            if not self._first.done():
                self._first.set_result(None)
            await sleep(self.ua.timers, max(granted - 60, granted / 2, 0.5))

    def _build(self, expires: int) -> SipRequest:
        ua = self.ua
        target = ua.proxy_target()
        aor = ua.local_uri().uri.with_(user=ua.config.username)
        self.cseq += 1
        req = SipRequest(method="REGISTER", uri=aor.with_(user=None))
        h = req.headers
        h.add("Max-Forwards", "70")
        h.add("From", str(Address(aor).with_tag(self.tag)))
        h.add("To", str(Address(aor)))
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{self.cseq} REGISTER")
        h.add("Contact", ua.contact(target.transport, ua.config.username))
        h.add("Expires", str(expires))
        h.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO")
        return ua.prepare(req, target.transport)

    async def register_once(self, expires: int) -> int:
        """One REGISTER exchange (with auth and 423); the granted expiry in seconds."""
        target = self.ua.proxy_target()
        asked = expires
        for _ in range(3):
            resp = await self.ua.request_with_auth(
                lambda n=asked: self._build(n), target)  # type: ignore[misc]
            if resp.status == 423:
                floor = resp.headers.get("Min-Expires") or ""
                if floor.strip().isdigit() and int(floor) > asked:
                    asked = int(floor)
                    self.expires = asked
                    continue
            if not 200 <= resp.status < 300:
                raise RequestFailed("REGISTER", resp.status, resp.reason)
            granted = self._granted(resp, asked)
            if expires:
                self.granted = granted
                self.registered_at = self.ua.timers.now()
                self.count += 1
            return granted
        raise RequestFailed("REGISTER", 423, "Interval Too Brief")

    def _granted(self, resp: SipResponse, asked: int) -> int:
        transport = self.ua.proxy_target().transport
        host, port = self.ua.host, self.ua.contact_port(transport)
        for value in resp.headers.get_all("Contact"):
            try:
                c = Address.parse(value)
            except SipError:
                continue
            exp = c.params.get("expires") or ""
            if c.uri.bare_host == host and c.uri.effective_port == port and exp.isdigit():
                return int(exp)
        exp_header = (resp.headers.get("Expires") or "").strip()
        return int(exp_header) if exp_header.isdigit() else asked

    async def stop(self) -> None:
        """Stop refreshing and remove the binding (Expires: 0), best effort."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.registered:
            try:
                async with asyncio.timeout(5):
                    await self.register_once(0)
            except (SipError, TimeoutError) as exc:
                log.info("unREGISTER failed: %s", exc)
            self.granted = None
