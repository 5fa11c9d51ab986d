"""The OpenAPI document: valid 3.1, exactly the served routes, and real answers match it."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from starlette.routing import Mount, Route

from gateway.api.app import create_app
from gateway.api.openapi import openapi_document
from gateway.process import worker
from gateway.runtime import Runtime
from tests.conftest import store_url
from tests.gateway.conftest import CONTACT, FAX_A, MOBILE_A, Seed, auth

pytestmark = pytest.mark.anyio

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
DOC_URI = "urn:gateway:openapi"
SERVER = "http://gw.example:8080"


@pytest.fixture
def backend() -> str:
    """SQLite only: the document does not depend on the store backend."""
    return "sqlite"


@pytest.fixture
def url(tmp_path: object) -> str:
    """A fresh SQLite store (without starting the session's Redis server)."""
    return store_url("sqlite", "", tmp_path)


# -- helpers -----------------------------------------------------------------------------
def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _strict(node: Any) -> Any:
    """A copy in which every object schema that lists its properties and says nothing
    about others allows no others: the answers must not carry undocumented fields."""
    if isinstance(node, list):
        return [_strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strict(v) for k, v in node.items()}
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _media(content_type: str) -> tuple[str, set[str]]:
    base, *params = (p.strip().lower() for p in content_type.split(";"))
    return base, {p.replace(" ", "") for p in params if p}


def _media_key(content: dict[str, Any], content_type: str) -> str | None:
    """The documented media type that ``content_type`` matches, the most specific first."""
    base, params = _media(content_type)
    kind = base.split("/")[0]
    for candidates in ([base], [f"{kind}/*"], ["*/*"]):
        for key in content:
            key_base, key_params = _media(key)
            if key_base in candidates and key_params <= params:
                return key
    return None


class Checker:
    """Validates answers against the operation and status the document gives them."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.strict_doc = _strict(copy.deepcopy(doc))

    def __call__(
        self, response: httpx.Response, path: str, method: str | None = None
    ) -> dict[str, Any]:
        """Check ``response`` to ``method path`` (documented path template); returns the
        documented response object."""
        method = (method or response.request.method).lower()
        op = self.doc["paths"][path][method]
        status = str(response.status_code)
        assert status in op["responses"], (
            f"{method.upper()} {path} answered {status}, not documented: {response.text}"
        )
        documented: dict[str, Any] = op["responses"][status]
        content = documented.get("content", {})
        if not content:
            assert not response.content
            return documented
        content_type = response.headers["content-type"]
        key = _media_key(content, content_type)
        assert key is not None, f"{content_type} is not one of {sorted(content)}"
        base, _ = _media(content_type)
        if base == "application/json" or base.endswith("+json"):
            pointer = "/".join(
                ["", "paths", _escape(path), method, "responses", status, "content",
                 _escape(key), "schema"]
            )  # fmt: skip
            body = response.json()
            for doc in (self.doc, self.strict_doc):
                registry: Registry[Any] = Registry().with_resource(
                    DOC_URI, Resource.from_contents(doc, default_specification=DRAFT202012)
                )
                validator = Draft202012Validator(
                    {"$ref": f"{DOC_URI}#{pointer}"},
                    registry=registry,
                    format_checker=Draft202012Validator.FORMAT_CHECKER,
                )
                errors = [
                    f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                    for e in validator.iter_errors(body)
                ]
                assert not errors, f"{method.upper()} {path} {status}: {errors}\n{body}"
        return documented


@pytest.fixture
def doc() -> dict[str, Any]:
    """A private copy of the document (the cached one is shared)."""
    return copy.deepcopy(openapi_document(SERVER))


@pytest.fixture
def check(rt: Runtime) -> Checker:
    """A checker against the document the app serves."""
    return Checker(openapi_document(rt.settings.public_url))


# -- the document itself -----------------------------------------------------------------
def test_document_is_valid_openapi_3_1(doc: dict[str, Any]) -> None:
    """openapi-spec-validator accepts it as 3.1."""
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_document_is_cached_per_server_url() -> None:
    """Built once per URL; the URL is the only server."""
    first = openapi_document(SERVER)
    assert openapi_document(SERVER) is first
    other = openapi_document("https://api.example.com")
    assert other is not first
    assert first["servers"] == [{"url": SERVER}]
    assert other["servers"] == [{"url": "https://api.example.com"}]


def test_info_and_tags(doc: dict[str, Any]) -> None:
    """Title, the package version, and declared tags on every operation."""
    import gateway

    assert doc["info"]["title"] == "Messaging gateway API"
    assert doc["info"]["version"] == gateway.__version__
    declared = {t["name"] for t in doc["tags"]}
    ids = []
    for _, _, op in _operations(doc):
        assert op["summary"]
        assert op["tags"] and set(op["tags"]) <= declared
        ids.append(op["operationId"])
    assert len(ids) == len(set(ids))


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in HTTP_METHODS
    ]


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for token in node["$ref"].removeprefix("#/").split("/"):
            target = target[token.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def test_security_idempotency_and_problems(doc: dict[str, Any]) -> None:
    """Bearer auth on /v1 but the document, an Idempotency-Key on every POST, and every
    error as a problem document (readiness is a report, also when not ready)."""
    scheme = doc["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    assert doc["security"] == [{"bearerAuth": []}]
    for path, method, op in _operations(doc):
        public = not path.startswith("/v1/") or path == "/v1/openapi.json"
        effective = op.get("security", doc["security"])
        assert effective == ([] if public else [{"bearerAuth": []}]), (path, method)
        if not public:
            assert "401" in op["responses"], (path, method)
            assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
        params = [_resolve(doc, p) for p in [*doc["paths"][path].get("parameters", []),
                                              *op.get("parameters", [])]]  # fmt: skip
        headers = {p["name"] for p in params if p["in"] == "header"}
        assert ("Idempotency-Key" in headers) == (method == "post"), (path, method)
        for name in (p["name"] for p in params if p["in"] == "path"):
            assert f"{{{name}}}" in path
        for status, response in op["responses"].items():
            if int(status) < 400 or (path, status) == ("/readyz", "503"):
                continue
            assert list(response["content"]) == ["application/problem+json"], (path, status)
            schema = response["content"]["application/problem+json"]["schema"]
            assert schema["allOf"][0] == {"$ref": "#/components/schemas/Problem"}
            assert schema["allOf"][1]["properties"]["status"] == {"const": int(status)}
            assert schema["allOf"][1]["properties"]["code"]["enum"]


def test_components_and_parameters(doc: dict[str, Any]) -> None:
    """The named components exist; query parameters have the served ranges and enums."""
    schemas = doc["components"]["schemas"]
    for name in ("Message", "MessageList", "Conversation", "ConversationList", "Attachment",
                 "Preview", "Quota", "SendRequest", "Problem", "Health", "Ready"):  # fmt: skip
        assert name in schemas
    send = schemas["SendRequest"]
    assert send["additionalProperties"] is False
    assert set(send["required"]) == {"channel", "from", "to"}
    assert set(send["properties"]) == {
        "channel", "from", "to", "text", "attachments", "fallback", "template", "cover"
    }  # fmt: skip
    problem = schemas["Problem"]
    assert problem["additionalProperties"] is True
    assert {"type", "title", "status", "code", "detail", "instance"} <= set(problem["properties"])

    def param(path: str, name: str) -> dict[str, Any]:
        params = [_resolve(doc, p) for p in doc["paths"][path]["get"].get("parameters", [])]
        return next(p["schema"] for p in params if p["name"] == name)

    assert param("/v1/messages", "limit") == {
        "type": "integer", "minimum": 1, "maximum": 200, "default": 50,
    }  # fmt: skip
    assert param("/v1/conversations", "limit")["maximum"] == 200
    assert param("/v1/messages", "cursor") == {"type": "string"}
    assert param("/v1/messages", "conversation_id") == {"type": "string"}
    assert param("/v1/messages", "channel")["enum"] == ["sms", "whatsapp", "fax"]
    assert sorted(param("/v1/messages", "direction")["enum"]) == ["inbound", "outbound"]
    assert param("/v1/messages", "status")["enum"] == [
        "accepted", "queued", "sending", "sent", "delivered", "read", "failed", "received",
    ]  # fmt: skip
    assert "pattern" in param("/v1/quota", "period")


async def test_document_covers_exactly_the_served_routes(rt: Runtime) -> None:
    """Every (path, method) the app serves is documented, and nothing else is."""
    app = create_app(rt, workers=False)
    served = set()
    for route in app.routes:
        if isinstance(route, Mount):
            assert route.path.startswith("/hooks/"), route.path  # carrier webhooks only
            continue
        assert isinstance(route, Route), route
        if not route.include_in_schema:
            continue  # pages (the portal), not the API
        for method in (route.methods or set()) - {"HEAD"}:
            served.add((route.path, method.lower()))
    doc = openapi_document(rt.settings.public_url)
    documented = {(path, method) for path, method, _ in _operations(doc)}
    assert documented == served


# -- answers against the document --------------------------------------------------------
async def test_success_answers_match(client: httpx.AsyncClient, seed: Seed, rt: Runtime,
                                     check: Checker) -> None:  # fmt: skip
    """Every /v1 operation's success answer has the documented media type and schema."""
    team = auth(seed.team_key)
    sms = {"channel": "sms", "from": MOBILE_A, "to": CONTACT, "text": "hi"}

    r = await client.post("/v1/messages", json=sms, headers=team)
    assert r.status_code == 202
    check(r, "/v1/messages")
    message = r.json()

    r = await client.get(f"/v1/messages/{message['id']}", headers=team)
    assert r.status_code == 200
    check(r, "/v1/messages/{id}")
    assert r.json()["history"]

    filters: list[dict[str, str]] = [
        {},
        {"limit": "1", "channel": "sms", "direction": "outbound", "status": "accepted"},
    ]
    for params in filters:
        r = await client.get("/v1/messages", params=params, headers=team)
        assert r.status_code == 200
        check(r, "/v1/messages")
        assert r.json()["data"][0]["id"] == message["id"]

    r = await client.get("/v1/conversations", headers=team)
    assert r.status_code == 200
    check(r, "/v1/conversations")
    r = await client.get(f"/v1/conversations/{message['conversation_id']}", headers=team)
    assert r.status_code == 200
    check(r, "/v1/conversations/{id}")

    for body in (sms, {**sms, "channel": "whatsapp", "text": "hällo 👋", "fallback": "sms"}):
        r = await client.post("/v1/messages/preview", json=body, headers=team)
        assert r.status_code == 200
        check(r, "/v1/messages/preview")

    files = {"file": ("a.pdf", b"%PDF-1.4 test", "application/pdf")}
    r = await client.post("/v1/attachments", files=files, headers=team)
    assert r.status_code == 201
    check(r, "/v1/attachments")
    attachment = r.json()
    r = await client.get(f"/v1/attachments/{attachment['id']}", headers=team)
    assert r.status_code == 200
    check(r, "/v1/attachments/{id}")
    r = await client.get(f"/v1/attachments/{attachment['id']}/content", headers=team)
    assert r.status_code == 200
    documented = check(r, "/v1/attachments/{id}/content")
    assert r.content == b"%PDF-1.4 test"
    assert r.headers["content-type"] == "application/pdf"
    assert {"ETag", "Content-Disposition"} <= set(documented["headers"])
    assert "etag" in r.headers and "content-disposition" in r.headers

    # A fax with only an attachment: text and encoding are null.
    fax = {"channel": "fax", "from": FAX_A, "to": CONTACT, "attachments": [attachment["id"]]}
    r = await client.post("/v1/messages", json=fax, headers=auth(seed.anna_key))
    assert r.status_code == 202
    check(r, "/v1/messages")
    assert r.json()["text"] is None and r.json()["encoding"] is None

    periods: list[dict[str, str]] = [{}, {"period": "2026-03"}]
    for params in periods:
        r = await client.get("/v1/quota", params=params, headers=team)
        assert r.status_code == 200
        check(r, "/v1/quota")


async def test_failed_and_inbound_messages_match(
    client: httpx.AsyncClient, seed: Seed, rt: Runtime, check: Checker
) -> None:
    """A message that failed at the carrier (with its error and history) and an inbound
    message have the documented shape too."""
    team = auth(seed.team_key)
    body = {"channel": "whatsapp", "from": MOBILE_A, "to": CONTACT, "text": "hi",
            "fallback": "sms"}  # fmt: skip
    r = await client.post("/v1/messages", json=body, headers=team)
    assert r.status_code == 202
    check(r, "/v1/messages")
    message_id = r.json()["id"]
    assert await worker(rt).run_once()
    error = {"code": "unreachable", "message": "handset off", "carrier_code": "27",
             "retryable": False}  # fmt: skip
    r = await client.post(
        "/hooks/fake1/status", json={"id": f"fake-{message_id}", "status": "failed", "error": error}
    )
    assert r.json() == {"known": True}
    r = await client.get(f"/v1/messages/{message_id}", headers=team)
    check(r, "/v1/messages/{id}")
    assert r.json()["status"] == "failed" and r.json()["error"] == error
    assert r.json()["fallback"] == "sms"
    assert [h["status"] for h in r.json()["history"]][-1] == "failed"

    r = await client.post(
        "/hooks/fake1/inbound", json={"id": "in-1", "from": CONTACT, "to": MOBILE_A, "text": "yo"}
    )
    assert r.json()["message_id"]
    r = await client.get("/v1/messages", params={"direction": "inbound"}, headers=team)
    check(r, "/v1/messages")
    assert [m["status"] for m in r.json()["data"]] == ["received"]


async def test_error_answers_match(client: httpx.AsyncClient, seed: Seed, check: Checker) -> None:
    """Problems: documented status, media type, schema and code."""
    team = auth(seed.team_key)
    sms = {"channel": "sms", "from": MOBILE_A, "to": CONTACT, "text": "hi"}

    def problem(r: httpx.Response, path: str, status: int, code: str) -> None:
        assert r.status_code == status, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        check(r, path)
        assert r.json()["code"] == code
        assert r.json()["instance"] == r.url.path
        assert r.json()["status"] == status

    r = await client.get("/v1/messages")
    problem(r, "/v1/messages", 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    r = await client.post("/v1/messages", json=sms, headers={"Authorization": "Bearer nope"})
    problem(r, "/v1/messages", 401, "unauthorized")
    r = await client.get("/v1/quota", headers={"Authorization": "Basic abc"})
    problem(r, "/v1/quota", 401, "unauthorized")

    r = await client.get("/v1/messages/msg_unknown", headers=team)
    problem(r, "/v1/messages/{id}", 404, "not_found")
    r = await client.get("/v1/conversations/conv_unknown", headers=team)
    problem(r, "/v1/conversations/{id}", 404, "not_found")
    r = await client.get("/v1/attachments/att_unknown", headers=team)
    problem(r, "/v1/attachments/{id}", 404, "not_found")
    r = await client.get("/v1/attachments/att_unknown/content", headers=team)
    problem(r, "/v1/attachments/{id}/content", 404, "not_found")

    r = await client.post("/v1/messages", json={**sms, "to": "12"}, headers=team)
    problem(r, "/v1/messages", 422, "invalid_number")
    r = await client.post("/v1/messages/preview", json={**sms, "to": "12"}, headers=team)
    problem(r, "/v1/messages/preview", 422, "invalid_number")
    r = await client.post("/v1/messages", json={**sms, "extra": 1}, headers=team)
    problem(r, "/v1/messages", 422, "validation_error")
    assert r.json()["field"] == "extra"
    for path in ("/v1/messages", "/v1/messages/preview"):
        r = await client.post(path, content=b"{not json", headers=team)
        problem(r, path, 400, "malformed_request")
    r = await client.post("/v1/messages", json=sms, headers=auth(seed.ben_key))
    problem(r, "/v1/messages", 403, "sender_not_owned")
    r = await client.post(
        "/v1/messages/preview", json={**sms, "channel": "fax"}, headers=auth(seed.ben_key)
    )
    problem(r, "/v1/messages/preview", 403, "sender_not_owned")

    for params in ({"limit": "0"}, {"limit": "201"}, {"channel": "email"},
                   {"direction": "sideways"}, {"status": "lost"}):  # fmt: skip
        r = await client.get("/v1/messages", params=params, headers=team)
        problem(r, "/v1/messages", 422, "validation_error")
    r = await client.get("/v1/conversations", params={"limit": "x"}, headers=team)
    problem(r, "/v1/conversations", 422, "validation_error")
    for cursor in ("garbage", "x:y", "12:msg_short"):
        r = await client.get("/v1/conversations", params={"cursor": cursor}, headers=team)
        problem(r, "/v1/conversations", 422, "validation_error")
        r = await client.get("/v1/messages", params={"cursor": cursor}, headers=team)
        problem(r, "/v1/messages", 422, "validation_error")
    r = await client.get("/v1/quota", params={"period": "2026-13"}, headers=team)
    problem(r, "/v1/quota", 422, "validation_error")

    r = await client.post("/v1/attachments", content=b"raw", headers=team)
    problem(r, "/v1/attachments", 415, "unsupported_media_type")
    r = await client.post(
        "/v1/attachments", files={"other": ("a.txt", b"x", "text/plain")}, headers=team
    )
    problem(r, "/v1/attachments", 422, "validation_error")


async def test_limit_answers_match(
    client: httpx.AsyncClient, seed: Seed, rt: Runtime, check: Checker
) -> None:
    """413 for an upload over the limit; 402 (with its extension members) past the credit
    limit."""
    team = auth(seed.team_key)
    rt.settings = dataclasses.replace(rt.settings, max_attachment_bytes=4)
    files = {"file": ("a.pdf", b"%PDF-1.4 test", "application/pdf")}
    r = await client.post("/v1/attachments", files=files, headers=team)
    assert r.status_code == 413
    check(r, "/v1/attachments")
    assert r.json()["code"] == "payload_too_large"

    tariff = rt.settings.tariff
    rt.settings = dataclasses.replace(
        rt.settings,
        tariff=dataclasses.replace(
            tariff,
            included=dict.fromkeys(tariff.included, 0),
            overage_price_micros=dict.fromkeys(tariff.overage_price_micros, 100_000_000),
        ),
    )
    sms = {"channel": "sms", "from": MOBILE_A, "to": CONTACT, "text": "hi"}
    r = await client.post("/v1/messages", json=sms, headers=team)
    assert r.status_code == 402
    check(r, "/v1/messages")
    assert r.json()["code"] == "quota_credit_limit"
    assert r.json()["credit_limit_micros"] == seed.team.credit_limit_micros


async def test_idempotency_answers_match(
    client: httpx.AsyncClient, seed: Seed, check: Checker
) -> None:
    """A replay carries Idempotency-Replayed; a bad or reused key answers a problem."""
    sms = {"channel": "sms", "from": MOBILE_A, "to": CONTACT, "text": "hi"}
    headers = {**auth(seed.team_key), "Idempotency-Key": "k1"}
    first = await client.post("/v1/messages", json=sms, headers=headers)
    again = await client.post("/v1/messages", json=sms, headers=headers)
    for r in (first, again):
        assert r.status_code == 202
        documented = check(r, "/v1/messages")
    assert again.json() == first.json()
    assert again.headers["idempotency-replayed"] == "true"
    assert "Idempotency-Replayed" in documented["headers"]

    r = await client.post("/v1/messages", json={**sms, "text": "other"}, headers=headers)
    assert r.status_code == 422
    check(r, "/v1/messages")
    assert r.json()["code"] == "idempotency_key_reused"

    long_key = {**auth(seed.team_key), "Idempotency-Key": "k" * 256}
    for path in ("/v1/messages", "/v1/messages/preview"):
        r = await client.post(path, json=sms, headers=long_key)
        assert r.status_code == 400
        check(r, path)
    files = {"file": ("a.pdf", b"%PDF-1.4 test", "application/pdf")}
    r = await client.post("/v1/attachments", files=files, headers=long_key)
    assert r.status_code == 400
    check(r, "/v1/attachments")


async def test_operations_endpoints_match(client: httpx.AsyncClient, rt: Runtime,
                                          check: Checker) -> None:  # fmt: skip
    """Health, readiness, metrics and the document itself need no key."""
    r = await client.get("/healthz")
    assert r.status_code == 200
    check(r, "/healthz")
    r = await client.get("/readyz")
    assert r.status_code == 200
    check(r, "/readyz")
    assert r.json() == {"status": "ok"}
    r = await client.get("/metrics")
    assert r.status_code == 200
    check(r, "/metrics")
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")

    r = await client.get("/v1/openapi.json")
    assert r.status_code == 200
    check(r, "/v1/openapi.json")
    served = r.json()
    assert served["servers"][0]["url"] == rt.settings.public_url
    assert served == openapi_document(rt.settings.public_url)


async def test_readyz_not_ready_matches(client: httpx.AsyncClient, rt: Runtime,
                                        check: Checker) -> None:  # fmt: skip
    """An unhealthy connector makes /readyz answer the documented 503 report."""
    connector = rt.connectors["fake1"].connector
    connector.healthy = False  # type: ignore[attr-defined]
    r = await client.get("/readyz")
    assert r.status_code == 503
    check(r, "/readyz")
    assert r.json()["status"] == "unavailable"
