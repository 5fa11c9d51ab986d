"""Who may send a fax by email: a member's registered address, or an address on that
member's fax-mail allowlist (e.g. a scanner's or an assistant's).

The allowlists are settings documents beside the member's other settings:
``fax_mail_allow:{member_id}`` = ``{"addresses": [...]}``, and one index
``fax_mail_allow`` = ``{address: member_id}`` so that a sender is found with one read.
An address belongs to at most one member. ``gateway admin member fax-mail-allow``,
``…-deny`` and ``…-list`` manage them.
"""

from __future__ import annotations

import argparse
from typing import Any

from gateway import mail
from gateway.errors import Conflict, NotFound, ValidationError
from gateway.extensions import AdminCommand, Host
from gateway.models import Member

INDEX = "fax_mail_allow"


def scope(member_id: str) -> str:
    """The settings scope of a member's allowlist."""
    return f"{INDEX}:{member_id}"


def _address(text: str) -> str:
    try:
        return mail.parse_address(text).lower()
    except ValueError as exc:
        raise ValidationError(str(exc), field="address") from None


async def allowed(host: Host, member_id: str) -> list[str]:
    """The addresses on a member's allowlist."""
    doc = await host.store.get_setting(scope(member_id)) or {}
    return [str(a) for a in doc.get("addresses", [])]


async def allow(host: Host, member_id: str, address: str) -> list[str]:
    """Put ``address`` on the member's allowlist; its list after."""
    address = _address(address)
    member = await host.store.get_member(member_id)
    if member is None:
        raise NotFound(f"member {member_id} not found")
    index = await host.store.get_setting(INDEX) or {}
    owner = index.get(address)
    if owner not in (None, member_id):
        raise Conflict(f"{address} is already on the fax-mail allowlist of member {owner}")
    addresses = await allowed(host, member_id)
    if address not in addresses:
        addresses.append(address)
    await host.store.put_setting(scope(member_id), {"addresses": addresses})
    index[address] = member_id
    await host.store.put_setting(INDEX, index)
    return addresses


async def deny(host: Host, member_id: str, address: str) -> list[str]:
    """Take ``address`` off the member's allowlist; its list after."""
    address = _address(address)
    addresses = [a for a in await allowed(host, member_id) if a != address]
    await host.store.put_setting(scope(member_id), {"addresses": addresses})
    index = await host.store.get_setting(INDEX) or {}
    if index.get(address) == member_id:
        del index[address]
        await host.store.put_setting(INDEX, index)
    return addresses


async def member_for(host: Host, sender: str) -> Member | None:
    """The active member who may send faxes from the envelope sender ``sender``."""
    address = sender.strip().lower()
    if not address:
        return None
    index = await host.store.get_setting(INDEX) or {}
    member_id = index.get(address)
    if member_id is not None:
        member = await host.store.get_member(str(member_id))
        if member is not None and member.active:
            return member
    for team in await host.store.list_teams():
        for member in await host.store.list_members(team.id):
            if member.active and member.email.strip().lower() == address:
                return member
    return None


# -- gateway admin member fax-mail-allow | fax-mail-deny | fax-mail-list --------------------
def _member_and_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("member_id")
    parser.add_argument("address")


def _member_only(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("member_id")


def _answer(member_id: str, addresses: list[str]) -> tuple[dict[str, Any], str]:
    text = "\n".join(addresses) if addresses else "(no addresses)"
    return {"member_id": member_id, "addresses": addresses}, text


async def _allow(host: Host, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    return _answer(args.member_id, await allow(host, args.member_id, args.address))


async def _deny(host: Host, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    return _answer(args.member_id, await deny(host, args.member_id, args.address))


async def _list(host: Host, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    return _answer(args.member_id, await allowed(host, args.member_id))


ADMIN_COMMANDS = (
    AdminCommand("member", "fax-mail-allow",
                 "let ADDRESS send faxes by email as the member", _member_and_address, _allow),
    AdminCommand("member", "fax-mail-deny",
                 "take ADDRESS off the member's fax-mail allowlist", _member_and_address, _deny),
    AdminCommand("member", "fax-mail-list",
                 "the member's fax-mail allowlist", _member_only, _list),
)  # fmt: skip
