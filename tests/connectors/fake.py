"""A test connector (kind ``fake``) that proves the connector seam.

It speaks a tiny HTTP carrier protocol when ``carrier_url`` is set (POST JSON, answer
``{"id": …}``; status callbacks and inbound messages POSTed to ``/hooks/{id}/…``), or
records sends in memory. Programmed failures come from the ``script`` list: each send
pops the next entry (``"ok"``, ``"retry"``, ``"retry:SECONDS"``, ``"permanent"``, ``"auth"``).
``pause_file``: while that file exists, a send waits (to kill a worker mid-job).
``parts``: in memory, answer with one carrier id per part, as SMPP does per segment.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from connectors.base import (
    AuthError,
    ConnectorContext,
    ErrorCode,
    Health,
    InboundMessage,
    OutboundMessage,
    PermanentError,
    RetryableError,
    SendResult,
    StatusReport,
    register,
)
from gateway.config import ConnectorConfig
from gateway.models import JobHandler, parse_iso


class FakeConnector:
    """The seam's test double: real HTTP when given a carrier, memory otherwise."""

    kind = "fake"

    def __init__(self, config: ConnectorConfig, ctx: ConnectorContext) -> None:
        self.id = config.id
        self.channels = config.channels
        self.numbers = config.numbers
        self.ctx = ctx
        self.carrier_url: str | None = config.options.get("carrier_url")
        self.pause_file: str | None = config.options.get("pause_file")
        self.script: list[str] = list(config.options.get("script", []))
        self.parts = int(config.options.get("parts", 1))  # carrier ids per send (SMPP-like)
        self.sent: list[OutboundMessage] = []
        self.started = False
        self.healthy = True
        self.closed = False

    async def start(self) -> None:
        """Nothing to connect to; remember that start ran."""
        self.started = True

    async def send(self, message: OutboundMessage) -> SendResult:
        """Send per the script, to the carrier or into memory."""
        while self.pause_file and os.path.exists(self.pause_file):  # noqa: ASYNC110
            await asyncio.sleep(0.05)  # another process removes the file: no event to wait on
        step = self.script.pop(0) if self.script else "ok"
        if step.startswith("retry"):
            _, _, after = step.partition(":")
            raise RetryableError(
                "carrier busy",
                retry_after=float(after) if after else None,
                code=ErrorCode.THROTTLED,
                carrier_code="busy",
            )
        if step == "permanent":
            raise PermanentError("number unknown", code=ErrorCode.INVALID_NUMBER, carrier_code="1")
        if step == "auth":
            self.healthy = False
            raise AuthError("token expired", carrier_code="190")
        if step == "crash":
            raise RuntimeError("connector bug")
        self.sent.append(message)
        if self.carrier_url is None:
            if self.parts > 1:
                ids = [f"fake-{message.id}-{i}" for i in range(1, self.parts + 1)]
                return SendResult(carrier_id=ids[0], segments=self.parts, part_ids=ids)
            return SendResult(carrier_id=f"fake-{message.id}", segments=1)
        response = await self.ctx.http.post(
            self.carrier_url,
            json={"ref": message.id, "from": message.from_, "to": message.to, "text": message.text},
        )
        if response.status_code >= 500:
            raise RetryableError(f"carrier answered {response.status_code}")
        if response.status_code >= 400:
            raise PermanentError(f"carrier refused: {response.text}", code=ErrorCode.REJECTED)
        return SendResult(carrier_id=str(response.json()["id"]))

    def routes(self) -> Sequence[BaseRoute]:
        """``/status`` (delivery reports) and ``/inbound`` (messages), JSON bodies."""
        return [
            Route("/status", self._status, methods=["POST"]),
            Route("/inbound", self._inbound, methods=["POST"]),
        ]

    async def _status(self, request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        msg = await self.ctx.sink.status(
            StatusReport(
                self.id, body["id"], body["status"], self.ctx.clock.now(), body.get("error")
            )
        )
        return JSONResponse({"known": msg is not None})

    async def _inbound(self, request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        received = parse_iso(body["at"]) if "at" in body else self.ctx.clock.now()
        msg = await self.ctx.sink.inbound(
            InboundMessage(
                self.id,
                body.get("channel", "sms"),
                body["id"],
                body["from"],
                body["to"],
                body.get("text"),
                received,
            )
        )
        return JSONResponse({"message_id": msg.id if msg else None})

    def job_handlers(self) -> Mapping[str, JobHandler]:
        """No durable jobs of its own."""
        return {}

    def health(self) -> Health:
        """Unhealthy after an auth error until ``healthy`` is set again."""
        return Health(self.healthy, "ok" if self.healthy else "token expired")

    async def aclose(self) -> None:
        """Remember that close ran."""
        self.closed = True


register("fake", FakeConnector)
