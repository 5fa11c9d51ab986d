"""The extension seam: packages of the house that add to every gateway process (webhooks/,
the portal).

Extensions are found through the entry-point group ``gateway.extensions``
(pyproject.toml), so the core never imports them. What an extension adds:

* its ``[name]`` section of the configuration: ``gateway.config`` hands the table to
  :meth:`Extension.parse_settings` and keeps the result in ``Settings.extensions[name]``;
* its storage: the storage roles it lists in :meth:`Extension.storage`, opened with the
  store by ``Runtime.create`` and handed out by ``rt.role(...)``
  (``gateway/store/roles.py``);
* routes, served by ``create_app`` after the core's, and their part of the OpenAPI
  document;
* a background service, run by ``Worker.run`` (``serve`` and ``worker``) beside the job
  loops;
* ``gateway admin OBJECT ACTION`` commands (:class:`AdminCommand`), run on a runtime
  whose storage roles are open;
* its part of ``gateway demo``: what it sets up for the demo members, and the lines it
  adds to the banner;
* services for the other extensions (``gateway/services.py``), found with
  :func:`service`.
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

    from starlette.routing import BaseRoute

    from gateway.models import Member
    from gateway.runtime import Runtime
    from gateway.services import ServiceKey
    from gateway.store.roles import Role

EXTENSION_GROUP = "gateway.extensions"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AdminCommand:
    """``gateway admin OBJECT ACTION …`` contributed by an extension.

    ``arguments`` adds the command's arguments to its parser; ``run`` gets a runtime on
    the configured store (storage roles open, connectors not started) and the parsed
    arguments, and returns what every admin command returns: the JSON object (``--json``)
    and the text. Errors are the gateway's (``GatewayError``), as for the core's commands.
    """

    object: str  # e.g. "member" (an existing object gets one more action)
    action: str  # e.g. "set-password"
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[Runtime, argparse.Namespace], Awaitable[tuple[dict[str, Any], str]]]


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
        """Routes served after the core's /v1 routes."""
        ...

    def openapi(self) -> dict[str, Any]:
        """Their part of the OpenAPI document: ``paths``, ``schemas``, ``tags``, ``webhooks``."""
        ...

    async def run(self, rt: Runtime, stop: asyncio.Event) -> None:
        """The background service, until ``stop`` is set."""
        ...

    def admin_commands(self) -> Sequence[AdminCommand]:
        """Its ``gateway admin`` commands (none: ``()``)."""
        ...

    async def demo(self, rt: Runtime, members: Sequence[Member]) -> str:
        """Set up its part of ``gateway demo`` for the demo team's ``members`` (the first
        is the team's admin) and return the banner's lines about it ("" for none)."""
        ...

    def services(self, rt: Runtime) -> Mapping[ServiceKey[Any], object]:
        """The services it offers on ``rt``, under their keys in ``gateway/services.py``
        ({} for none)."""
        ...


@functools.cache
def extensions() -> tuple[Extension, ...]:
    """The installed extensions, by name (loaded once per process)."""
    found = sorted(entry_points(group=EXTENSION_GROUP), key=lambda ep: ep.name)
    return tuple(ep.load() for ep in found)


def service(rt: Runtime, key: ServiceKey[T]) -> T | None:
    """The service under ``key`` (``gateway/services.py``) that an installed extension
    offers on ``rt``, or None."""
    for ext in extensions():
        found = ext.services(rt).get(key)
        if found is not None:
            return cast(T, found)
    return None
