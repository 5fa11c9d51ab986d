"""Coverage-guided fuzzing (atheris) of the carriers' webhooks: WhatsApp (signed JSON) and
Twilio (signed forms), each POSTed to its connector's route as the gateway mounts it.

WhatsApp bodies are Meta's example with the input spliced in as raw JSON text in place of
one value (or the input alone); Twilio bodies are the input as a form, signed over a URL
and Host also taken from it. Every answer must be 200, 204, 400, 401, 403, 413 or 415,
and what reaches the gateway must be storable::

    .venv/bin/python -m tests.fuzz.fuzz_webhooks_in -seed=1 -runs=200000
"""

from __future__ import annotations

import asyncio
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import atheris

with atheris.instrument_imports(
    include=["connectors.whatsapp.webhook", "connectors.http_sms", "gateway.jsoncodec"]
):
    from connectors.base import ConnectorContext
    from connectors.http_sms import signature
    from connectors.http_sms.twilio import TwilioConnector
    from connectors.whatsapp.cloud import WhatsAppCloudConnector
    from connectors.whatsapp.webhook import sign
    from gateway import jsoncodec

from starlette.applications import Starlette
from starlette.routing import Mount

from gateway.blobs import BlobStore
from gateway.clock import FrozenClock
from gateway.config import ConnectorConfig
from tests.fuzz.asgi import post

LOOP = asyncio.new_event_loop()
CLOCK = FrozenClock(datetime(2026, 3, 15, tzinfo=UTC))
PAYLOADS = Path(__file__).parents[1] / "connectors" / "whatsapp" / "payloads"
EXAMPLES = [path.read_text() for path in sorted(PAYLOADS.glob("*.json"))]
# Where each string value (not key) of each example sits: the input goes in its place.
VALUES = {
    text: [(m.start(1), m.end(1)) for m in re.finditer(r':\s*("(?:[^"\\]|\\.)*")', text)]
    for text in EXAMPLES
}
PUBLIC = "https://gw.example.com/base"
ANSWERS = {200, 204, 400, 401, 403, 413, 415}


class Sink:
    """Takes everything; checks that what it gets could be stored."""

    async def inbound(self, message: Any) -> None:
        """An inbound message must encode as the stores encode it."""
        jsoncodec.dumps({"t": message.text, "m": message.meta, "f": message.from_})
        jsoncodec.dumps({"id": message.carrier_id, "n": message.segments})

    async def status(self, report: Any) -> None:
        """A status report must encode as the stores encode it."""
        jsoncodec.dumps({"id": report.carrier_id, "e": report.error})

    async def defer(self, kind: str, payload: dict[str, Any]) -> None:
        """A media job must encode as the stores encode it."""
        jsoncodec.dumps(payload)


def context(public_url: str) -> ConnectorContext:
    return ConnectorContext(None, Sink(), CLOCK, BlobStore("/nonexistent"), public_url)  # type: ignore[arg-type]


WA_OPTIONS = {
    "graph_url": "http://127.0.0.1:9/v25.0",
    "access_token": "t",
    "app_secret": "secret",
    "verify_token": "v",
    "phone_number_ids": {"+4915112345671": "106540352242922"},
}
WA = WhatsAppCloudConnector(
    ConnectorConfig("wa", "whatsapp_cloud", frozenset({"whatsapp"}), None, WA_OPTIONS),
    context(""),
)
TW_OPTIONS = {"account_sid": "AC1", "auth_token": "tok"}
TW = {
    url: TwilioConnector(
        ConnectorConfig("tw1", "twilio", frozenset({"sms"}), None, TW_OPTIONS), context(url)
    )
    for url in (PUBLIC, "")
}
APPS = {
    url: Starlette(routes=[Mount("/hooks/tw1", routes=list(tw.routes()))]) for url, tw in TW.items()
}
APPS["wa"] = Starlette(routes=[Mount("/hooks/wa", routes=list(WA.routes()))])


def whatsapp(fdp: atheris.FuzzedDataProvider) -> int:
    example = fdp.PickValueInList(EXAMPLES)
    alone = fdp.ConsumeIntInRange(0, 7) == 0
    values = VALUES[example]  # (start, end) of every string value in the example
    start, end = values[fdp.ConsumeIntInRange(0, len(values) - 1)]
    fragment = fdp.ConsumeBytes(fdp.remaining_bytes())
    body = fragment if alone else example[:start].encode() + fragment + example[end:].encode()
    headers = [(b"x-hub-signature-256", sign("secret", body).encode())]
    return LOOP.run_until_complete(post(APPS["wa"], "/hooks/wa/", headers, body))


def twilio(fdp: atheris.FuzzedDataProvider) -> int:
    public = fdp.PickValueInList([PUBLIC, ""])
    path = fdp.PickValueInList(["/status", "/inbound"])
    host = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 12)).decode("latin-1")
    # The server (h11) lets only visible ASCII into a request target.
    raw_query = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 8))
    query = "".join(chr(b) for b in raw_query if 0x21 <= b <= 0x7E)
    body = fdp.ConsumeBytes(fdp.remaining_bytes())
    url = f"{public}/hooks/tw1{path}" if public else f"https://{host}/hooks/tw1{path}"
    url += f"?{query}" if query else ""
    try:  # signed as the carrier would: over the decoded parameters
        pairs = parse_qsl(body.decode(), keep_blank_values=True, errors="strict")
    except ValueError:  # not UTF-8: the route refuses it before the signature
        pairs = []
    headers = [
        (b"host", host.encode("latin-1")),
        (b"content-type", b"application/x-www-form-urlencoded"),
        (b"x-twilio-signature", signature.compute("tok", url, pairs).encode()),
    ]
    target = f"/hooks/tw1{path}" + (f"?{query}" if query else "")
    return LOOP.run_until_complete(post(APPS[public], target, headers, body))


def one_input(data: bytes) -> None:
    """POST a webhook built from ``data`` to one of the two connectors."""
    fdp = atheris.FuzzedDataProvider(data)
    status = whatsapp(fdp) if fdp.ConsumeBool() else twilio(fdp)
    assert status in ANSWERS, status


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
