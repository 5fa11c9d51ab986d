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
  :meth:`Extension.run`, the extension's background service, beside its job loops;
* ``gateway admin OBJECT ACTION`` commands (:class:`AdminCommand`), run on a host whose
  storage roles are open;
* its part of ``gateway demo``: what it sets up for the demo members, and the lines it
  adds to the banner;
* services for the other extensions (``gateway/services.py``), found with
  :func:`service`: the portal manages webhook endpoints through the webhooks
  extension's ``WebhookAdmin`` without importing it.

An extension types against :class:`Host`, never against ``gateway.runtime.Runtime``
(which satisfies it): that keeps it to the public surface of the core.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

if TYPE_CHECKING:
    import argparse

    import httpx
    from starlette.routing import BaseRoute

    from connectors.base import Connector
    from gateway.blobs import BlobStore
    from gateway.clock import Clock
    from gateway.config import Settings
    from gateway.directory import Directory
    from gateway.metrics import Metrics
    from gateway.models import Channel, JobHandler, Member
    from gateway.services import ChannelJobs, ServiceKey
    from gateway.store.base import Store
    from gateway.store.roles import Role

GROUP = "gateway.extensions"
R = TypeVar("R")
T = TypeVar("T")


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
        """Tell the job workers that a job was enqueued (this process's, and an idle one
        of another process sharing the store)."""
        ...

    @property
    def directory(self) -> Directory:
        """Teams, members and conversations (cached reads of the store)."""
        ...

    def route(self, channel: Channel | str, sender: str) -> Connector | None:
        """The connector a send from ``sender`` on ``channel`` goes through (None: none
        serves it). With ``directory``, what ``gateway.outbound`` needs: an extension
        that sends (email-to-fax) passes its ``Host`` to ``outbound.submit``."""
        ...


@dataclass(frozen=True, slots=True)
class AdminCommand:
    """``gateway admin OBJECT ACTION …`` contributed by an extension.

    ``arguments`` adds the command's arguments to its parser; ``run`` gets a host on the
    configured store (storage roles open, connectors not started) and the parsed
    arguments, and returns what every admin command returns: the JSON object (``--json``)
    and the text. Errors are the gateway's (``GatewayError``), as for the core's commands.
    """

    object: str  # e.g. "member" (an existing object gets one more action)
    action: str  # e.g. "set-password"
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Host, argparse.Namespace], Awaitable[tuple[dict[str, Any], str]]]


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

    def admin_commands(self) -> Sequence[AdminCommand]:
        """Its ``gateway admin`` commands (none: ``()``)."""
        ...

    async def demo(self, host: Host, members: Sequence[Member]) -> str:
        """Set up its part of ``gateway demo`` for the demo team's ``members`` (the first
        is the team's admin) and return the banner's lines about it ("" for none)."""
        ...

    def services(self, host: Host) -> Mapping[ServiceKey[Any], object]:
        """The services it offers on ``host``, under their keys in ``gateway/services.py``
        ({} for none)."""
        ...


@functools.cache
def extensions() -> tuple[Extension, ...]:
    """The installed extensions, by name (loaded once per process)."""
    found = sorted(entry_points(group=GROUP), key=lambda ep: ep.name)
    return tuple(ep.load() for ep in found)


def service(host: Host, key: ServiceKey[T]) -> T | None:
    """The service under ``key`` (``gateway/services.py``) that an installed extension
    offers on ``host``, or None."""
    for ext in extensions():
        found = ext.services(host).get(key)
        if found is not None:
            return cast(T, found)
    return None


def extension_commands() -> dict[tuple[str, str], AdminCommand]:
    """The installed extensions' ``gateway admin`` commands by (object, action)."""
    return {(c.object, c.action): c for ext in extensions() for c in ext.admin_commands()}


def preparation_kind(host: Host, channel: str) -> str | None:
    """The job kind an installed extension prepares outbound ``channel`` messages with
    (``services.ChannelJobs``), or None: they go straight to the ``send`` job."""
    from gateway.services import CHANNEL_JOBS

    for ext in extensions():
        jobs = ext.services(host).get(CHANNEL_JOBS)
        kind = cast("ChannelJobs", jobs).preparation_kind(channel) if jobs else None
        if kind is not None:
            return kind
    return None


def follow_up_kinds(host: Host, channel: str) -> list[str]:
    """The job kinds the installed extensions run after an inbound ``channel`` message."""
    from gateway.services import CHANNEL_JOBS

    kinds: list[str] = []
    for ext in extensions():
        jobs = ext.services(host).get(CHANNEL_JOBS)
        if jobs:
            kinds += cast("ChannelJobs", jobs).follow_up_kinds(channel)
    return kinds
