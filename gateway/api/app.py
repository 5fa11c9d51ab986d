"""The Starlette application: /v1 routes, carrier webhooks, operations endpoints, workers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import jsoncodec
from gateway.api import problems, v1
from gateway.api.fastpath import SendFastPath
from gateway.api.limits import CLIENT_CLOSED, BodyLimit, ceilings, hung_up
from gateway.auth import KeyCache
from gateway.errors import GatewayError
from gateway.extensions import extensions
from gateway.metrics import Metrics
from gateway.process import worker
from gateway.runtime import Runtime
from gateway.store import UNAVAILABLE

log = logging.getLogger("gateway.api")


class MetricsMiddleware:
    """Counts requests by handler and status (pure ASGI: no per-request task overhead)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request and count it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except ClientDisconnect:
            # The client closed mid-body: nothing to answer, nobody to blame but the
            # network; one line in the log, counted apart from the server's errors.
            status = CLIENT_CLOSED
            hung_up(scope)
        finally:
            name = getattr(scope.get("endpoint"), "__name__", "unmatched")
            # Label keys spelled out in sorted order: this runs on every request.
            key = (("handler", name), ("method", scope["method"]), ("status", str(status)))
            self.metrics.add("gateway_http_requests_total", key)
            took = time.perf_counter() - start
            self.metrics.add("gateway_http_request_seconds_total", (("handler", name),), took)
            self.metrics.observe(
                "gateway_http_request_duration_seconds",
                (("handler", name), ("method", scope["method"])),
                took,
            )


async def healthz(request: Request) -> Response:
    """GET /healthz: the process is alive."""
    return JSONResponse({"status": "ok"})


async def health_report(rt: Runtime) -> tuple[bool, dict[str, Any]]:
    """Whether the store answers and every connector can send, and the details (exception
    texts, carriers' addresses: for the operator's eyes only, ``/v1/health``)."""
    checks: dict[str, Any] = {}
    ok = True
    try:
        await rt.store.ping()
        checks["store"] = {"ok": True}
    except Exception as exc:
        ok = False
        checks["store"] = {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}
    connectors = {}
    for cid, health in rt.health().items():
        connectors[cid] = {"ok": health.ok, "detail": health.detail}
        ok = ok and health.ok
    checks["connectors"] = connectors
    return ok, checks


async def readyz(request: Request) -> Response:
    """GET /readyz: the store answers and every connector can send — the status only (the
    probe is public); what is wrong goes to the log (once per change) and ``/v1/health``."""
    ok, checks = await health_report(request.app.state.rt)
    failing = None if ok else jsoncodec.dumps(checks)
    if failing != request.app.state.ready_failing:
        request.app.state.ready_failing = failing
        if failing is None:
            log.info("ready again")
        else:
            log.warning("not ready: %s", failing)
    return JSONResponse({"status": "ok" if ok else "unavailable"}, 200 if ok else 503)


async def operator_health(request: Request) -> Response:
    """GET /v1/health: the readiness report with its details, for an operator key."""
    await request.app.state.keys.resolve(request.headers.get("authorization"), operator=True)
    ok, checks = await health_report(request.app.state.rt)
    return JSONResponse({"status": "ok" if ok else "unavailable", "checks": checks})


async def metrics(request: Request) -> Response:
    """GET /metrics: Prometheus text format."""
    rt: Runtime = request.app.state.rt
    kinds: frozenset[str] = request.app.state.job_kinds
    with contextlib.suppress(Exception):  # a store outage must not hide the other metrics
        for state, n in (await rt.store.job_counts()).items():
            rt.metrics.set("gateway_jobs", n, state=state)
        parked = await rt.store.parked_job_counts()
        rt.metrics.clear("gateway_jobs_parked")  # a kind whose jobs were taken drops out
        for kind, n in parked.items():
            handled = "true" if kind in kinds else "false"
            rt.metrics.set("gateway_jobs_parked", n, kind=kind, handled=handled)
    for cid, health in rt.health().items():
        rt.metrics.set("gateway_connector_up", 1 if health.ok else 0, connector=cid)
    return PlainTextResponse(rt.metrics.render(), media_type="text/plain; version=0.0.4")


async def openapi(request: Request) -> Response:
    """GET /v1/openapi.json: the OpenAPI 3.1 document of this API."""
    # Imported on first use: the document is large and most processes never serve it.
    from gateway.api.openapi import openapi_document

    rt: Runtime = request.app.state.rt
    return JSONResponse(openapi_document(rt.settings.public_url))


# The collector's first-generation threshold while the app serves (CPython's default: 700).
GC_THRESHOLD = 20_000


@contextlib.contextmanager
def collector_tuned() -> Iterator[None]:
    """While serving: a higher gen-0 threshold, and what startup built frozen.

    A send keeps a few dozen objects alive across its awaits, so with tens of sends in
    flight the default threshold collects every few requests: each collection walks the
    in-flight objects and promotes them, and the promotions soon trigger full collections
    that walk the whole heap (tens of ms each). That was a quarter of a send's CPU. With
    the higher threshold they die by reference counting first (a send makes almost no
    cyclic garbage, so memory does not grow), and the frozen startup heap (modules,
    number metadata, configuration) keeps the rare full collection short.
    """
    before = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()


OPS_ROUTES = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/v1/health", operator_health, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/v1/openapi.json", openapi, methods=["GET"]),
]


def create_app(rt: Runtime, *, workers: bool = True) -> Starlette:
    """The ASGI app of one gateway process; with ``workers`` it also runs the job workers."""
    # Starlette tries routes in order, one regex each. Carrier webhooks come first: a send
    # pays one prefix check per connector for them, while a webhook placed after the
    # /v1 routes would pay all of theirs (webhooks are as many as sends, or more).
    routes: list[BaseRoute] = []
    for cid, state in rt.connectors.items():
        hooks = list(state.connector.routes())
        # A connector's root route also answers without the trailing slash: carriers
        # (Meta) are given /hooks/{id} and do not follow Mount's 307 to /hooks/{id}/.
        for hook in hooks:
            if isinstance(hook, Route) and hook.path == "/":
                routes.append(Route(f"/hooks/{cid}", hook.endpoint, methods=hook.methods))
        if hooks:
            routes.append(Mount(f"/hooks/{cid}", routes=hooks))
    # Extensions' routes (webhooks/) come after the core's; they are found through their
    # entry points (gateway.extensions), never imported by name.
    routes += [*v1.ROUTES, *(r for ext in extensions() for r in ext.routes()), *OPS_ROUTES]
    jobs = worker(rt) if workers else None

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = None
        if jobs is not None:
            task = asyncio.create_task(jobs.run(stop), name="workers")
        try:
            with collector_tuned():
                yield
        finally:
            stop.set()
            if task is not None:
                await task

    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            GatewayError: problems.gateway_error,
            HTTPException: problems.http_error,
            **dict.fromkeys(UNAVAILABLE, problems.store_unavailable),
            Exception: problems.internal_error,
        },
    )
    app.state.rt = rt
    app.state.ready_failing = None  # what /readyz last logged as failing
    app.state.job_kinds = jobs.kinds if jobs is not None else frozenset()
    app.state.keys = KeyCache(rt.store, clock=rt.clock)
    # The last added is the outermost: metrics count what the fast path serves and what
    # the body limit refuses too.
    app.add_middleware(SendFastPath, rt=rt, keys=app.state.keys)
    app.add_middleware(BodyLimit, limits=ceilings(rt.settings.max_attachment_bytes))
    app.add_middleware(MetricsMiddleware, metrics=rt.metrics)
    return app
