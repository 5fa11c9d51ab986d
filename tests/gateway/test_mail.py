"""Mail through a real SMTP server (aiosmtpd on a free loopback port): plain, STARTTLS,
implicit TLS and AUTH with trustme certificates, and every failure mapped to temporary or
permanent."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from gateway.config import SmtpConfig
from gateway.mail import (
    PermanentMailError,
    TemporaryMailError,
    parse_address,
    send_mail,
    tls_options,
)
from tests.conftest import free_port

pytestmark = pytest.mark.anyio


@dataclass
class Received:
    """One mail the test server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    login: str | None


@dataclass
class Recorder:
    """The aiosmtpd handler: records mail; answers can be programmed per recipient."""

    received: list[Received] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    data_reply: str | None = None

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        """Refuse the recipients the test programmed, take the others."""
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        """Record the mail (or answer the programmed refusal)."""
        if self.data_reply:
            return self.data_reply
        raw = envelope.content.replace(b"\r\n", b"\n")  # the wire's CRLF, as Python writes it
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        login = session.auth_data.login.decode() if session.auth_data else None
        # STARTTLS sets session.ssl; with implicit TLS the transport itself is TLS.
        tls = bool(session.ssl) or server.transport.get_extra_info("ssl_object") is not None
        self.received.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), message, tls, login)
        )
        return "250 2.0.0 queued as T1"


class SmtpServer:
    """aiosmtpd on 127.0.0.1 and an explicit free port (port 0 fails its self-check)."""

    def __init__(
        self,
        port: int | None = None,
        *,
        starttls: ssl.SSLContext | None = None,
        implicit: ssl.SSLContext | None = None,
        password: str | None = None,
    ) -> None:
        self.port = port or free_port()
        self.handler = Recorder()
        self.password = password
        kwargs: dict[str, Any] = {}
        if starttls is not None:
            kwargs.update(tls_context=starttls, require_starttls=True)
        if implicit is not None:
            kwargs.update(ssl_context=implicit)
        if password is not None:
            kwargs.update(authenticator=self._auth, auth_required=True)
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    def _auth(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.password.decode() == self.password
        # handled=False: aiosmtpd answers 535 itself when the check fails.
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    @property
    def received(self) -> list[Received]:
        """The mail accepted so far."""
        return self.handler.received

    def start(self) -> SmtpServer:
        """Listen (returns when the server answers)."""
        self.controller.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        self.controller.stop()


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls(ca: trustme.CA) -> ssl.SSLContext:
    """The test server's TLS context: a certificate for 127.0.0.1 and localhost."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    """A client context that trusts the throwaway CA (and verifies names)."""
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain SMTP server."""
    server = SmtpServer().start()
    try:
        yield server
    finally:
        server.stop()


def config(server: SmtpServer, **kw: Any) -> SmtpConfig:
    """The relay configuration pointing at ``server``."""
    values: dict[str, Any] = {"host": "127.0.0.1", "port": server.port, "starttls": False}
    values.update(kw)
    return SmtpConfig(**values)


def mail(to: str = "anna@example.com", subject: str = "Hallo") -> EmailMessage:
    """A small message."""
    msg = EmailMessage()
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content("Grüße aus dem Test\n")
    return msg


# -- addresses ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a@example.com", "a@example.com"),
        ("  Anna.Schmidt+fwd@Example.COM ", "Anna.Schmidt+fwd@example.com"),
        ('"a b"@example.com', '"a b"@example.com'),
        ("a@müller.de", "a@xn--mller-kva.de"),
    ],
)
def test_addresses_are_normalized(text: str, expected: str) -> None:
    """Bare addresses; the domain lower-cased and in ASCII."""
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("foo", "not an email address"),
        ("Anna <a@example.com>", "not an email address"),
        ("a@", "not an email address"),
        ("@example.com", "not an email address"),
        ("a b@example.com", "not an email address"),
        ("a@@example.com", "not an email address"),
        ("a@localhost", "not a host name"),
        ("a@[127.0.0.1]", "not a host name"),
        ("a@-x.de", "not a host name"),
        ("jürgen@example.com", "non-ASCII"),
        ("a@example.com\nBcc: x@evil.example", "not an email address"),
        ("x" * 65 + "@example.com", "longer than 64"),
        ("a@" + "b" * 250 + ".de", "longer than 254"),
    ],
)
def test_bad_addresses_say_why(text: str, why: str) -> None:
    """Refused with a reason."""
    with pytest.raises(ValueError, match="not an email address") as info:
        parse_address(text)
    assert why in str(info.value)


# -- delivery ----------------------------------------------------------------------------
async def test_plain_delivery(smtp_server: SmtpServer) -> None:
    """The relay gets the mail; From defaults to [smtp] from and is the envelope sender."""
    delivery = await send_mail(config(smtp_server, sender="gw@acme.example"), mail())
    assert "queued as T1" in delivery.response and delivery.refused == {}
    [got] = smtp_server.received
    assert got.mail_from == "gw@acme.example" and got.rcpt_tos == ["anna@example.com"]
    assert got.message["Subject"] == "Hallo" and got.message["From"] == "gw@acme.example"
    assert got.message.get_content() == "Grüße aus dem Test\n"
    assert not got.tls


