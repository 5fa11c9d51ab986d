"""Outbound rules that decide whether a member may send: sender ownership and add-ons.

Destination controls (country allowlist, prefix blocklist, flood and rate limits) belong
here too and arrive with the SMS issue.
"""

from __future__ import annotations

from gateway.directory import Directory
from gateway.errors import Forbidden
from gateway.models import Channel, Member, addon_allows


async def sender_member(
    directory: Directory, team_id: str, member_id: str | None, channel: Channel, sender: str
) -> Member:
    """The member who may send from ``sender`` on ``channel``, or ``sender_not_owned``.

    A member key may only use its own member's numbers; a team key any member's of the
    team. The mobile number carries SMS and WhatsApp, the fax number fax.
    """
    member = await (
        directory.member(member_id) if member_id else directory.member_by_number(sender)
    )
    if member is None or member.team_id != team_id or member.number_for(channel) != sender:
        raise Forbidden(
            f"{sender} is not a {channel.value} number of "
            + ("this member" if member_id else "a member of this team"),
            code="sender_not_owned",
        )
    if not member.active:
        raise Forbidden(f"member {member.id} is not active", code="member_inactive")
    return member


def require_addon(member: Member, channel: Channel) -> None:
    """Refuse with ``addon_missing`` unless the member booked ``channel``."""
    if not addon_allows(member.addons, channel):
        needs = "sms or whatsapp" if channel == Channel.SMS else channel.value
        raise Forbidden(
            f"member {member.id} has not booked the {channel.value} add-on (needs: {needs})",
            code="addon_missing",
        )
