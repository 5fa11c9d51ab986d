"""The mails' words: status mails (failed with the next try), and how
``Authentication-Results`` and recipients are read."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from fax.mail import intake, outgoing
from fax.mail.imap import envelope_of
from fax.mail.settings import FaxMailSettings
from gateway.ids import new_id
from gateway.models import Message
from gateway.runtime import Runtime
from tests.gateway.conftest import FAX_A, Seed

pytestmark = pytest.mark.anyio


async def test_failed_mail_says_why_and_when_next(rt: Runtime, seed: Seed) -> None:
    now = rt.clock.now()
    msg = Message(
        id=new_id("msg"), team_id=seed.team.id, member_id=seed.anna.id,
        conversation_id="conv", channel="fax", direction="outbound", from_=FAX_A,
        to="+4940123456", text=None, attachments=[], status="failed", units=1,
        segments=1, encoding=None, created_at=now, updated_at=now,
        error={"code": "unreachable", "message": "the line was busy"},
        meta={"fax": {"pages": 2, "next_try": "2026-03-15T12:05:00+00:00"}},
    )  # fmt: skip
    email = outgoing.status_email(rt, msg, "failed", "anna@example.com", "gw@acme.example")
    body = email.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert str(email["Subject"]) == "Fax to +4940123456 failed"
    assert "could not be sent: the line was busy." in text
    assert "Next try: 2026-03-15 13:05 (Europe/Berlin)." in text  # in the gateway's zone
    del msg.meta["fax"]["next_try"]
    again = outgoing.status_email(rt, msg, "failed", "anna@example.com", "gw@acme.example")
    assert "It will not be tried again." in str(again.get_body().get_content())  # type: ignore[union-attr]


def _with(*headers: str) -> EmailMessage:
    email = EmailMessage()
    for header in headers:
        email["Authentication-Results"] = header
    return email


def test_authentication_results() -> None:
    sender = "scanner@office.example"
    assert intake.authenticated(_with("mx; dkim=pass header.d=office.example"), sender)
    assert intake.authenticated(_with("mx; spf=pass smtp.mailfrom=office.example"), sender)
    assert intake.authenticated(_with("mx; spf=none", "mx2; dkim=pass header.i=@office.example"),
                                sender)  # fmt: skip
    assert not intake.authenticated(_with("mx; spf=fail smtp.mailfrom=office.example"), sender)
    assert not intake.authenticated(_with("mx; dkim=pass header.d=evil.example"), sender)
    assert not intake.authenticated(_with("mx; dkim=pass header.d=example"), "a@notexample")
    # DKIM says nothing about smtp.mailfrom: only a signature's domain counts for it.
    assert not intake.authenticated(_with("mx; dkim=pass smtp.mailfrom=office.example"), sender)
    assert not intake.authenticated(EmailMessage(), sender)


def test_mailbox_envelope() -> None:
    email = EmailMessage()
    email["Return-Path"] = "<anna@example.com>"
    email["From"] = "Anna <other@example.com>"
    email["Delivered-To"] = "4940123456@fax.example.com"
    email["To"] = "Büro <4940123456@FAX.example.com>, 0301234567@fax.example.com, x@y.example"
    sender, rcpts = envelope_of(email, "fax.example.com")
    assert sender == "anna@example.com"
    assert rcpts == ["4940123456@fax.example.com", "0301234567@fax.example.com"]
    assert FaxMailSettings().domain is None
