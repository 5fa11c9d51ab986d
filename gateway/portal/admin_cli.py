"""The portal's ``gateway admin`` command and its part of ``gateway demo``.

``gateway admin member set-password MEMBER_ID [--role admin|member] [--password-stdin]``
gives a member a portal account (if they have none) and a password; every session the
member had ends. Without ``--password-stdin`` the password is asked for twice on the
terminal.
"""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys
from collections.abc import Sequence
from typing import Any

from gateway.errors import NotFound, ValidationError
from gateway.extensions import AdminCommand, Host
from gateway.models import Member
from gateway.portal import accounts
from gateway.portal.roles import PORTAL_STORE
from gateway.portal.storage import ROLE_ADMIN, ROLE_MEMBER, ROLES, Account


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("member", metavar="MEMBER_ID")
    parser.add_argument(
        "--role", choices=ROLES, help="also set the member's portal role (a new account: member)"
    )
    parser.add_argument(
        "--password-stdin",
        action="store_true",
        help="read the password from the first line of standard input",
    )


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():
        raise ValidationError("no terminal to ask for the password: use --password-stdin")
    first = getpass.getpass("New password: ")
    if getpass.getpass("The same again: ") != first:
        raise ValidationError("the two passwords differ")
    return first


async def set_password(
    rt: Host, member_id: str, password: str, role: str | None = None
) -> tuple[Account, int]:
    """Give ``member_id`` a portal account (if needed) and ``password``; returns the
    account and how many sessions ended."""
    member = await rt.store.get_member(member_id)
    if member is None:
        raise NotFound(f"member {member_id} does not exist")
    hashed = await accounts.hash_password(password)
    portal = rt.role(PORTAL_STORE)
    account = await portal.get_account(member.id)
    now = rt.clock.now()
    if account is None:
        account = Account(member.id, member.team_id, member.email, role or ROLE_MEMBER, now)
        await portal.put_account(account)
    elif role is not None and role != account.role:
        await portal.set_role(member.id, role)
        account.role = role
    ended = await portal.end_sessions(member.id)
    await portal.set_password(member.id, hashed, now)
    return account, ended


async def _run_set_password(rt: Host, args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    password = _read_password(args.password_stdin)
    account, ended = await set_password(rt, args.member, password, args.role)
    view = {
        "member_id": account.member_id,
        "email": account.email,
        "role": account.role,
        "sessions_ended": ended,
    }
    text = f"portal password set for {account.email} ({account.role}); {ended} session(s) ended"
    return view, text


SET_PASSWORD = AdminCommand(
    object="member",
    action="set-password",
    help="set a member's portal password (creating the portal account if needed)",
    arguments=_arguments,
    run=_run_set_password,
)


async def demo(rt: Host, members: Sequence[Member]) -> str:
    """Passwords for the demo members (the first one the team's admin); the banner."""
    lines = ["  Portal       " + rt.settings.public_url + "/   (sign in with one of these)"]
    for i, member in enumerate(members):
        password = "demo-" + secrets.token_urlsafe(8)
        await set_password(rt, member.id, password, ROLE_ADMIN if i == 0 else ROLE_MEMBER)
        role = " (team admin)" if i == 0 else ""
        lines.append(f"    {member.email:<28} {password}{role}")
    return "\n".join(lines) + "\n"
