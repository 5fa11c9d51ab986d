"""The fax package as a gateway extension (entry point ``gateway.extensions: fax``).

It offers the ``DocumentPreview`` service (``preview.py``), which the portal uses to show
a document's pages before it is faxed, and the fax channel's ``ChannelJobs``
(``convert.py``): ``fax_convert`` renders an accepted fax before its send job, and
``fax_received`` turns a received fax into a PDF and mails it. Email-to-fax is the
``fax_mail`` extension (``fax/mail/extension.py``, section ``[fax_mail]``). The core finds
both through the entry point, never by import."""

from __future__ import annotations

import asyncio
import functools
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
    """The fax channel's document preview and jobs."""

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
        """``fax_convert`` and ``fax_received`` (``convert.py``)."""
        from fax import convert

        return {
            convert.CONVERT: functools.partial(convert.convert_job, host),
            convert.RECEIVED: functools.partial(convert.received_job, host),
        }

    async def run(self, host: Host, stop: asyncio.Event) -> None:
        """No background service."""

    def admin_commands(self) -> Sequence[AdminCommand]:
        """None."""
        return ()

    async def demo(self, host: Host, members: Sequence[Member]) -> str:
        """Nothing to set up."""
        return ""

    def services(self, host: Host) -> Mapping[ServiceKey[Any], object]:
        """``DocumentPreview`` and the fax channel's ``ChannelJobs``."""
        from fax.convert import FaxJobs
        from fax.preview import FaxPreview
        from gateway.services import CHANNEL_JOBS, DOCUMENT_PREVIEW

        return {DOCUMENT_PREVIEW: FaxPreview(), CHANNEL_JOBS: FaxJobs()}


EXTENSION: Extension = FaxExtension()
