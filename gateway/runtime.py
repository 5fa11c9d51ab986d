"""The assembled gateway: settings, store, blobs, clock, HTTP client and connectors.

One ``Runtime`` lives in each process (``serve``, ``worker``, ``demo``); the API, the
workers, the connectors and the extensions (with their storage roles) all reach shared
state through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import httpx

from connectors import base as connector_base
from connectors.base import AuthError, Connector, ConnectorContext, ConnectorError, Health
from gateway.blobs import BlobStore
from gateway.clock import Clock, SystemClock
from gateway.config import Settings
from gateway.directory import Directory
from gateway.errors import ConfigError
from gateway.metrics import Metrics, standard_metrics
from gateway.models import Channel
from gateway.store import make_store
from gateway.store.base import Store
from gateway.store.roles import Role

log = logging.getLogger("gateway")
R = TypeVar("R")
# Shortest ``retry_after`` of a connector that is still starting (sends wait that long).
START_RETRY_MIN = 1.0


@dataclass(slots=True)
class ConnectorState:
    """A connector and what the gateway knows about its start-up."""

    connector: Connector
    started: bool = False
    last_error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    auth_failed: bool = False  # the last start failed on the carrier's credentials
    next_try: float | None = None  # time.monotonic() of the next start attempt

    def health(self) -> Health:
        """Unhealthy until started, worth a try again at the next start attempt (unless
        the carrier refused the credentials); then the connector's own view."""
        if not self.started:
            retry = None
            if not self.auth_failed:
                wait = 0.0 if self.next_try is None else self.next_try - time.monotonic()
                retry = max(wait, START_RETRY_MIN)
            return Health(False, self.last_error or "starting", retry)
        return self.connector.health()


class Runtime:
    """Everything a gateway process holds; build with :meth:`create`, end with :meth:`aclose`."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        clock: Clock,
        http: httpx.AsyncClient,
        metrics: Metrics,
    ) -> None:
        self.settings = settings
        self.store = store
        self.clock = clock
        self.http = http
        self.metrics = metrics
        self.blobs = BlobStore(settings.blobs)
        self.directory = Directory(store)
        self.connectors: dict[str, ConnectorState] = {}
        self._roles: dict[Role[Any], object] = {}  # the extensions' storage, by role
        self._wake = asyncio.Event()
        self._own_http = False

    @classmethod
    async def create(
        cls,
        settings: Settings,
        *,
        clock: Clock | None = None,
        http: httpx.AsyncClient | None = None,
        start_connectors: bool = True,
    ) -> Runtime:
        """Open the store and the extensions' storage roles, load plugins and build (and
        start) the configured connectors."""
        for module in settings.plugins:
            try:
                importlib.import_module(module)
            except ImportError as exc:
                raise ConfigError(f"gateway.plugins: cannot import {module!r}: {exc}") from None
        store = make_store(settings.store)
        await store.open()
        own = http is None
        client = http or httpx.AsyncClient(timeout=httpx.Timeout(15.0), follow_redirects=False)
        rt = cls(settings, store, clock or SystemClock(), client, standard_metrics())
        rt._own_http = own
        # Imported here: inbound imports runtime for typing only, and this keeps the
        # dependency one-way at import time.
        from gateway.inbound import Inbound

        context = ConnectorContext(
            http=client,
            sink=Inbound(rt),
            clock=rt.clock,
            blobs=rt.blobs,
            public_url=settings.public_url,
        )
        try:
            await rt._open_roles()
            for cfg in settings.connectors:
                rt.connectors[cfg.id] = ConnectorState(connector_base.create(cfg, context))
        except BaseException:
            await rt.aclose()
            raise
        if start_connectors:
            for state in rt.connectors.values():
                state.task = asyncio.create_task(
                    rt._start(state), name=f"start-{state.connector.id}"
                )
        return rt

    async def _open_roles(self) -> None:
        # Imported here: the extensions are loaded once a runtime is made, not on import.
        from gateway.extensions import extensions

        for ext in extensions():
            for role in ext.storage():
                self._roles[role] = await role.open(self.store)

    def role(self, role: Role[R]) -> R:
        """The running store's implementation of an extension's storage ``role``
        (``gateway/store/roles.py``), opened by :meth:`create`."""
        try:
            return cast(R, self._roles[role])
        except KeyError:
            raise LookupError(
                f"storage role {role.name!r} is not open: no installed extension lists it"
            ) from None

    async def _start(self, state: ConnectorState) -> None:
        """Start a connector, retrying with backoff while the carrier is not ready."""
        delay = 0.5
        while True:
            try:
                await state.connector.start()
            except ConnectorError as exc:
                state.last_error = f"{type(exc).__name__}: {exc.message}"
                state.auth_failed = isinstance(exc, AuthError)
                log.warning("connector %s not ready: %s", state.connector.id, exc.message)
            except Exception as exc:  # a bug in a connector must not stop the others
                state.last_error = f"{type(exc).__name__}: {exc}"
                state.auth_failed = False
                log.exception("connector %s failed to start", state.connector.id)
            else:
                state.started, state.last_error, state.auth_failed = True, None, False
                return
            state.next_try = time.monotonic() + delay
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def wait_started(self, timeout: float = 10.0) -> None:
        """Wait until every connector has started (for tests and ``demo``)."""
        tasks = [s.task for s in self.connectors.values() if s.task is not None]
        if tasks:
            await asyncio.wait_for(asyncio.gather(*tasks), timeout)

    def route(self, channel: Channel | str, sender: str) -> Connector | None:
        """The connector for a send: the one listing ``sender`` on ``channel``, else the
        first connector of that channel without a ``numbers`` list."""
        fallback = None
        for state in self.connectors.values():
            c = state.connector
            if channel not in c.channels:
                continue
            if c.numbers is not None:
                if sender in c.numbers:
                    return c
            elif fallback is None:
                fallback = c
        return fallback

    def health(self) -> dict[str, Health]:
        """Health of every connector by id."""
        return {cid: state.health() for cid, state in self.connectors.items()}

    def wake_workers(self) -> None:
        """Tell this process's workers that a job is waiting (others poll)."""
        self._wake.set()

    async def wait_for_work(self, timeout: float) -> None:
        """Sleep until woken or ``timeout`` seconds passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    async def aclose(self) -> None:
        """Stop connectors, close the HTTP client and the store."""
        for state in self.connectors.values():
            if state.task is not None and not state.task.done():
                state.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await state.task
            try:
                await state.connector.aclose()
            except Exception:
                log.exception("connector %s failed to close", state.connector.id)
        if self._own_http:
            await self.http.aclose()
        await self.store.aclose()
