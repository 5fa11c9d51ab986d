"""What a gateway process holds: settings, store, blobs, clock, HTTP client and connectors.

One ``Runtime`` lives in each process (``serve``, ``worker``, ``demo``); the API, the
workers, the connectors and the extensions (with their storage roles) all reach shared
state through it. It knows nothing of the inbound path, the job kinds or the installed
extensions: ``gateway.process`` assembles those around it. It satisfies
``gateway.extensions.Host``, the part extensions see.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import httpx

from connectors import base as connector_base
from connectors.base import (
    AuthError,
    Connector,
    ConnectorContext,
    ConnectorError,
    Health,
    InboundSink,
)
from gateway.blobs import BlobStore
from gateway.clock import Clock, SystemClock
from gateway.config import Settings
from gateway.connector_hooks import ConnectorHooks
from gateway.directory import Directory
from gateway.errors import ConfigError
from gateway.metrics import Metrics, standard_metrics
from gateway.models import Channel, Job, JobHandler
from gateway.retry import in_process
from gateway.store import make_store
from gateway.store.base import Store
from gateway.store.roles import Role

log = logging.getLogger("gateway")
R = TypeVar("R")
# Shortest ``retry_after`` of a connector that is still starting (sends wait that long).
START_RETRY_MIN = 1.0
# Start attempts of a connector whose carrier is not ready: 0.5 s, 1 s, 2 s … 30 s apart.
START_RETRY_FIRST = 0.5
START_RETRY_MAX = 30.0
SinkFactory = Callable[["Runtime"], InboundSink]


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
        self._rang_at = -math.inf  # loop time of the last ring of the store's job bell
        self._ring_later: asyncio.TimerHandle | None = None  # a paced ring on its way
        self._own_http = False

    @classmethod
    async def create(
        cls,
        settings: Settings,
        sink: SinkFactory,
        *,
        roles: Iterable[Role[Any]] = (),
        clock: Clock | None = None,
        http: httpx.AsyncClient | None = None,
        start_connectors: bool = True,
        sends: bool = True,
    ) -> Runtime:
        """Open the store and the storage ``roles`` (``gateway.process`` passes the
        installed extensions'), load plugins and build (and start) the configured
        connectors, which hand what carriers send them to ``sink(runtime)``
        (``gateway.process`` passes the core's inbound path). ``sends`` False: this
        process runs no send jobs (API only), its connectors hold no carrier sessions
        that count against a limit shared by every process (SMPP binds)."""
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
        context = ConnectorContext(
            http=client,
            sink=sink(rt),
            clock=rt.clock,
            blobs=rt.blobs,
            public_url=settings.public_url,
            progress=(
                hooks := ConnectorHooks(store, rt.clock, rt.directory, settings.policy)
            ),
            screen=hooks,
            shared=store.coordination(),
            sends=sends,
        )
        try:
            for role in roles:
                rt._roles[role] = await role.open(store)
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

        async def attempt() -> None:
            try:
                await state.connector.start()
            except ConnectorError as exc:
                state.last_error = f"{type(exc).__name__}: {exc.message}"
                state.auth_failed = isinstance(exc, AuthError)
                log.warning("connector %s not ready: %s", state.connector.id, exc.message)
                raise
            except Exception as exc:  # a bug in a connector must not stop the others
                state.last_error = f"{type(exc).__name__}: {exc}"
                state.auth_failed = False
                log.exception("connector %s failed to start", state.connector.id)
                raise
            state.started, state.last_error, state.auth_failed = True, None, False

        def waiting(seconds: float) -> None:
            state.next_try = time.monotonic() + seconds

        retrying = in_process(
            attempts=None,
            base=START_RETRY_FIRST,
            cap=START_RETRY_MAX,
            retry_on=lambda exc: isinstance(exc, Exception),
            on_wait=waiting,
        )
        await retrying(attempt)

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

    def job_handlers(self) -> dict[str, JobHandler]:
        """The job kinds the configured connectors run (``Connector.job_handlers``).

        A kind that several connectors declare (two WhatsApp numbers' connectors) goes to
        the one its job's ``payload["connector_id"]`` names, else to the first of them.
        """
        declared: dict[str, dict[str, JobHandler]] = {}
        for cid, state in self.connectors.items():
            for kind, fn in state.connector.job_handlers().items():
                declared.setdefault(kind, {})[cid] = fn
        return {kind: _by_connector(owners) for kind, owners in declared.items()}

    def health(self) -> dict[str, Health]:
        """Health of every connector by id."""
        return {cid: state.health() for cid, state in self.connectors.items()}

    def wake_workers(self) -> None:
        """Tell the job workers that a job was enqueued: this process's at once, and one
        idle worker of another process through the store's job bell (when the store is
        shared), paced: at most one ring per ``bell_interval``. A job enqueued sooner
        after the last ring waits for the ring at the end of that interval, which wakes a
        worker for every job enqueued meanwhile: under load a ring brings a batch (one
        lease, one round trip for many sends), while a lone job rings at once."""
        self._wake.set()
        if not self.store.shared or self._ring_later is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop runs (a closing process): nobody to wake
            return
        wait = self._rang_at + self.settings.bell_interval - loop.time()
        if wait > 0:
            self._ring_later = loop.call_later(wait, self._ring)
        else:
            self._ring()

    def _ring(self) -> None:
        self._ring_later = None
        self._rang_at = asyncio.get_running_loop().time()
        self.store.ring_job_bell()

    def wake_here(self) -> None:
        """Wake this process's job workers only (a slot freed, a ring came, a stop)."""
        self._wake.set()

    async def wait_for_work(self, timeout: float) -> None:
        """Sleep until woken or ``timeout`` seconds passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)
        self._wake.clear()

    async def aclose(self) -> None:
        """Stop connectors, close the HTTP client and the store."""
        if self._ring_later is not None:  # the jobs are stored: polling finds them
            self._ring_later.cancel()
            self._ring_later = None
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


def _by_connector(owners: Mapping[str, JobHandler]) -> JobHandler:
    """The handler of a kind: the only connector's, or one that picks by connector id."""
    handlers = list(owners.values())
    if len(handlers) == 1:
        return handlers[0]

    async def route(job: Job) -> bool | None:
        fn = owners.get(str(job.payload.get("connector_id")), handlers[0])
        return await fn(job)

    return route
