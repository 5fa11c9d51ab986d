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
  loops.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Mapping, Sequence
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from gateway.runtime import Runtime
    from gateway.store.roles import Role

EXTENSION_GROUP = "gateway.extensions"


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


@functools.cache
def extensions() -> tuple[Extension, ...]:
    """The installed extensions, by name (loaded once per process)."""
    found = sorted(entry_points(group=EXTENSION_GROUP), key=lambda ep: ep.name)
    return tuple(ep.load() for ep in found)
