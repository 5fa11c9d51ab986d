"""The fax package as a gateway extension (entry point ``gateway.extensions: fax``): for
now it offers the ``DocumentPreview`` service (``preview.py``), which the portal uses to
show a document's pages before it is faxed. It has no settings, storage, routes or
service of its own yet; the core finds it through the entry point, never by import."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gateway.errors import ConfigError

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from gateway.extensions import AdminCommand, Extension, Host
    from gateway.models import JobHandler, Member
    from gateway.services import ServiceKey
    from gateway.store.roles import Role


class FaxExtension:
    """The document preview service of the fax channel."""

    name = "fax"

    def parse_settings(self, table: Mapping[str, Any] | None) -> None:
        """No ``[fax]`` section yet."""
        if table:
            raise ConfigError(f"fax.{next(iter(table))}: unknown key")

    def storage(self) -> Sequence[Role[Any]]:
        """None."""
        return ()

    def routes(self) -> Sequence[BaseRoute]:
        """None."""
        return ()

    def openapi(self) -> dict[str, Any]:
        """Nothing."""
        return {}

    def job_handlers(self, host: Host) -> Mapping[str, JobHandler]:
        """None."""
        return {}

    async def run(self, host: Host, stop: asyncio.Event) -> None:
        """No background service."""

    def admin_commands(self) -> Sequence[AdminCommand]:
        """None."""
        return ()

    async def demo(self, host: Host, members: Sequence[Member]) -> str:
        """Nothing to set up."""
        return ""

    def services(self, host: Host) -> Mapping[ServiceKey[Any], object]:
        """``DocumentPreview``."""
        from fax.preview import FaxPreview
        from gateway.services import DOCUMENT_PREVIEW

        return {DOCUMENT_PREVIEW: FaxPreview()}


EXTENSION: Extension = FaxExtension()
