"""A local Twilio-compatible carrier: the Messages API, signed callbacks, fault modes.

In-process (tests)::

    async with Simulator(inbound_url=...) as carrier:   # serves on a free loopback port
        carrier.base_url, carrier.account_sid, carrier.auth_token
        carrier.fail_next(1, status=400, code=21610)
        await carrier.settle()                          # all callbacks posted
        carrier.sends, carrier.callbacks

As a process: ``python -m connectors.http_sms.simulator --port 8090`` prints its base URL
and credentials as one JSON line and serves until SIGINT/SIGTERM; ``POST /_sim/inbound``
(form ``From``, ``To``, ``Body``) injects an inbound SMS and ``GET /_sim/sends`` lists the
sends received.

What it does like the carrier: HTTP Basic on every API request (401 with Twilio's JSON
error shape otherwise), the REST validation codes (21604, 21211, 21603, 21602, 21617),
``201`` with the message resource (``sid`` = ``SM`` + 32 hex, ``status`` ``queued``,
``num_segments`` as a string, counted with GSM 03.38 rules), then status callbacks
(``sent`` → ``delivered``, or a programmed ``undelivered``/``failed`` with an
``ErrorCode``) form-encoded to the ``StatusCallback`` URL and signed with
``X-Twilio-Signature``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import email.utils
import hmac
import json
import re
import secrets
import signal
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connectors.http_sms import signature
from gateway.clock import Clock, SystemClock
from gateway.serving import serving
from gateway.units import sms_info

API = "/2010-04-01"
E164 = re.compile(r"\+[1-9]\d{1,14}")
MAX_BODY_CHARS = 1600


@dataclass(slots=True)
class ReceivedSend:
    """One send the carrier accepted (or refused, with ``error``)."""

    sid: str | None
    to: str
    from_: str
    body: str
    status_callback: str | None
    messaging_service_sid: str | None
    segments: int
    error: int | None = None


@dataclass(slots=True)
class Callback:
    """One webhook the carrier posted, and how the receiver answered."""

    url: str
    params: dict[str, str]
    status_code: int | None
    text: str = ""
    error: str | None = None


@dataclass(slots=True)
class _Fault:
    remaining: int
    status: int
    code: int | None
    message: str
    retry_after: str | None = None
    garble: bool = False
    garble_sid: bool = False
    stall: float = 0.0


@dataclass(slots=True)
class _Outcome:
    remaining: int
    status: str
    error_code: int | None


@dataclass(slots=True)
class _Message:
    doc: dict[str, Any]
    callback: str | None = None
    history: list[str] = field(default_factory=list)


def twilio_error(status: int, code: int, message: str) -> JSONResponse:
    """Twilio's JSON error document."""
    return JSONResponse(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status_code=status,
    )