async def test_starttls_with_a_verified_certificate(
    server_tls: ssl.SSLContext, client_tls: ssl.SSLContext
) -> None:
    """STARTTLS against a server that requires it, the certificate checked by name."""
    server = SmtpServer(starttls=server_tls).start()
    try:
        await send_mail(config(server, starttls=True), mail(), tls_context=client_tls)
        [got] = server.received
        assert got.tls
    finally:
        server.stop()


async def test_untrusted_certificate_is_not_sent_and_is_temporary(
    server_tls: ssl.SSLContext,
) -> None:
    """The system trust store does not know the test CA: nothing goes out, retry later."""
    server = SmtpServer(starttls=server_tls).start()
    try:
        with pytest.raises(TemporaryMailError, match="CERTIFICATE_VERIFY_FAILED"):
            await send_mail(config(server, starttls=True), mail())
        assert server.received == []
    finally:
        server.stop()


async def test_starttls_required_but_not_offered(smtp_server: SmtpServer) -> None:
    """starttls = true never falls back to plain text."""
    with pytest.raises(TemporaryMailError, match="STARTTLS"):
        await send_mail(config(smtp_server, starttls=True), mail())
    assert smtp_server.received == []


async def test_implicit_tls(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    """SMTPS: TLS from the first byte (what port 465 means)."""
    server = SmtpServer(implicit=server_tls).start()
    try:
        cfg = config(server, starttls=True)  # ignored with implicit TLS
        await send_mail(cfg, mail(), tls_context=client_tls, implicit_tls=True)
        [got] = server.received
        assert got.tls
    finally:
        server.stop()


def test_tls_follows_the_configuration() -> None:
    """Port 465 is implicit TLS; otherwise starttls = true requires the upgrade."""
    assert tls_options(SmtpConfig("relay.example", 465)) == (True, False)
    assert tls_options(SmtpConfig("relay.example", 465, starttls=False)) == (True, False)
    assert tls_options(SmtpConfig("relay.example", 587)) == (False, True)
    assert tls_options(SmtpConfig("relay.example", 25, starttls=False)) == (False, False)
    assert tls_options(SmtpConfig("relay.example", 2465), implicit_tls=True) == (True, False)


async def test_auth_over_starttls(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    """Username and password after STARTTLS; wrong credentials wait for the operator."""
    server = SmtpServer(starttls=server_tls, password="s3cret").start()
    try:
        good = config(server, starttls=True, username="gw", password="s3cret")
        await send_mail(good, mail(), tls_context=client_tls)
        assert [r.login for r in server.received] == ["gw"]
        bad = config(server, starttls=True, username="gw", password="wrong")
        with pytest.raises(TemporaryMailError, match="credentials") as info:
            await send_mail(bad, mail(), tls_context=client_tls)
        assert info.value.smtp_code == 535
        # Without credentials the relay refuses the sender: configuration, so temporary.
        anonymous = config(server, starttls=True)
        with pytest.raises(TemporaryMailError, match="refused the sender") as refused:
            await send_mail(anonymous, mail(), tls_context=client_tls)
        assert refused.value.smtp_code == 530
        assert len(server.received) == 1
    finally:
        server.stop()


# -- failures ----------------------------------------------------------------------------
async def test_relay_down_is_temporary() -> None:
    """Nothing listens: a temporary error that names the relay."""
    port = free_port()
    cfg = SmtpConfig(host="127.0.0.1", port=port, starttls=False)
    with pytest.raises(TemporaryMailError, match=f"127.0.0.1:{port}") as info:
        await send_mail(cfg, mail())
    assert info.value.retryable and info.value.smtp_code is None


async def test_5xx_is_permanent_and_4xx_temporary(smtp_server: SmtpServer) -> None:
    """The relay's code decides; the refused recipient is named."""
    cfg = config(smtp_server)
    smtp_server.handler.rcpt_replies = {
        "gone@example.com": "550 5.1.1 no such user",
        "full@example.com": "452 4.2.2 mailbox full",
    }
    with pytest.raises(PermanentMailError, match="no such user") as perm:
        await send_mail(cfg, mail("gone@example.com"))
    assert (perm.value.smtp_code, perm.value.recipient) == (550, "gone@example.com")
    assert not perm.value.retryable
    with pytest.raises(TemporaryMailError, match="mailbox full") as temp:
        await send_mail(cfg, mail("full@example.com"))
    assert temp.value.smtp_code == 452
    smtp_server.handler.data_reply = "554 5.7.1 message refused as spam"
    with pytest.raises(PermanentMailError, match="spam") as data:
        await send_mail(cfg, mail())
    assert data.value.smtp_code == 554
    smtp_server.handler.data_reply = "451 4.3.0 try again later"
    with pytest.raises(TemporaryMailError, match="try again") as later:
        await send_mail(cfg, mail())
    assert later.value.smtp_code == 451
    assert smtp_server.received == []


async def test_some_recipients_refused(smtp_server: SmtpServer) -> None:
    """With several recipients the mail goes to those taken; the others are reported."""
    smtp_server.handler.rcpt_replies = {"gone@example.com": "550 5.1.1 no such user"}
    delivery = await send_mail(config(smtp_server), mail("a@example.com, gone@example.com"))
    assert delivery.refused == {"gone@example.com": (550, "5.1.1 no such user")}
    [got] = smtp_server.received
    assert got.rcpt_tos == ["a@example.com"]
