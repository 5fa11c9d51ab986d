"""Team administration: members invited by mail (a job of the portal's own kind, through a
real SMTP server: sent, a relay down or refusing, a queued invitation superseded), roles,
activation, members' forwarding, API keys; and that only admins of the team get there."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest

from gateway.auth import KeyCache
from gateway.clock import FrozenClock
from gateway.config import SmtpConfig
from gateway.errors import Unauthorized
from gateway.ids import hash_secret
from gateway.models import Job
from gateway.portal.invites import JOB_KIND
from gateway.portal.web import portal_for
from gateway.process import worker
from gateway.runtime import Runtime
from tests.conftest import free_port
from tests.gateway.portal.conftest import SAME_ORIGIN, PortalSeed, csrf_of, sign_in
from tests.gateway.test_mail import SmtpServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def smtp(prt: Runtime) -> Iterator[SmtpServer]:
    """A real SMTP server as the gateway's [smtp] relay."""
    server = SmtpServer().start()
    prt.settings = dataclasses.replace(
        prt.settings,
        smtp=SmtpConfig("127.0.0.1", server.port, starttls=False, sender="gw@acme.test"),
    )
    try:
        yield server
    finally:
        server.stop()


async def run_jobs(rt: Runtime) -> int:
    """Run the due jobs one by one until none is left (bounded); how many ran."""
    w = worker(rt)
    for ran in range(20):
        if not await w.run_once():
            return ran
    raise AssertionError("jobs keep coming")


async def post(client: httpx.AsyncClient, path: str, data: dict[str, str]) -> httpx.Response:
    page = await client.get("/admin")
    return await client.post(path, data={"csrf": csrf_of(page.text), **data}, headers=SAME_ORIGIN)


async def test_a_new_member_is_invited_and_signs_in_once(
    anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed, smtp: SmtpServer
) -> None:
    r = await post(
        anna,
        "/admin/members",
        {
            "name": "Chris Neu",
            "email": "chris@example.com",
            "mobile": "0151 12345677",
            "role": "member",
        },
    )
    assert r.status_code == 200, r.text
    # The page only queues the mail: a job of the portal's own kind sends it.
    assert "Chris Neu was added; the invitation mail is queued." in r.text
    assert "Invitation mail queued" in r.text
    assert smtp.received == []
    assert await run_jobs(prt) == 1
    assert "Invitation mailed" in (await anna.get("/admin")).text
    assert len(smtp.received) == 1
    mail = smtp.received[0]
    assert mail.rcpt_tos == ["chris@example.com"]
    body = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = re.search(r"http://portal\.test(/invite/\S+)", body)
    assert link, body
    # The link sets a password and signs in; then it is used up.
    async with httpx.AsyncClient(transport=anna._transport, base_url=str(anna.base_url)) as new:
        page = await new.get(link.group(1))
        assert page.status_code == 200 and "Chris Neu" in page.text
        r = await new.post(
            link.group(1),
            data={"csrf": csrf_of(page.text), "password": "short", "password2": "short"},
            headers=SAME_ORIGIN,
        )
        assert r.status_code == 422 and "at least 10 characters" in r.text
        r = await new.post(
            link.group(1),
            data={
                "csrf": csrf_of(page.text),
                "password": "neues passwort 1",
                "password2": "neues passwort 1",
            },
            headers=SAME_ORIGIN,
        )
        assert r.status_code == 303 and "portal_session=" in r.headers["set-cookie"]
        assert (await new.get("/")).status_code == 200
        assert (await new.get(link.group(1))).status_code == 404
    async with httpx.AsyncClient(transport=anna._transport, base_url=str(anna.base_url)) as again:
        assert (await sign_in(again, "chris@example.com", "neues passwort 1")).status_code == 303


async def test_no_relay_still_adds_the_member_and_says_so(
    anna: httpx.AsyncClient, pseed: PortalSeed
) -> None:
    r = await post(anna, "/admin/members", {"name": "Dora", "email": "dora@example.com"})
    assert r.status_code == 200
    assert "the invitation was not sent" in r.text and "[smtp]" in r.text


async def invitation_job(prt: Runtime) -> Job:
    """The one invitation job in the queue (ready or waiting for its next try)."""
    [job] = await prt.store.list_jobs("ready", JOB_KIND, 10)
    return job