class Simulator:
    """A Twilio-compatible carrier on a loopback port (see the module docstring)."""

    def __init__(
        self,
        *,
        account_sid: str | None = None,
        auth_token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        inbound_url: str | None = None,
        callback_delays: tuple[float, float] = (0.05, 0.05),
        clock: Clock | None = None,
    ) -> None:
        self.account_sid = account_sid or "AC" + secrets.token_hex(16)
        self.auth_token = auth_token or secrets.token_hex(16)
        self.host = host
        self.port = port
        self.inbound_url = inbound_url
        self.callback_delays = callback_delays
        self.clock = clock or SystemClock()
        self.sends: list[ReceivedSend] = []
        self.callbacks: list[Callback] = []
        self.messages: dict[str, _Message] = {}
        self.base_url = ""
        self._faults: list[_Fault] = []
        self._outcomes: list[_Outcome] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._http: httpx.AsyncClient | None = None
        self._serving: contextlib.AbstractAsyncContextManager[str] | None = None
        self.app = Starlette(
            routes=[
                Route(f"{API}/Accounts/{{account}}/Messages.json", self._create, methods=["POST"]),
                Route(
                    f"{API}/Accounts/{{account}}/Messages/{{sid}}.json",
                    self._fetch,
                    methods=["GET"],
                ),
                Route(f"{API}/Accounts/{{account}}.json", self._account, methods=["GET"]),
                Route("/_sim/inbound", self._sim_inbound, methods=["POST"]),
                Route("/_sim/sends", self._sim_sends, methods=["GET"]),
            ]
        )

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Serve on ``host:port`` (0: a free port) and open the callback client."""
        self._http = httpx.AsyncClient(timeout=httpx.Timeout(10.0))
        self._serving = serving(self.app, self.host, self.port)
        self.base_url = await self._serving.__aenter__()

    async def aclose(self) -> None:
        """Stop pending callbacks, the server and the client."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._serving is not None:
            await self._serving.__aexit__(None, None, None)
            self._serving = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def settle(self, timeout: float = 10.0) -> None:
        """Wait until every scheduled callback has been posted."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- fault modes -------------------------------------------------------------------
    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 400,
        code: int | None = 21211,
        message: str = "programmed failure",
        retry_after: str | None = None,
    ) -> None:
        """The next ``n`` authenticated sends are answered ``status`` with Twilio ``code``."""
        self._faults.append(_Fault(n, status, code, message, retry_after))

    def rate_limit_next(self, n: int = 1, retry_after: str | None = "1") -> None:
        """The next ``n`` sends get ``429`` (code 20429) with ``Retry-After``."""
        self.fail_next(
            n, status=429, code=20429, message="Too Many Requests", retry_after=retry_after
        )

    def garble_next(self, n: int = 1, *, include_sid: bool = False) -> None:
        """The next ``n`` sends are accepted but answered with an unreadable 201 body
        (an XML document like the carrier's old API, naming the sid if ``include_sid``)."""
        self._faults.append(_Fault(n, 201, None, "", garble=True, garble_sid=include_sid))

    def pause_callbacks(self) -> None:
        """Hold status callbacks (sends are still answered) until :meth:`resume_callbacks`."""
        self._flowing.clear()

    def resume_callbacks(self) -> None:
        """Let held status callbacks go."""
        self._flowing.set()

    def stall_next(self, n: int = 1, seconds: float = 5.0) -> None:
        """The next ``n`` sends wait ``seconds`` before they are answered (timeouts)."""
        self._faults.append(_Fault(n, 0, None, "", stall=seconds))

    def deliver_next(
        self, n: int = 1, status: str = "undelivered", error_code: int | None = 30003
    ) -> None:
        """The next ``n`` accepted sends end ``status`` (undelivered/failed) with ``error_code``."""
        self._outcomes.append(_Outcome(n, status, error_code))

    # -- inbound -----------------------------------------------------------------------
    async def inject_inbound(
        self,
        from_: str,
        to: str,
        body: str,
        *,
        url: str | None = None,
        sid: str | None = None,
        media: Sequence[tuple[str, str]] = (),
    ) -> Callback:
        """POST a signed inbound-SMS webhook to ``url`` (default: ``inbound_url``)."""
        target = url or self.inbound_url
        if not target:
            raise ValueError("no inbound URL: pass url= or construct with inbound_url=")
        sid = sid or "SM" + secrets.token_hex(16)
        params = {
            "ToCountry": "DE",
            "SmsMessageSid": sid,
            "NumMedia": str(len(media)),
            "SmsSid": sid,
            "SmsStatus": "received",
            "Body": body,
            "To": to,
            "NumSegments": str(sms_info(body).segments if body else 1),
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": "2010-04-01",
        }
        for i, (media_url, content_type) in enumerate(media):
            params[f"MediaUrl{i}"] = media_url
            params[f"MediaContentType{i}"] = content_type
        return await self.post_signed(target, params)

    async def post_signed(self, url: str, params: dict[str, str]) -> Callback:
        """POST ``params`` form-encoded to ``url`` with the carrier's signature; recorded."""
        if self._http is None:
            raise RuntimeError("the simulator is not started")
        headers = {
            "X-Twilio-Signature": signature.compute(self.auth_token, url, params),
            "User-Agent": "TwilioProxy/1.1",
        }
        try:
            response = await self._http.post(url, data=params, headers=headers)
        except httpx.HTTPError as exc:
            record = Callback(url, params, None, error=repr(exc))
        else:
            record = Callback(url, params, response.status_code, response.text)
        self.callbacks.append(record)
        return record

    # -- the API -----------------------------------------------------------------------
    def _authorized(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return (
            hmac.compare_digest(user.encode(), self.account_sid.encode())
            and hmac.compare_digest(password.encode(), self.auth_token.encode())
            and request.path_params.get("account") == self.account_sid
        )

    def _unauthorized(self) -> JSONResponse:
        return twilio_error(401, 20003, "Authenticate")

    async def _account(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        return JSONResponse(
            {"sid": self.account_sid, "status": "active", "friendly_name": "simulator"}
        )

    async def _fetch(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        msg = self.messages.get(request.path_params["sid"])
        if msg is None:
            return twilio_error(404, 20404, "The requested resource was not found")
        return JSONResponse(msg.doc)

    def _take_fault(self) -> _Fault | None:
        while self._faults and self._faults[0].remaining <= 0:
            self._faults.pop(0)
        if not self._faults:
            return None
        self._faults[0].remaining -= 1
        return self._faults[0]

    def _take_outcome(self) -> tuple[str, int | None]:
        while self._outcomes and self._outcomes[0].remaining <= 0:
            self._outcomes.pop(0)
        if not self._outcomes:
            return "delivered", None
        self._outcomes[0].remaining -= 1
        return self._outcomes[0].status, self._outcomes[0].error_code

    async def _create(self, request: Request) -> Response:
        if not self._authorized(request):
            return self._unauthorized()
        raw = (await request.body()).decode("utf-8", "replace")
        if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"
        ):
            return twilio_error(400, 20001, "Request body must be form-encoded")
        form = dict(parse_qsl(raw, keep_blank_values=True))
        to, from_, body = form.get("To", ""), form.get("From", ""), form.get("Body", "")
        service = form.get("MessagingServiceSid") or None
        callback = form.get("StatusCallback") or None
        segments = sms_info(body).segments if body else 0
        fault = self._take_fault()
        if fault is not None and fault.stall:
            await asyncio.sleep(fault.stall)
            fault = None
        if fault is not None and not fault.garble:
            self.sends.append(
                ReceivedSend(None, to, from_, body, callback, service, segments, fault.code)
            )
            response: Response
            if fault.code is None:  # a bare HTTP error, no Twilio document
                response = Response(fault.message, status_code=fault.status)
            else:
                response = twilio_error(fault.status, fault.code, fault.message)
            if fault.retry_after is not None:
                response.headers["Retry-After"] = fault.retry_after
            return response
        problem = self._validate(to, from_, service, body, callback)
        if problem is not None:
            self.sends.append(
                ReceivedSend(None, to, from_, body, callback, service, segments, problem[0])
            )
            return twilio_error(400, *problem)
        sid = "SM" + secrets.token_hex(16)
        now = email.utils.format_datetime(self.clock.now())
        doc = {
            "account_sid": self.account_sid,
            "api_version": "2010-04-01",
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": from_ or None,
            "messaging_service_sid": service,
            "num_media": "0",
            "num_segments": str(segments),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "queued",
            "to": to,
            "uri": f"{API}/Accounts/{self.account_sid}/Messages/{sid}.json",
        }
        self.messages[sid] = _Message(doc, callback, ["queued"])
        self.sends.append(ReceivedSend(sid, to, from_, body, callback, service, segments))
        final, error_code = self._take_outcome()
        task = asyncio.create_task(self._progress(sid, final, error_code), name=f"sim-{sid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if fault is not None and fault.garble:
            inner = f"<Sid>{sid}</Sid>" if fault.garble_sid else "<Status>queued</Status>"
            xml = f"<TwilioResponse><SMSMessage>{inner}</SMSMessage></TwilioResponse>"
            return Response(xml, status_code=201, media_type="application/xml")
        return JSONResponse(doc, status_code=201)

    def _validate(
        self, to: str, from_: str, service: str | None, body: str, callback: str | None
    ) -> tuple[int, str] | None:
        if not to:
            return 21604, "A 'To' phone number is required."
        if not E164.fullmatch(to):
            return 21211, f"Invalid 'To' Phone Number: {to}"
        if not from_ and not service:
            return 21603, "A 'From' or 'MessagingServiceSid' parameter is required."
        if not body:
            return 21602, "Message body is required."
        if len(body) > MAX_BODY_CHARS:
            return 21617, "The concatenated message body exceeds the 1600 character limit."
        if callback is not None and not callback.startswith(("http://", "https://")):
            return 21609, "Invalid StatusCallback"
        return None

    async def _progress(self, sid: str, final: str, error_code: int | None) -> None:
        """Move a message on like the carrier does, posting each step to its callback."""
        steps: list[tuple[float, str]] = []
        if final != "failed":  # "failed" never left the carrier; the others were sent
            steps.append((self.callback_delays[0], "sent"))
        steps.append((self.callback_delays[1], final))
        for delay, status in steps:
            await asyncio.sleep(delay)
            await self._flowing.wait()
            msg = self.messages[sid]
            msg.doc["status"] = status
            msg.history.append(status)
            if status in {"undelivered", "failed"} and error_code is not None:
                msg.doc["error_code"] = error_code
            if msg.callback:
                await self.post_signed(msg.callback, self._callback_params(msg, status, error_code))

    def _callback_params(
        self, msg: _Message, status: str, error_code: int | None
    ) -> dict[str, str]:
        doc = msg.doc
        params = {
            "SmsSid": doc["sid"],
            "SmsStatus": status,
            "MessageStatus": status,
            "To": doc["to"],
            "MessageSid": doc["sid"],
            "AccountSid": self.account_sid,
            "ApiVersion": "2010-04-01",
        }
        if doc["from"]:
            params["From"] = doc["from"]
        if doc["messaging_service_sid"]:
            params["MessagingServiceSid"] = doc["messaging_service_sid"]
        if status in {"undelivered", "failed"} and error_code is not None:
            params["ErrorCode"] = str(error_code)
        return params

    # -- control endpoints (for the stand-alone process) ---------------------------------
    async def _sim_inbound(self, request: Request) -> Response:
        form = await request.form()
        fields = {k: str(v) for k, v in form.items()}
        try:
            record = await self.inject_inbound(
                fields["From"], fields["To"], fields.get("Body", ""), url=fields.get("Url")
            )
        except (KeyError, ValueError) as exc:
            return JSONResponse({"error": f"need From, To (and Url or --inbound-url): {exc}"}, 400)
        return JSONResponse(asdict(record))

    async def _sim_sends(self, request: Request) -> Response:
        return JSONResponse({"sends": [asdict(s) for s in self.sends]})


def _parse_args(argv: Iterable[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.http_sms.simulator",
        description="A local Twilio-compatible SMS carrier.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="0 picks a free port")
    parser.add_argument("--account-sid", help="default: a random AC…")
    parser.add_argument("--auth-token", help="default: a random token")
    parser.add_argument("--inbound-url", help="where POST /_sim/inbound delivers")
    parser.add_argument(
        "--delays",
        type=float,
        nargs=2,
        default=(0.5, 1.0),
        metavar=("SENT", "FINAL"),
        help="seconds before the 'sent' and the final status callback (default: 0.5 1.0)",
    )
    return parser.parse_args(list(argv) if argv is not None else None)


async def _run(args: argparse.Namespace) -> None:
    sim = Simulator(
        account_sid=args.account_sid,
        auth_token=args.auth_token,
        host=args.host,
        port=args.port,
        inbound_url=args.inbound_url,
        callback_delays=(args.delays[0], args.delays[1]),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with sim:
        info = {
            "base_url": sim.base_url,
            "account_sid": sim.account_sid,
            "auth_token": sim.auth_token,
        }
        print(json.dumps(info), flush=True)
        await stop.wait()


def main(argv: Iterable[str] | None = None) -> int:
    """Run the simulator until SIGINT/SIGTERM."""
    asyncio.run(_run(_parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
