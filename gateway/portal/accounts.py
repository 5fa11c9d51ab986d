"""Sign-in: Argon2id passwords, server-side sessions, throttling, invitations.

A session's cookie holds a random secret; the store keeps only its SHA-256, so a leaked
database signs nobody in. Sessions rotate at sign-in (the browser's previous one ends),
end after ``session_idle_hours`` without use and ``session_days`` in any case, and end at
once when the member's password changes or the member is deactivated.

Failed sign-ins are counted per account (its email) and per client address over a
sliding window; past either limit, sign-in is refused until the oldest failure leaves
the window, also with the right password. Unknown emails cost the same hashing time as
known ones, so timing does not tell which accounts exist.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from gateway.errors import ValidationError
from gateway.models import Member, Team
from gateway.portal.settings import PortalSettings
from gateway.portal.storage import Account, PortalStore, Session

MIN_PASSWORD = 10
MAX_PASSWORD = 256
TOUCH_EVERY = timedelta(minutes=5)  # how often activity is written back
# How sign-in finds an account's member (the directory's cached read).
MemberLookup = Callable[[str], Awaitable[Member | None]]
_hasher = PasswordHasher()  # Argon2id, RFC 9106 low-memory profile (argon2-cffi's default)
# Verified when the email is unknown, so that a miss costs as long as a wrong password.
_DUMMY = _hasher.hash(secrets.token_urlsafe(16))


def token_hash(token: str) -> str:
    """What the store keeps of a session or invitation token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A new random token for a cookie or a link (256 bits)."""
    return secrets.token_urlsafe(32)


def check_password(password: str) -> str:
    """``password`` if it is acceptable, else a ``ValidationError`` saying why."""
    if len(password) < MIN_PASSWORD:
        raise ValidationError(
            f"the password must have at least {MIN_PASSWORD} characters", field="password"
        )
    if len(password) > MAX_PASSWORD:
        raise ValidationError(
            f"the password must have at most {MAX_PASSWORD} characters", field="password"
        )
    return password


async def hash_password(password: str) -> str:
    """The Argon2id hash of ``password`` (computed off the event loop)."""
    return await asyncio.to_thread(_hasher.hash, check_password(password))


async def _verify(stored: str | None, password: str) -> bool:
    def run() -> bool:
        try:
            return _hasher.verify(stored or _DUMMY, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(run)


@dataclass(slots=True, frozen=True)
class Viewer:
    """The signed-in member of a request."""

    session: Session
    account: Account
    member: Member
    team: Team

    @property
    def is_admin(self) -> bool:
        """Whether the member administers the team."""
        return self.account.role == "admin"


class SignInRefused(Exception):
    """Sign-in refused: ``throttled`` (with ``retry_after`` seconds) or wrong credentials."""

    def __init__(self, throttled: bool = False, retry_after: int = 0) -> None:
        super().__init__("throttled" if throttled else "invalid")
        self.throttled = throttled
        self.retry_after = retry_after


def _keys(email: str, address: str) -> tuple[str, str]:
    return f"acct:{email.strip().casefold()}", f"addr:{address}"


async def _throttled(
    portal: PortalStore, settings: PortalSettings, keys: tuple[str, str], now: datetime
) -> int:
    """Seconds until another attempt is allowed (0: allowed now)."""
    window = settings.signin_window_minutes * 60
    counts = await portal.failures(keys, now, window)
    wait = 0
    for key, limit in zip(
        keys, (settings.signin_account_limit, settings.signin_address_limit), strict=True
    ):
        count, oldest = counts[key]
        if count >= limit and oldest is not None:
            left = (oldest + timedelta(seconds=window) - now).total_seconds()
            wait = max(wait, math.ceil(left))
    return wait


async def authenticate(
    portal: PortalStore,
    settings: PortalSettings,
    email: str,
    password: str,
    address: str,
    now: datetime,
    member_of: MemberLookup,
) -> Account:
    """The account ``email`` and ``password`` sign in to, or ``SignInRefused``."""
    keys = _keys(email, address)
    wait = await _throttled(portal, settings, keys, now)
    if wait:
        raise SignInRefused(throttled=True, retry_after=wait)
    account = await portal.account_by_email(email) if email.strip() else None
    ok = await _verify(account.password_hash if account else None, password)
    if ok and account is not None:
        member = await member_of(account.member_id)
        ok = member is not None and member.active
    if not ok or account is None:
        await portal.note_failure(keys, now, settings.signin_window_minutes * 60)
        raise SignInRefused()
    await portal.clear_failures(keys[0])
    if account.password_hash and _hasher.check_needs_rehash(account.password_hash):
        rehashed = await asyncio.to_thread(_hasher.hash, password)
        # Not via set_password: a rehash must not end the member's other sessions.
        account.password_hash = rehashed
        await portal.put_account(account)
    return account


async def start_session(
    portal: PortalStore,
    settings: PortalSettings,
    account: Account,
    now: datetime,
    replaces: str | None,
) -> tuple[Session, str]:
    """A new session for ``account`` (the browser's previous one ends) and its cookie
    secret."""
    token = new_token()
    session = Session(
        token_hash(token),
        account.member_id,
        account.team_id,
        new_token(),
        now,
        now,
        now + timedelta(days=settings.session_days),
    )
    await portal.create_session(session, replaces)
    return session, token


def session_alive(session: Session, settings: PortalSettings, now: datetime) -> bool:
    """Whether ``session`` is still within its idle and absolute limits."""
    idle = timedelta(hours=settings.session_idle_hours)
    return now < session.expires_at and now < session.last_seen_at + idle


async def invite(
    portal: PortalStore, settings: PortalSettings, member_id: str, now: datetime
) -> str:
    """A one-time invitation token for ``member_id`` (valid ``invite_hours``)."""
    token = new_token()
    expires = now + timedelta(hours=settings.invite_hours)
    await portal.create_invite(token_hash(token), member_id, now, expires)
    return token
