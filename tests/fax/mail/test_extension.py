"""The ``fax_mail`` extension: its ``[fax_mail]`` section, its admin commands, STARTTLS on
the receiver, its background service, and its part of ``gateway demo`` (the receiver on
a printed port, the mails it sends kept in the folder the banner names)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import smtplib
import ssl
import time
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
import trustme

import tests.connectors.fake  # noqa: F401  (registers kind "fake")
from fax.mail import receiver
from fax.mail.extension import EXTENSION
from fax.mail.settings import FaxMailSettings, parse
from gateway.cli import main
from gateway.config import ConnectorConfig
from gateway.demo import create_demo, demo_settings, extension_demos
from gateway.errors import ConfigError
from gateway.process import open_runtime, worker
from gateway.runtime import Runtime
from gateway.store.base import MessageFilter
from tests.conftest import free_port
from tests.fax import samples
from tests.fax.mail.test_receiver import ANNA, DOMAIN, configure, mail
from tests.gateway.conftest import Seed

pytestmark = pytest.mark.anyio


def test_settings_are_parsed_and_refused_with_the_key() -> None:
    assert parse(None) == FaxMailSettings()
    s = parse({
        "domain": "Fax.Example.com", "listen": "127.0.0.1:2525", "subject": "FAX",
        "max_message_bytes": 5_000_000, "trust_authentication_results": True,
        "imap_url": "imaps://fax%40example.com:p%40ss@imap.example.com/Fax%20In",
        "imap_folder": "Done",
    })  # fmt: skip
    assert s.domain == "fax.example.com" and s.listen == ("127.0.0.1", 2525)
    assert s.max_message_bytes == 5_000_000 and s.trust_authentication_results
    assert s.imap is not None
    assert (s.imap.host, s.imap.port, s.imap.tls) == ("imap.example.com", 993, True)
    assert (s.imap.user, s.imap.password, s.imap.mailbox) == ("fax@example.com", "p@ss", "Fax In")
    for table, key in [
        ({"listen": "x"}, "domain"),
        ({"domain": "d", "listen": "nohost"}, "listen"),
        ({"domain": "d", "tls_cert": "/c"}, "tls_cert"),
        ({"domain": "d", "max_message_bytes": "big"}, "max_message_bytes"),
        ({"domain": "d", "trust_authentication_results": "yes"}, "trust_authentication_results"),
        ({"domain": "d", "imap_url": "http://x"}, "imap_url"),
        ({"domain": "d", "imap_url": "imap://host/INBOX"}, "imap_url"),
        ({"domain": "d", "colour": 1}, "colour"),
    ]:
        with pytest.raises(ConfigError, match=rf"^fax_mail\.{key}:"):
            parse(table)


def test_admin_commands_manage_the_allowlist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_STORE", f"sqlite:///{tmp_path}/gw.db")
    monkeypatch.setenv("GATEWAY_BLOBS", str(tmp_path / "blobs"))

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    _, out, _ = run("admin", "team", "create", "--name", "Acme", "--json")
    team = json.loads(out)["id"]
    _, out, _ = run("admin", "member", "create", "--team", team, "--name", "Ann", "--email",
                    "ann@example.com", "--fax", "03012345670", "--addons", "fax",
                    "--json")  # fmt: skip
    member = json.loads(out)["id"]
    code, out, err = run("admin", "member", "fax-mail-allow", member, "Scanner@Office.example",
                         "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out) == {"member_id": member, "addresses": ["scanner@office.example"]}
    code, out, _ = run("admin", "member", "fax-mail-list", member)
    assert code == 0 and out.strip() == "scanner@office.example"
    code, out, err = run("admin", "member", "fax-mail-allow", member, "not an address")
    assert code != 0 and "not an email address" in err
    code, out, _ = run("admin", "member", "fax-mail-deny", member, "scanner@office.example",
                       "--json")  # fmt: skip
    assert code == 0 and json.loads(out)["addresses"] == []


async def test_starttls_is_offered_and_used(rt: Runtime, seed: Seed, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "c.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "k.pem"))
    settings = FaxMailSettings(domain=DOMAIN, tls_cert=str(tmp_path / "c.pem"),
                               tls_key=str(tmp_path / "k.pem"))  # fmt: skip
    configure(rt, settings)
    port = free_port()
    server = await receiver.start(rt, settings, listen=("127.0.0.1", port))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    def send() -> bool:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo()
            assert client.has_extn("starttls")
            client.starttls(context=client_ctx)
            client.ehlo()
            client.send_message(mail(pdf=samples.pdf(1)), ANNA, [f"4940123456@{DOMAIN}"])
            return client.sock is not None and isinstance(client.sock, ssl.SSLSocket)

    try:
        assert await asyncio.to_thread(send)
    finally:
        server.close()
        await server.wait_closed()
    assert [j.kind for j in await rt.store.list_jobs("ready", None, 10)] == ["fax_mail_in"]


async def test_demo_runs_the_receiver_and_keeps_the_mails_it_sends(tmp_path: Path) -> None:
    settings = demo_settings(tmp_path, "127.0.0.1", 8080)
    fax = ConnectorConfig("demofax", "fake", frozenset({"fax"}), None, {})
    settings = dataclasses.replace(settings, connectors=(*settings.connectors, fax))
    rt = await open_runtime(settings)
    try:
        info = await create_demo(rt.store, rt.clock, settings)
        await rt.wait_started()
        banner = "\n".join(await extension_demos(rt, info))
        found = re.search(r"SMTP receiver: 127\.0\.0\.1:(\d+)", banner)
        folder = re.search(r"is kept in (\S+)", banner)
        assert found and folder, banner
        port, kept = int(found.group(1)), Path(folder.group(1))
        anna = info.members[0]
        assert anna.fax and anna.email in banner
        stop = asyncio.Event()
        service = asyncio.create_task(EXTENSION.run(rt, stop))  # the background service
        try:
            email = mail(sender=anna.email, to="4940123456@fax.localhost", subject="Fax",
                         pdf=samples.pdf(1))  # fmt: skip

            def send() -> None:
                for _ in range(100):  # the service binds the port as it starts (bounded)
                    try:
                        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
                            client.send_message(email, anna.email, [str(email["To"])])
                            return
                    except ConnectionRefusedError:
                        time.sleep(0.1)
                raise AssertionError("the demo's receiver did not listen")

            await asyncio.to_thread(send)
            w = worker(rt)
            async with asyncio.timeout(30):
                while len(list(kept.glob("*.eml"))) < 2:
                    if not await w.run_once():
                        await asyncio.sleep(0.05)
        finally:
            stop.set()
            await asyncio.wait_for(service, 30)
        page = await rt.store.list_messages(MessageFilter(info.team.id, channel="fax"), None, 5)
        assert [m.status for m in page.items] == ["sent"]
        subjects = []
        for path in sorted(kept.glob("*.eml")):
            parsed = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
            subjects.append(str(parsed["Subject"]))
        assert subjects == ["Fax to +4940123456 accepted (2 pages)",
                            "Fax to +4940123456 sent (2 pages)"]  # fmt: skip
    finally:
        await rt.aclose()

