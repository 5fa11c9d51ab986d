"""Invitation mails: a one-time link to choose a password, through the ``[smtp]`` relay."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

from gateway.errors import ValidationError
from gateway.mail import MailError, send_mail
from gateway.models import Member, Team
from gateway.portal import accounts, i18n
from gateway.portal.web import Portal


def invitation_mail(
    portal: Portal, member: Member, team: Team, inviter: str, link: str
) -> EmailMessage:
    """The invitation to ``member`` (in the request's language)."""
    msg = EmailMessage()
    msg["To"] = member.email
    msg["Subject"] = i18n._("Your invitation to the {team} inbox").format(team=team.name)
    smtp = portal.rt.settings.smtp
    domain = smtp.sender.rpartition("@")[2] if smtp is not None else "localhost"
    msg["Message-ID"] = make_msgid(domain=domain or "localhost")
    hours = int(portal.settings.invite_hours)
    body = i18n._(
        "Hello {name},\n\n{inviter} invites you to the {team} inbox, where you read and "
        "answer SMS, WhatsApp and fax.\n\nChoose your password here (the link works once "
        "and for {hours} hours):\n\n{link}\n"
    ).format(name=member.name, inviter=inviter, team=team.name, hours=hours, link=link)
    msg.set_content(body)
    return msg


async def send_invitation(portal: Portal, member: Member, team: Team, inviter: str) -> None:
    """Make a one-time link for ``member`` and mail it; a ``ValidationError`` saying why
    when no relay is configured or the relay refuses."""
    smtp = portal.rt.settings.smtp
    if smtp is None:
        raise ValidationError(
            i18n._("No mail relay is configured ([smtp]): invitations cannot be sent."),
            code="smtp_not_configured",
        )
    token = await accounts.invite(portal.store, portal.settings, member.id, portal.rt.clock.now())
    link = f"{portal.rt.settings.public_url.rstrip('/')}/invite/{token}"
    try:
        await send_mail(smtp, invitation_mail(portal, member, team, inviter, link))
    except MailError as exc:
        raise ValidationError(
            i18n._("The mail relay did not take the invitation: {reason}").format(
                reason=exc.message
            ),
            code="mail_failed",
        ) from None
