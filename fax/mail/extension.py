"""Email-to-fax as a gateway extension (entry point ``gateway.extensions: fax_mail``,
section ``[fax_mail]``, ``settings.py``).

Its background service runs the SMTP receiver (``receiver.py``, when ``listen`` is set),
the IMAP IDLE mailbox (``imap.py``, when ``imap_url`` is set) and the status mail watcher
(``status.py``); its jobs are ``fax_mail_in`` (a stored mail → faxes) and
``fax_mail_status`` (a status mail). ``gateway admin member fax-mail-allow|deny|list``
manage the senders' allowlists. Fax-to-email of received faxes is the ``fax``
extension's ``fax_received`` job.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fax.mail.settings import FaxMailSettings, parse

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from gateway.extensions import AdminCommand, Extension, Host
    from gateway.models import JobHandler, Member
    from gateway.services import ServiceKey
    from gateway.store.roles import Role

log = logging.getLogger("fax.mail")
NAME = "fax_mail"


def settings_of(host: Host) -> FaxMailSettings:
    """The ``[fax_mail]`` settings of ``host``."""
    return host.settings.extension(NAME, FaxMailSettings)


class FaxMailExtension:
    """Email-to-fax: SMTP receiver, IMAP mailbox, status mails."""

    name = NAME

    def parse_settings(self, table: Mapping[str, Any] | None) -> FaxMailSettings:
        """``[fax_mail]`` (``settings.py``)."""
        return parse(table)

    def storage(self) -> Sequence[Role[Any]]:
        """None: allowlists, origins and the cursor are settings documents."""
        return ()

    def routes(self) -> Sequence[BaseRoute]:
        """None."""
        return ()

    def openapi(self) -> dict[str, Any]:
        """Nothing."""
        return {}

    def job_handlers(self, host: Host) -> Mapping[str, JobHandler]:
        """``fax_mail_in``, ``fax_mail_status`` and ``fax_mail_refusal``."""
        from fax.mail import imap, intake, outgoing, status

        return {
            intake.JOB_KIND: functools.partial(intake.intake_job, host),
            status.JOB_KIND: functools.partial(status.status_job, host),
            imap.REFUSAL_KIND: functools.partial(outgoing.mail_refused_job, host),
        }

    async def run(self, host: Host, stop: asyncio.Event) -> None:
        """The receiver, the mailbox and the status watcher, until ``stop``."""
        from fax.mail import imap, receiver, status

        settings = settings_of(host)
        if settings.domain is None:
            return  # email-to-fax is off
        tasks = [_alone("status mails", status.watch(host, stop, host.settings.poll_interval * 5))]
        if settings.listen is not None:
            tasks.append(_alone("SMTP receiver", receiver.serve(host, settings, stop)))
        if settings.imap is not None:
            tasks.append(_alone("IMAP mailbox", imap.poll(host, settings, stop)))
        await asyncio.gather(*tasks)

    def admin_commands(self) -> Sequence[AdminCommand]:
        """``member fax-mail-allow``, ``fax-mail-deny``, ``fax-mail-list``."""
        from fax.mail.senders import ADMIN_COMMANDS

        return ADMIN_COMMANDS

    async def demo(self, host: Host, members: Sequence[Member]) -> str:
        """The demo's SMTP receiver and mail sink (``demo.py``)."""
        from fax.mail.demo import demo

        return await demo(host, members)

    def services(self, host: Host) -> Mapping[ServiceKey[Any], object]:
        """None."""
        return {}


async def _alone(what: str, work: Coroutine[Any, Any, None]) -> None:
    """Run one part of the service; its failure (e.g. the SMTP port taken by another
    process) is logged and stops only that part."""
    try:
        await work
    except Exception:
        log.exception("fax mail: the %s stopped with an error", what)


EXTENSION: Extension = FaxMailExtension()
