"""Our UA calls SIPp (Debian sip-tester, an independent SIP stack) on loopback.

Each scenario in ``scenarios/uas_*.xml`` plays the far end; SIPp exits non-zero when any
message differs from the script or fails a check, and the test asserts our side's view.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from fax.t38.sdp import MediaKind, SessionDescription
from fax.t38.sip.call import CallState
from fax.t38.sip.errors import CallFailed, RequestFailed
from fax.t38.sip.outcome import EndCause
from fax.t38.sip.timers import ManualTimers
from tests.fax.t38.sip.conftest import UaFactory
from tests.fax.t38.sip.peers import PortHandler, Sipp, tap

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


async def eventually(predicate: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_reinvite_refused_with_488_stays_on_audio(make_ua: UaFactory,
                                                        workdir: Path) -> None:
    sipp = Sipp("uas_reinvite_488.xml", workdir)
    await sipp.start()
    try:
        ua = await make_ua(proxy=sipp.uri)
        handler = PortHandler()
        call = await ua.call("4930123456", handler)
        media = await call.wait_answered()
        assert media.kind is MediaKind.AUDIO and media.codec is not None
        assert media.codec.name == "PCMA"
        assert await call.reinvite_to_t38() is False
        assert call.state is CallState.ESTABLISHED and call.media == media
        assert handler.history == [media]  # the refused offer changed nothing
        outcome = await call.hangup()
        assert outcome.cause is EndCause.LOCAL_HANGUP and outcome.answered
        assert handler.outcome == outcome
        await sipp.finish()
    finally:
        await sipp.stop()


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_bye_from_the_far_end(make_ua: UaFactory, workdir: Path, transport: str) -> None:
    sipp = Sipp("uas_bye.xml", workdir, transport=transport)
    await sipp.start()
    try:
        ua = await make_ua(proxy=sipp.uri)
        sent = tap(ua)
        handler = PortHandler()
        call = await ua.call("4930123456", handler)
        media = await call.wait_answered()
        assert media.codec is not None and media.codec.name == "PCMU"
        assert media.telephone_event == 101
        outcome = await call.wait_ended()
        assert outcome.cause is EndCause.REMOTE_HANGUP and outcome.answered
        assert "cause=16" in outcome.reason  # the Reason header of the BYE
        assert handler.outcome == outcome and handler.ended_calls == 1
        assert {t.transport for _, t in sent.sent} == {(transport[0] == "t" and "tcp") or "udp"}
        assert not ua.calls
        await sipp.finish()
    finally:
        await sipp.stop()


async def test_refresh_from_the_far_end_keeps_media(make_ua: UaFactory,
                                                    workdir: Path) -> None:
    sipp = Sipp("uas_refresh_by_peer.xml", workdir)
    await sipp.start()
    try:
        ua = await make_ua(proxy=sipp.uri)
        sent = tap(ua)
        handler = PortHandler()
        call = await ua.call("4930123456", handler)
        media = await call.wait_answered()
        assert call.session is not None and call.session.interval == 90
        assert not call.we_refresh  # SIPp said refresher=uas
        outcome = await call.wait_ended()
        assert outcome.cause is EndCause.REMOTE_HANGUP
        assert call.refreshes_received == 2
        assert handler.history == [media]  # neither refresh touched the media
        [invite] = sent.requests("INVITE")
        oks = sent.responses(200)
        # Our answer to SIPp's offer of the very same session, then the UPDATE's 200.
        answer = SessionDescription.parse(oks[0].body)
        offer = SessionDescription.parse(invite.body)
        assert answer.origin.session_id == offer.origin.session_id
        assert oks[1].body == b"" and oks[1].headers.get("Session-Expires") == "120;refresher=uac"
        await sipp.finish()
    finally:
        await sipp.stop()


async def test_we_refresh_by_reinvite_then_update_without_touching_media(
    make_ua: UaFactory, workdir: Path
) -> None:
    sipp = Sipp("uas_refresh_by_us.xml", workdir)
    await sipp.start()
    try:
        timers = ManualTimers()
        ua = await make_ua(proxy=sipp.uri, timers=timers)
        sent = tap(ua)
        handler = PortHandler()
        call = await ua.call("4930123456", handler)
        media = await call.wait_answered()
        assert call.we_refresh and call.session is not None and call.session.interval == 90
        timers.advance(45)  # half the interval: our refresh is due
        await eventually(lambda: call.refreshes_sent == 1)
        first, refresh = sent.requests("INVITE")
        assert refresh.body == first.body  # the current SDP, unchanged (same o= version)
        assert refresh.headers.get("Session-Expires") == "90;refresher=uac"
        timers.advance(45)
        await eventually(lambda: call.refreshes_sent == 2)
        [update] = sent.requests("UPDATE")
        assert update.body == b"" and "Session-Expires" in update.headers
        assert call.state is CallState.ESTABLISHED and handler.history == [media]
        await call.hangup()
        await sipp.finish()
    finally:
        await sipp.stop()


async def test_no_refresh_from_the_refresher_ends_the_call(make_ua: UaFactory,
                                                           workdir: Path) -> None:
    sipp = Sipp("uas_session_expires.xml", workdir)
    await sipp.start()
    try:
        timers = ManualTimers()
        ua = await make_ua(proxy=sipp.uri, timers=timers)
        call = await ua.call("4930123456", PortHandler())
        await call.wait_answered()
        timers.advance(59)  # before 90 - min(32, 90/3) = 60 s: still up
        await asyncio.sleep(0.05)
        assert call.state is CallState.ESTABLISHED
        timers.advance(2)
        outcome = await call.wait_ended()
        assert outcome.cause is EndCause.SESSION_EXPIRED and outcome.answered
        await sipp.finish()
    finally:
        await sipp.stop()


async def test_422_raises_the_session_interval(make_ua: UaFactory, workdir: Path) -> None:
    sipp = Sipp("uas_422.xml", workdir)
    await sipp.start()
    try:
        ua = await make_ua(proxy=sipp.uri)
        call = await ua.call("4930123456", PortHandler())
        await call.wait_answered()
        assert call.session is not None and call.session.interval == 2000 and call.we_refresh
        await call.hangup()
        await sipp.finish()
    finally:
        await sipp.stop()


async def test_glare_as_call_id_owner(make_ua: UaFactory, workdir: Path) -> None:
    sipp = Sipp("uas_glare.xml", workdir)
    await sipp.start()
    try:
        ua = await make_ua(proxy=sipp.uri)
        sent = tap(ua)
        handler = PortHandler()
        call = await ua.call("4930123456", handler)
        await call.wait_answered()
        # SIPp's own re-INVITE (answered 491 by us) crosses ours (answered 491 by SIPp);
        # SIPp retries within our 2.1-4 s back-off and wins: we end up on T.38 anyway.
        assert await call.reinvite_to_t38() is True
        assert call.media is not None and call.media.kind is MediaKind.IMAGE
        assert [h.kind for h in handler.history] == [MediaKind.AUDIO, MediaKind.IMAGE]
        assert len(sent.responses(491)) >= 1
        assert len(sent.requests("INVITE")) == 2  # the initial one and the one that met 491
        await call.hangup()
        await sipp.finish()
    finally:
        await sipp.stop()


async def test_digest_401_and_407_on_invite_reinvite_and_bye(make_ua: UaFactory,
                                                            workdir: Path) -> None:
    sipp = Sipp("uas_auth.xml", workdir)
    await sipp.start()
    try:
        ua = await make_ua(proxy=sipp.uri, username="alice", password="secret")
        handler = PortHandler()
        call = await ua.call("4930123456", handler)
        await call.wait_answered()
        assert await call.reinvite_to_t38() is True
        outcome = await call.hangup()
        assert outcome.cause is EndCause.LOCAL_HANGUP
        await sipp.finish()
    finally:
        await sipp.stop()


async def test_wrong_password_fails_without_looping(make_ua: UaFactory,
                                                    workdir: Path) -> None:
    sipp = Sipp("uas_reject.xml", workdir,
                fill={"STATUS": "401", "REASON": "Unauthorized"})
    await sipp.start()
    try:
        ua = await make_ua(proxy=sipp.uri, username="alice", password="secret")
        call = await ua.call("4930123456", PortHandler())
        with pytest.raises(CallFailed) as failed:
            await call.wait_answered()
        # No WWW-Authenticate to answer: the 401 is final.
        assert failed.value.outcome.cause is EndCause.AUTH_FAILED
        await sipp.finish()
    finally:
        await sipp.stop()


@pytest.mark.parametrize(("status", "reason", "cause"), [
    ("486", "Busy Here", EndCause.BUSY),
    ("600", "Busy Everywhere", EndCause.BUSY),
    ("480", "Temporarily Unavailable", EndCause.NO_ANSWER),
    ("404", "Not Found", EndCause.UNALLOCATED),
    ("484", "Address Incomplete", EndCause.UNALLOCATED),
    ("403", "Forbidden", EndCause.REJECTED),
    ("603", "Decline", EndCause.REJECTED),
    ("488", "Not Acceptable Here", EndCause.NOT_ACCEPTABLE),
    ("503", "Service Unavailable", EndCause.FAILED),
])
async def test_refused_calls_end_with_their_cause(
    make_ua: UaFactory, workdir: Path, status: str, reason: str, cause: EndCause
) -> None:
    sipp = Sipp("uas_reject.xml", workdir, fill={"STATUS": status, "REASON": reason})
    await sipp.start()
    try:
        ua = await make_ua(proxy=sipp.uri)
        handler = PortHandler()
        call = await ua.call("4930123456", handler)
        with pytest.raises(CallFailed) as failed:
            await call.wait_answered()
        outcome = failed.value.outcome
        assert (outcome.status, outcome.reason, outcome.cause) == (int(status), reason, cause)
        assert not outcome.answered and await call.wait_ended() == outcome
        assert handler.outcome == outcome and handler.history == []
        await sipp.finish()
    finally:
        await sipp.stop()


async def test_cancel_before_answer(make_ua: UaFactory, workdir: Path) -> None:
    sipp = Sipp("uas_ring_cancel.xml", workdir)
    await sipp.start()
    try:
        ua = await make_ua(proxy=sipp.uri)
        sent = tap(ua)
        call = await ua.call("4930123456", PortHandler())
        await eventually(lambda: call.state is CallState.RINGING)
        outcome = await call.hangup()
        assert (outcome.cause, outcome.status) == (EndCause.CANCELLED, 487)
        [cancel] = sent.requests("CANCEL")
        [invite] = sent.requests("INVITE")
        assert cancel.top_via.branch == invite.top_via.branch
        await sipp.finish()
    finally:
        await sipp.stop()


async def test_ring_timeout_cancels_as_no_answer(make_ua: UaFactory, workdir: Path) -> None:
    sipp = Sipp("uas_ring_cancel.xml", workdir)
    await sipp.start()
    try:
        ua = await make_ua(proxy=sipp.uri)
        call = await ua.call("4930123456", PortHandler(), ring_timeout=0.5)
        with pytest.raises(CallFailed) as failed:
            await call.wait_answered()
        assert (failed.value.outcome.cause, failed.value.outcome.status) == (
            EndCause.NO_ANSWER, 487)
        await sipp.finish()
    finally:
        await sipp.stop()


async def test_options_ping(make_ua: UaFactory, workdir: Path) -> None:
    sipp = Sipp("uas_options.xml", workdir)
    await sipp.start()
    try:
        ua = await make_ua(proxy=sipp.uri)
        resp = await ua.ping()
        assert resp.status == 200 and "OPTIONS" in (resp.headers.get("Allow") or "")
        await sipp.finish()
    finally:
        await sipp.stop()


async def test_register_with_digest_and_refresh(make_ua: UaFactory, workdir: Path) -> None:
    sipp = Sipp("uas_register.xml", workdir)
    await sipp.start()
    try:
        ua = await make_ua(proxy=sipp.uri, username="alice", password="secret", register=True)
        reg = ua.registration
        assert reg is not None and reg.registered and reg.granted == 2
        await eventually(lambda: reg.count == 2, timeout=5)  # refreshed after ~1 s
        assert reg.granted == 30
        await ua.aclose()  # unREGISTER (Expires: 0)
        assert not reg.registered
        await sipp.finish()
    finally:
        await sipp.stop()


async def test_register_refused(make_ua: UaFactory, workdir: Path) -> None:
    sipp = Sipp("uas_register_reject.xml", workdir)
    await sipp.start()
    try:
        with pytest.raises(RequestFailed) as failed:
            await make_ua(proxy=sipp.uri, username="alice", password="secret", register=True)
        assert failed.value.status == 403
        await sipp.finish()
    finally:
        await sipp.stop()
