"""schemathesis against ``/v1/openapi.json`` of a live server (uvicorn on a loopback port,
SQLite, the demo's team, members and key): every operation of the document, with
generated valid and invalid requests, bounded in examples per operation. No answer may
be a 5xx, and every answer must match what the document says of it (its schema and
content type)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from gateway.api.openapi import openapi_document
from gateway.demo import DemoInfo
from tests.gateway.portal.browser import LiveServer, demo_gateway

pytestmark = pytest.mark.slow
# Examples per operation and mode (~50 runs in all: ~20 s here).
EXAMPLES = 50
CHECKS = [
    checks.not_a_server_error,
    checks.response_schema_conformance,
    checks.content_type_conformance,
]


@dataclass(frozen=True)
class Demo:
    """The server, the demo's key, and ids of things that exist (a message, its
    conversation, a member, an attachment, a webhook endpoint and one of its deliveries),
    so that half the requests get past the lookup of their path's ids."""

    server: LiveServer
    key: str
    ids: dict[str, dict[str, str]]  # path prefix → path parameter → value

    def headers(self) -> dict[str, str]:
        """The team key's header."""
        return {"Authorization": f"Bearer {self.key}"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """The gateway on a free loopback port with the demo's team and key. Webhook
    endpoints take any URL without resolving it, and their first attempt is a day away:
    nothing leaves this machine, whatever URLs the generated requests name."""
    with demo_gateway(tmp_path_factory.mktemp("schemathesis")) as (server, info):
        demo = Demo(server, info.key, {})
        demo.ids.update(existing(demo, info))
        yield demo


def existing(demo: Demo, info: DemoInfo) -> dict[str, dict[str, str]]:
    """Make one of each thing the API has ids for; their ids by path."""
    anna, ben = info.members[0], info.members[1]
    with httpx.Client(base_url=demo.server.url, headers=demo.headers(), timeout=30) as c:
        sent = c.post("/v1/messages", json={"channel": "sms", "from": anna.mobile,
                                            "to": ben.mobile, "text": "hi"})  # fmt: skip
        assert sent.status_code == 202, sent.text
        upload = c.post("/v1/attachments",
                        files={"file": ("a.txt", b"hello", "text/plain")})  # fmt: skip
        assert upload.status_code == 201, upload.text
        hook = c.post("/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/hook"})
        assert hook.status_code == 201, hook.text
        endpoint = hook.json()["id"]
        c.post("/v1/messages", json={"channel": "sms", "from": anna.mobile,
                                     "to": ben.mobile, "text": "an event"})  # fmt: skip
        deliveries = c.get(f"/v1/webhook-endpoints/{endpoint}/deliveries").json()["data"]
    hooks = {"id": endpoint}
    if deliveries:
        hooks["delivery_id"] = deliveries[0]["id"]
    return {
        "/v1/messages/": {"id": sent.json()["id"]},
        "/v1/conversations/": {"id": sent.json()["conversation_id"]},
        "/v1/members/": {"id": anna.id},
        "/v1/attachments/": {"id": upload.json()["id"]},
        "/v1/webhook-endpoints/": hooks,
    }


@pytest.fixture(scope="module")
def api(live: Demo) -> Any:
    """The document as the server publishes it."""
    return schemathesis.openapi.from_url(f"{live.server.url}/v1/openapi.json")


# The operations, known before the server runs (schemathesis's own pytest plugin does not
# work with this pytest), from the document as the server publishes it; invalid requests
# only where there is something to get wrong (a parameter or a body).
DOCUMENT = openapi_document("http://127.0.0.1:1")
CASES = [
    pytest.param(f"{method.upper()} {path}", mode, id=f"{mode.value}-{method.upper()} {path}")
    for path, item in DOCUMENT["paths"].items()
    for method, op in item.items()
    if method != "parameters"
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
    if mode is GenerationMode.POSITIVE
    or item.get("parameters")
    or op.get("parameters")
    or op.get("requestBody")
]


@pytest.mark.parametrize(("label", "mode"), CASES)
def test_no_5xx_and_answers_match_the_document(
    label: str, mode: GenerationMode, api: Any, live: Demo
) -> None:
    """Generated requests with the demo's team key: ids made up, or of things that exist."""
    operation = api.find_operation_by_label(label)
    assert operation is not None, label
    strategy = operation.as_strategy(generation_mode=mode)
    names = {p.name for p in operation.path_parameters}
    for prefix, ids in live.ids.items():
        known = {k: v for k, v in ids.items() if k in names}
        # (not for a DELETE: the operations after it would find the thing gone)
        if (
            names
            and operation.method.upper() != "DELETE"
            and operation.path.startswith(prefix)
            and known.keys() == names
        ):
            strategy = strategy | operation.as_strategy(generation_mode=mode, path_parameters=known)
    headers = live.headers()

    @given(case=strategy)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def probe(case: Any) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    probe()


@pytest.mark.parametrize(
    "query",
    [
        "since=0001-01-01T00:00:00Z",
        "since=0001-01-01T00:00:00%2B01:00",
        "since=2020-01-01T00:00:00Z&until=9999-12-31T23:59:59Z",
        "since=9999-12-31T23:59:59-01:00",
    ],
)
def test_times_at_the_ends_of_the_calendar_are_refused(query: str, live: Demo) -> None:
    """A replay from year 1 overflowed (500); such times are refused with 422."""
    with httpx.Client(base_url=live.server.url, headers=live.headers(), timeout=30) as c:
        made = c.post("/v1/webhook-endpoints", json={"url": "http://127.0.0.1:9/hook"})
        r = c.post(f"/v1/webhook-endpoints/{made.json()['id']}/replay?{query}")
    assert r.status_code == 422, r.text
    assert r.json()["code"] == "validation_error"


def test_a_problem_names_its_path_as_a_uri_reference(live: Demo) -> None:
    """The path arrives decoded; ``instance`` is encoded again (schemathesis found a
    control character and an ``ß`` in it as they came)."""
    with httpx.Client(base_url=live.server.url, headers=live.headers(), timeout=30) as c:
        r = c.get("/v1/messages/%12%C3%9Fm%20A")
    assert r.status_code == 404
    assert r.json()["instance"] == "/v1/messages/%12%C3%9Fm%20A"
