"""Invitation mails: a one-time link to choose a password, mailed through the ``[smtp]``
relay by a durable job of the portal's own kind (``portal_invite``).

The team page only queues the invitation (:func:`queue_invitation`): the account records
it as queued and a job is written, so a relay that is slow or down never holds up the
page, and nothing is lost when the process stops. The job (:func:`invitation_job`, run
by every worker through ``PortalExtension.job_handlers``) makes the link and mails it:

- a relay that cannot take it now (unreachable, 4xx) is tried again after
  ``gateway.retry.backoff`` (5 s, 20 s, 80 s … at most an hour) until
  ``job_max_attempts``; the team page shows the invitation as queued, with the reason
  of the last try;
- a refusal (5xx) or the last try ends it as failed, with the reason;
- each try makes its own link; the link of a try the relay did not take is dropped at
  once, so only a mailed link ever works;
- a newer invitation of the same member supersedes a queued one: the older job mails
  nothing (one click, at most one mail).

SMTP has no idempotency: a worker that dies between the relay's 250 and the job's ack
mails the invitation again (with a new link; the first one keeps working), under the
same ``Message-ID`` so that mail clients show it once.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from email.message import EmailMessage

from gateway.errors import ValidationError
from gateway.extensions import Host
from gateway.ids import new_id
from gateway.mail import PermanentMailError, TemporaryMailError, send_mail
from gateway.models import Job, Member, Team
from gateway.portal import accounts, i18n
from gateway.portal.roles import PORTAL_STORE
from gateway.portal.settings import PortalSettings
from gateway.portal.storage import (
    INVITE_FAILED,
    INVITE_QUEUED,
    INVITE_SENT,
    Invitation,
    PortalStore,
)
from gateway.retry import Retry, backoff

log = logging.getLogger("gateway.portal.invites")

JOB_KIND = "portal_invite"
# A relay that is down: tried again after 5 s, 20 s, 80 s … at most an hour.
RETRY_FIRST, RETRY_FACTOR, RETRY_MAX = 5.0, 4.0, 3600.0


def invitation_mail(
    settings: PortalSettings,
    sender: str,
    member: Member,
    team: Team,
    inviter: str,
    link: str,
    message_id: str,
) -> EmailMessage:
    """The invitation to ``member``, in the language in use (see ``i18n.language``)."""
    msg = EmailMessage()
    msg["To"] = member.email
    msg["Subject"] = i18n._("Your invitation to the {team} inbox").format(team=team.name)
    domain = sender.rpartition("@")[2] or "localhost"
    msg["Message-ID"] = f"<{message_id}@{domain}>"
    hours = int(settings.invite_hours)
    body = i18n._(
        "Hello {name},\n\n{inviter} invites you to the {team} inbox, where you read and "
        "answer SMS, WhatsApp and fax.\n\nChoose your password here (the link works once "
        "and for {hours} hours):\n\n{link}\n"
    ).format(name=member.name, inviter=inviter, team=team.name, hours=hours, link=link)
    msg.set_content(body)
    return msg


async def queue_invitation(
    host: Host, store: PortalStore, member: Member, inviter: str, lang: str
) -> Invitation:
    """Queue an invitation mail to ``member`` from ``inviter`` (in ``lang``): recorded on
    the account as queued, then its job written. A ``ValidationError`` when no relay is
    configured (nothing is queued: nothing could send it)."""
    if host.settings.smtp is None:
        raise ValidationError(
            i18n._("No mail relay is configured ([smtp]): invitations cannot be sent."),
            code="smtp_not_configured",
        )
    now = host.clock.now()
    payload = {"member_id": member.id, "inviter": inviter, "lang": lang}
    job = Job(
        new_id("job"), JOB_KIND, payload, now, host.settings.job_max_attempts, created_at=now
    )
    # The account first: a job that runs before it was recorded would find a stranger's
    # invitation there and send nothing.
    invitation = Invitation(INVITE_QUEUED, job.id, now)
    if not await store.set_invitation(member.id, invitation):
        raise ValidationError(i18n._("{name} has no portal account.").format(name=member.name))
    await host.store.enqueue(job)
    host.wake_workers()
    return invitation


async def invitation_job(host: Host, job: Job) -> None:
    """Mail one invitation (job kind ``portal_invite``; see the module docstring)."""
    store = host.role(PORTAL_STORE)
    settings = host.settings.extension("portal", PortalSettings)
    member_id = str(job.payload["member_id"])
    now = host.clock.now()

    async def record(state: str, reason: str | None = None) -> None:
        invitation = Invitation(state, job.id, now, reason, job.attempts)
        await store.set_invitation(member_id, invitation, if_job=job.id)

    account = await store.get_account(member_id)
    if account is None or account.invitation is None or account.invitation.job != job.id:
        log.info("invitation job %s: superseded by a newer invitation; not sent", job.id)
        return
    member = await host.store.get_member(member_id)
    team = await host.store.get_team(member.team_id) if member is not None else None
    smtp = host.settings.smtp
    if member is None or team is None or smtp is None:
        why = "no SMTP relay configured ([smtp])" if smtp is None else "the member is gone"
        log.warning("invitation job %s for %s: %s; not sent", job.id, member_id, why)
        await record(INVITE_FAILED, why)
        return
    token = await accounts.invite(store, settings, member.id, now)
    link = f"{host.settings.public_url.rstrip('/')}/invite/{token}"
    with i18n.language(str(job.payload.get("lang") or i18n.DEFAULT)):
        mail = invitation_mail(
            settings,
            smtp.sender,
            member,
            team,
            str(job.payload.get("inviter") or ""),
            link,
            f"portal-invite.{job.id}",
        )
    try:
        await send_mail(smtp, mail)
    except TemporaryMailError as exc:
        # Its link was never mailed: drop it (using it up is how an invitation goes).
        await store.take_invite(accounts.token_hash(token), now)
        if job.attempts >= job.max_attempts:
            log.warning("invitation job %s: gave up after %d tries: %s", job.id, job.attempts,
                        exc.message)  # fmt: skip
            await record(INVITE_FAILED, exc.message)
            return
        delay = backoff(job.attempts, base=RETRY_FIRST, cap=RETRY_MAX, factor=RETRY_FACTOR)
        log.info("invitation job %s: %s; next try in %.0f s", job.id, exc.message, delay)
        await record(INVITE_QUEUED, exc.message)
        raise Retry(now + timedelta(seconds=delay), exc.message) from exc
    except PermanentMailError as exc:
        await store.take_invite(accounts.token_hash(token), now)
        log.warning("invitation job %s: the relay refused it: %s", job.id, exc.message)
        await record(INVITE_FAILED, exc.message)
        return
    await record(INVITE_SENT)