async def test_a_relay_that_is_down_is_tried_again_with_backoff(
    anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed, clock: FrozenClock
) -> None:
    port = free_port()  # nothing listens there yet: the relay is down
    relay = SmtpConfig("127.0.0.1", port, starttls=False, sender="gw@acme.test")
    prt.settings = dataclasses.replace(prt.settings, smtp=relay)
    r = await post(anna, "/admin/members", {"name": "Dora", "email": "dora@example.com"})
    assert "Dora was added; the invitation mail is queued." in r.text
    t0 = clock.now()
    assert await run_jobs(prt) == 1
    job = await invitation_job(prt)
    # gateway.retry.backoff: 5 s less up to 20 % jitter, then 20 s, ...
    assert timedelta(seconds=4) <= job.run_at - t0 <= timedelta(seconds=5)
    assert job.attempts == 1 and job.last_error
    page = (await anna.get("/admin")).text
    assert "Invitation mail queued (last try:" in page
    # The relay is up but cannot take mail now (451): the second try waits longer.
    server = SmtpServer(port)
    server.handler.data_reply = "451 4.3.0 Mailbox busy, try again later"
    server.start()
    try:
        clock.set(job.run_at)
        assert await run_jobs(prt) == 1
        job = await invitation_job(prt)
        assert timedelta(seconds=16) <= job.run_at - clock.now() <= timedelta(seconds=20)
        assert "Mailbox busy" in (await anna.get("/admin")).text
        assert server.received == []
        # Not due yet: nothing runs early.
        assert await run_jobs(prt) == 0
        server.handler.data_reply = None
        clock.set(job.run_at)
        assert await run_jobs(prt) == 1
        assert await prt.store.list_jobs("ready", JOB_KIND, 10) == []
        [mail] = server.received
    finally:
        server.stop()
    assert mail.rcpt_tos == ["dora@example.com"]
    assert "Invitation mailed" in (await anna.get("/admin")).text
    body = mail.message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    link = re.search(r"http://portal\.test(/invite/\S+)", body)
    assert link, body
    async with httpx.AsyncClient(transport=anna._transport, base_url=str(anna.base_url)) as new:
        assert (await new.get(link.group(1))).status_code == 200


async def test_a_refusal_or_the_last_try_fails_the_invitation(
    anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed, smtp: SmtpServer, clock: FrozenClock
) -> None:
    smtp.handler.data_reply = "554 5.7.1 Message refused by policy"
    await post(anna, "/admin/members", {"name": "Emil", "email": "emil@example.com"})
    assert await run_jobs(prt) == 1
    assert await prt.store.list_jobs("ready", JOB_KIND, 10) == []  # not tried again
    page = (await anna.get("/admin")).text
    assert "Invitation not sent:" in page and "Message refused by policy" in page
    # A relay that stays down: the last try fails it.
    prt.settings = dataclasses.replace(prt.settings, job_max_attempts=2)
    smtp.handler.data_reply = "421 4.3.2 Service not available"
    emil = next(m for m in await prt.store.list_members(pseed.seed.team.id) if m.name == "Emil")
    r = await post(anna, f"/admin/members/{emil.id}/invite", {})
    assert "A new invitation to emil@example.com is queued." in r.text
    assert await run_jobs(prt) == 1
    clock.set((await invitation_job(prt)).run_at)
    assert await run_jobs(prt) == 1
    assert await prt.store.list_jobs("ready", JOB_KIND, 10) == []
    assert await prt.store.list_jobs("dead", JOB_KIND, 10) == []  # failed, not buried
    page = (await anna.get("/admin")).text
    assert "Invitation not sent:" in page and "Service not available" in page
    assert smtp.received == []


async def test_a_newer_invitation_supersedes_a_queued_one(
    anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed, smtp: SmtpServer
) -> None:
    ben = pseed.seed.ben
    page = await anna.get("/admin", headers={"Accept-Language": "de"})
    for _ in range(2):
        r = await anna.post(
            f"/admin/members/{ben.id}/invite",
            data={"csrf": csrf_of(page.text)},
            headers={**SAME_ORIGIN, "Accept-Language": "de"},
        )
        assert r.status_code == 200 and "ist in der Warteschlange" in r.text
    assert await run_jobs(prt) == 2
    # One click, at most one mail: the older job found itself superseded.
    [mail] = smtp.received
    assert mail.message["Subject"] == f"Ihre Einladung zum Posteingang von {pseed.seed.team.name}"
    account = await (await portal_for(prt)).store.get_account(ben.id)
    assert account is not None and account.invitation is not None
    assert account.invitation.state == "sent" and account.invitation.tries == 1


