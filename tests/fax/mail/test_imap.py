"""Email-to-fax from a mailbox: Dovecot (Debian) on a free loopback port, polled with
IMAP IDLE by ``fax.mail.imap``; processed mails moved to the folder."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fax.mail import imap, intake
from fax.mail.settings import FaxMailSettings, parse_imap
from gateway.runtime import Runtime
from tests.fax import samples
from tests.fax.mail.dovecot import Dovecot
from tests.fax.mail.test_receiver import ANNA, DOMAIN, configure, faxes, mail, run_all
from tests.gateway.conftest import Seed
from tests.gateway.test_forwarding import use_relay
from tests.gateway.test_mail import SmtpServer

pytestmark = pytest.mark.anyio
WAIT = 30.0  # bound on every wait for the poller


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    # Not under pytest's tmp_path: dovecot's mail user must be able to reach the maildirs.
    root = Path(tempfile.mkdtemp(prefix="dovecot-"))
    os.chmod(root, 0o755)
    server = Dovecot(root).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


async def until(check: object, what: str) -> None:
    """Wait (bounded) until ``check()`` is true."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while not await asyncio.to_thread(check):  # type: ignore[arg-type]
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def raw(email: object) -> bytes:
    data = bytes(email)  # type: ignore[call-overload]
    return b"Return-Path: <" + ANNA.encode() + b">\r\n" + data


async def test_mailbox_is_polled_with_idle_and_mails_moved(
    dovecot: Dovecot, rt: Runtime, seed: Seed, smtp_server: SmtpServer
) -> None:
    use_relay(rt, smtp_server.port)
    url = f"imap://{dovecot.user}:{dovecot.password}@127.0.0.1:{dovecot.port}/INBOX"
    settings = FaxMailSettings(domain=DOMAIN, subject="FAX", imap=parse_imap(url),
                               imap_folder="Processed")  # fmt: skip
    configure(rt, settings)
    first = mail(pdf=samples.pdf(1))
    dovecot.append(raw(first))
    stranger = mail(sender="eve@evil.example", pdf=samples.pdf(1))
    del stranger["Message-ID"]
    stranger["Message-ID"] = "<m2@evil.example>"
    dovecot.append(b"Return-Path: <eve@evil.example>\r\n" + bytes(stranger))
    wrong = mail(subject="Hello", pdf=samples.pdf(1))
    del wrong["Message-ID"]
    wrong["Message-ID"] = "<m4@example.com>"
    dovecot.append(raw(wrong))
    stop = asyncio.Event()
    poller = asyncio.create_task(imap.poll(rt, settings, stop))
    try:
        await until(lambda: dovecot.count("Processed") == 3, "the first three mails moved")
        jobs = await rt.store.list_jobs("ready", None, 10)
        # The stranger's mail was refused silently, Anna's without the subject with a
        # mail saying why.
        assert sorted(j.kind for j in jobs) == [intake.JOB_KIND, imap.REFUSAL_KIND]
        [accepted] = [j for j in jobs if j.kind == intake.JOB_KIND]
        assert accepted.payload["source"] == "imap" and accepted.payload["sender"] == ANNA
        # A mail arriving while the poller waits in IDLE is taken at once.
        later = mail(to=f"4930999999@{DOMAIN}", pdf=samples.pdf(2))
        del later["Message-ID"]
        later["Message-ID"] = "<m3@example.com>"
        dovecot.append(raw(later))
        await until(lambda: dovecot.count("Processed") == 4, "the IDLE mail moved")
        assert dovecot.count("INBOX") == 0
    finally:
        stop.set()
        await asyncio.wait_for(poller, WAIT)
    await run_all(rt)
    sent = await faxes(rt, seed)
    assert sorted(m.to for m in sent) == ["+4930999999", "+4940123456"]
    assert all(m.status == "sent" for m in sent)
    refusals = [r for r in smtp_server.received if str(r.message["Subject"]).endswith("refused")]
    [refusal] = refusals
    assert refusal.rcpt_tos == [ANNA]
    body = refusal.message.get_body(preferencelist=("plain",))
    assert body is not None and "the subject must be 'FAX'" in body.get_content()


async def test_the_same_mail_in_the_mailbox_twice_is_sent_once(
    dovecot: Dovecot, rt: Runtime, seed: Seed
) -> None:
    url = f"imap://{dovecot.user}:{dovecot.password}@127.0.0.1:{dovecot.port}"
    settings = dataclasses.replace(FaxMailSettings(domain=DOMAIN), imap=parse_imap(url))
    configure(rt, settings)
    email = mail(pdf=samples.pdf(1))
    dovecot.append(raw(email))
    dovecot.append(raw(email))
    stop = asyncio.Event()
    poller = asyncio.create_task(imap.poll(rt, settings, stop))
    try:
        await until(lambda: dovecot.count("Processed") == 2, "both copies moved")
    finally:
        stop.set()
        await asyncio.wait_for(poller, WAIT)
    await run_all(rt)
    [fax] = await faxes(rt, seed)
    assert fax.status == "sent"
