"""``gateway demo`` does fax end to end: the letter the banner names, mailed with the
banner's own command to the SMTP receiver, goes out as a fax to the demo's fax carrier
(the simulator), which sends it back to the member it was for; the status mails and the
received fax's mail land in the folder the banner names."""

from __future__ import annotations

import asyncio
import dataclasses
import re
import socket
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from connectors.sip_t38.demo import FaxDemo
from fax.mail.extension import EXTENSION as FAX_MAIL
from gateway.demo import create_demo, demo_numbers, demo_settings, extension_demos
from gateway.process import open_runtime, worker
from gateway.store.base import MessageFilter
from tests.connectors.sip_t38.conftest import KIND, TICKER

pytestmark = pytest.mark.anyio


async def listening(port: int) -> None:
    """Wait until the receiver (started by the background service) takes connections."""
    async with asyncio.timeout(20):
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                await asyncio.sleep(0.05)


def read(path: Path) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(parsed, EmailMessage)
    return parsed


async def test_a_letter_mailed_as_the_banner_says_is_faxed_and_comes_back(
    tmp_path: Path,
) -> None:
    settings = demo_settings(tmp_path, "127.0.0.1", 8080)
    carrier = FaxDemo()
    config = await carrier.start(settings.public_url, demo_numbers())
    sim = carrier.sim
    assert sim is not None
    sim.ticker = TICKER  # the demo runs in real time; the test need not
    config = dataclasses.replace(config, kind=KIND)
    try:
        rt = await open_runtime(dataclasses.replace(settings, connectors=(config,)))
        try:
            info = await create_demo(rt.store, rt.clock, settings)
            await rt.wait_started()
            banner = "\n".join(await extension_demos(rt, info))
            anna, clara = info.members[0], info.members[2]
            assert anna.fax and clara.fax and clara.fax != anna.fax
            port = re.search(r"SMTP receiver: 127\.0\.0\.1:(\d+)", banner)
            kept = re.search(r"is kept in (\S+)", banner)
            letter = re.search(r"A letter to fax: (\S+)", banner)
            assert port and kept and letter, banner
            assert Path(letter.group(1)).read_bytes().startswith(b"%PDF")
            assert f"{clara.fax.lstrip('+')}@fax.localhost" in banner
            [command] = [line.strip() for line in banner.splitlines()
                         if line.strip().startswith("python3 -c ")]  # fmt: skip
            folder = Path(kept.group(1))
            stop = asyncio.Event()
            service = asyncio.create_task(FAX_MAIL.run(rt, stop))
            try:
                await listening(int(port.group(1)))
                # The command exactly as printed, through a shell.
                shell = await asyncio.create_subprocess_shell(command)
                assert await asyncio.wait_for(shell.wait(), 60) == 0
                w = worker(rt)
                async with asyncio.timeout(60):
                    while len(list(folder.glob("*.eml"))) < 3:
                        if not await w.run_once():
                            await asyncio.sleep(0.05)
            finally:
                stop.set()
                await asyncio.wait_for(service, 30)
            [got] = sim.received
            assert got.ok and got.number == clara.fax
            mails = [read(p) for p in sorted(folder.glob("*.eml"))]
            by_to = {(str(m["To"]), str(m["Subject"]).strip().split(" (")[0]): m for m in mails}
            assert set(by_to) == {
                (anna.email, f"Fax to {clara.fax} accepted"),
                (anna.email, f"Fax to {clara.fax} sent"),
                (clara.email, f"Fax from {anna.fax}"),
            }
            received = by_to[(clara.email, f"Fax from {anna.fax}")]
            [pdf] = [p for p in received.iter_attachments()
                     if p.get_content_type() == "application/pdf"]  # fmt: skip
            assert pdf.get_content().startswith(b"%PDF")
            flt = MessageFilter(info.team.id, member_id=clara.id, direction="inbound")
            [inbound] = (await rt.store.list_messages(flt, None, 5)).items
            assert (inbound.channel, inbound.from_, inbound.to) == ("fax", anna.fax, clara.fax)
            assert inbound.meta["fax"]["pdf"] in inbound.attachments
        finally:
            await rt.aclose()
    finally:
        await carrier.stop()