async def test_roles_and_activation(
    anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed
) -> None:
    portal = await portal_for(prt)
    ben = pseed.seed.ben
    r = await post(anna, f"/admin/members/{ben.id}/role", {"role": "admin"})
    assert r.status_code == 303
    account = await portal.store.get_account(ben.id)
    assert account is not None and account.role == "admin"
    # An admin cannot lock themselves out.
    r = await post(anna, f"/admin/members/{pseed.seed.anna.id}/role", {"role": "member"})
    assert r.status_code == 422
    r = await post(anna, f"/admin/members/{pseed.seed.anna.id}/active", {"active": "0"})
    assert r.status_code == 422
    r = await post(anna, f"/admin/members/{ben.id}/active", {"active": "0"})
    assert r.status_code == 303
    got = await prt.store.get_member(ben.id)
    assert got is not None and not got.active
    # Another team's member does not exist here.
    r = await post(anna, f"/admin/members/{pseed.olga.id}/active", {"active": "0"})
    assert r.status_code == 404
    r = await anna.get(f"/admin/members/{pseed.olga.id}/forwarding")
    assert r.status_code == 404


async def test_members_forwarding(anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed) -> None:
    ben = pseed.seed.ben
    page = await anna.get(f"/admin/members/{ben.id}/forwarding")
    assert page.status_code == 200
    r = await anna.post(
        f"/admin/members/{ben.id}/forwarding",
        data={
            "csrf": csrf_of(page.text),
            "enabled": "on",
            "channel_sms": "on",
            "sms": "0176 11122233",
        },
        headers=SAME_ORIGIN,
    )
    assert r.status_code == 200 and "Saved." in r.text and "+4917611122233" in r.text
    r = await anna.post(
        f"/admin/members/{ben.id}/forwarding",
        data={"csrf": csrf_of(page.text), "enabled": "on", "sms": "not a number"},
        headers=SAME_ORIGIN,
    )
    assert r.status_code == 422 and "Not saved:" in r.text


async def test_api_keys_are_shown_once_and_revoked(
    anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed
) -> None:
    r = await post(anna, "/admin/keys", {"member": pseed.seed.ben.id})
    assert r.status_code == 200
    secret = re.search(r'<code id="new-key">([^<]+)</code>', r.text)
    assert secret
    keys = KeyCache(prt.store)
    principal = await keys.resolve(f"Bearer {secret.group(1)}")
    assert principal.member_id == pseed.seed.ben.id
    listing = await anna.get("/admin/keys")
    assert secret.group(1) not in listing.text  # never shown again
    key = await prt.store.api_key_by_hash(hash_secret(secret.group(1)))
    assert key is not None and key.prefix in listing.text
    r = await post(anna, f"/admin/keys/{key.id}/revoke", {})
    assert r.status_code == 303
    with pytest.raises(Unauthorized):
        await KeyCache(prt.store).resolve(f"Bearer {secret.group(1)}")
    r = await post(anna, f"/admin/keys/{key.id}/revoke", {})
    assert r.status_code == 404


async def test_api_keys_may_expire(
    anna: httpx.AsyncClient, prt: Runtime, pseed: PortalSeed
) -> None:
    r = await post(anna, "/admin/keys", {"member": "", "valid_days": "30"})
    assert r.status_code == 200
    secret = re.search(r'<code id="new-key">([^<]+)</code>', r.text)
    assert secret
    key = await prt.store.api_key_by_hash(hash_secret(secret.group(1)))
    assert key is not None and key.expires_at == prt.clock.now() + timedelta(days=30)
    listing = await anna.get("/admin/keys", headers={"Accept-Language": "en"})
    assert "until revoked" in listing.text  # the option; the key's own row shows its date
    r = await post(anna, "/admin/keys", {"member": "", "valid_days": "7"})
    assert r.status_code == 422
    assert len(await prt.store.list_api_keys(pseed.seed.team.id)) == 4  # the seed's 3, +1


async def test_members_are_not_admins(app_client: httpx.AsyncClient, pseed: PortalSeed) -> None:
    await sign_in(app_client, pseed.seed.ben.email)
    for path in ("/admin", "/admin/keys", f"/admin/members/{pseed.seed.anna.id}/forwarding"):
        assert (await app_client.get(path)).status_code == 404
    page = await app_client.get("/")
    r = await app_client.post("/admin/keys", data={"csrf": csrf_of(page.text)}, headers=SAME_ORIGIN)
    assert r.status_code == 404
