"""The extension seam: what a package of the house (``webhooks/``, later the portal) adds
to every gateway process, and what a process offers it.

Public: extensions import this module; the core never imports an extension. An
extension is one object found through the entry-point group ``gateway.extensions``
(``pyproject.toml``)::

    [project.entry-points."gateway.extensions"]
    webhooks = "webhooks.extension:EXTENSION"

Every process (``gateway serve``, ``gateway worker``, ``gateway demo``) loads them once.
What an extension adds:

* its ``[name]`` section of the configuration: ``gateway.config`` hands the table to
  :meth:`Extension.parse_settings` and keeps the result in ``Settings.extensions[name]``
  (read back with ``host.settings.extension(name, kind)``);
* its storage: the storage roles it lists in :meth:`Extension.storage`, opened with the
  store by ``gateway.process.open_runtime`` and handed out by ``host.role(...)``
  (``gateway/store/roles.py``);
* routes: ``create_app`` serves :meth:`Extension.routes` after the core's ``/v1`` routes,
  and the OpenAPI document merges :meth:`Extension.openapi`;
* jobs and a service: the job worker runs the kinds of :meth:`Extension.job_handlers` (a
  job of a kind no running process handles waits in the queue, see ``gateway.jobs``) and
  :meth:`Extension.run`, the extension's background service, beside its job loops.

An extension types against :class:`Host`, never against ``gateway.runtime.Runtime``
(which satisfies it): that keeps it to the public surface of the core.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    import httpx
    from starlette.routing import BaseRoute

    from gateway.blobs import BlobStore
    from gateway.clock import Clock
    from gateway.config import Settings
    from gateway.metrics import Metrics
    from gateway.models import JobHandler
    from gateway.store.base import Store
    from gateway.store.roles import Role

GROUP = "gateway.extensions"
R = TypeVar("R")


class Host(Protocol):
    """What a gateway process offers an extension (``gateway.runtime.Runtime`` is one)."""

    @property
    def settings(self) -> Settings:
        """The process's settings (``gateway.config``; an extension's own section with
        ``settings.extension(name, kind)``)."""
        ...

    @property
    def store(self) -> Store:
        """The shared store (``gateway.store.base.Store``)."""
        ...

    @property
    def clock(self) -> Clock:
        """The clock every time decision uses (injected in tests)."""
        ...

    @property
    def http(self) -> httpx.AsyncClient:
        """The process's shared outgoing HTTP client."""
        ...

    @property
    def metrics(self) -> Metrics:
        """The ``/metrics`` registry."""
        ...

    @property
    def blobs(self) -> BlobStore:
        """Attachment bytes, addressed by SHA-256."""
        ...

    def role(self, role: Role[R]) -> R:
        """The running store's implementation of a storage ``role`` an installed
        extension lists (``LookupError`` for one that is not open)."""
        ...

    def wake_workers(self) -> None:
        """Tell this process's job workers that a job was enqueued (others poll)."""
        ...


class Extension(Protocol):
    """What an extension adds to every gateway process (see the module docstring)."""

    name: str  # also the name of its configuration section

    def parse_settings(self, table: Mapping[str, Any] | None) -> object:
        """Its settings from its ``[name]`` table (None when the section is absent: the
        defaults); raises ``ConfigError`` naming the key, e.g. ``webhooks.timeout: …``."""
        ...

    def storage(self) -> Sequence[Role[Any]]:
        """The storage roles it owns, opened on every process's store at start."""
        ...

    def routes(self) -> Sequence[BaseRoute]:
        """Routes served after the core's ``/v1`` routes."""
        ...

    def openapi(self) -> dict[str, Any]:
        """Its part of the OpenAPI document: ``paths``, ``schemas``, ``tags``, ``webhooks``."""
        ...

    def job_handlers(self, host: Host) -> Mapping[str, JobHandler]:
        """The job kinds it runs, each with its handler bound to ``host`` ({} for none)."""
        ...

    async def run(self, host: Host, stop: asyncio.Event) -> None:
        """The background service, until ``stop`` is set."""
        ...


@functools.cache
def extensions() -> tuple[Extension, ...]:
    """The installed extensions, by name (loaded once per process)."""
    found = sorted(entry_points(group=GROUP), key=lambda ep: ep.name)
    return tuple(ep.load() for ep in found)
