"""Two of our user agents on loopback: TLS (this SIPp is built without TLS), TCP, UDP.

SIPp 3.6.1 on Debian has no OpenSSL ("To use a TLS transport you must compile SIPp with
OpenSSL"), so TLS is tested against a second instance of our UA, with trustme certificates.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from fax.t38.sdp import MediaKind
from fax.t38.sip.errors import CallFailed
from fax.t38.sip.incoming import Answer, IncomingCall, Reject
from fax.t38.sip.outcome import EndCause
from tests.fax.t38.sip.conftest import UaFactory
from tests.fax.t38.sip.peers import PortHandler, tap

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_cert(ca: trustme.CA, workdir: Path) -> Iterator[tuple[str, str]]:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path = workdir / "cert.pem", workdir / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_path))
    cert.private_key_pem.write_to_path(str(key_path))
    yield str(cert_path), str(key_path)


class Answering:
    def __init__(self) -> None:
        self.handlers: list[PortHandler] = []
        self.seen: list[IncomingCall] = []

    async def __call__(self, incoming: IncomingCall) -> Answer | Reject:
        self.seen.append(incoming)
        handler = PortHandler()
        self.handlers.append(handler)
        return Answer(handler)


async def test_call_over_tls(make_ua: UaFactory, ca: trustme.CA,
                             server_cert: tuple[str, str]) -> None:
    cert, key = server_cert
    answering = Answering()
    callee = await make_ua(on_incoming=answering, tls_cert=cert, tls_key=key)
    host, port = callee.listen_address("tls")
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    caller = await make_ua(proxy=f"sip:{host}:{port};transport=tls", tls_client=client_ctx)
    sent = tap(caller)
    handler = PortHandler()
    call = await caller.call("4930123456", handler)
    media = await call.wait_answered()
    assert media.kind is MediaKind.AUDIO
    assert await call.reinvite_to_t38() is True
    assert await call.refresh() is True
    outcome = await call.hangup()
    assert outcome.cause is EndCause.LOCAL_HANGUP
    assert {t.transport for _, t in sent.sent} == {"tls"}
    [incoming] = answering.seen
    assert incoming.source.transport == "tls"
    far = answering.handlers[0]
    assert [m.kind for m in far.history] == [MediaKind.AUDIO, MediaKind.IMAGE]
    assert far.outcome is not None and far.outcome.cause is EndCause.REMOTE_HANGUP
    via = sent.requests("INVITE")[0].top_via
    assert via.transport == "TLS"


async def test_tls_with_an_untrusted_certificate_fails_cleanly(
    make_ua: UaFactory, server_cert: tuple[str, str]
) -> None:
    cert, key = server_cert
    callee = await make_ua(on_incoming=Answering(), tls_cert=cert, tls_key=key)
    host, port = callee.listen_address("tls")
    caller = await make_ua(proxy=f"sip:{host}:{port};transport=tls")  # system CAs only
    call = await caller.call("4930123456", PortHandler())
    with pytest.raises(CallFailed) as failed:
        await call.wait_answered()
    assert failed.value.outcome.cause is EndCause.TRANSPORT_ERROR


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_far_end_switches_to_t38_and_hangs_up(make_ua: UaFactory,
                                                    transport: str) -> None:
    answering = Answering()
    callee = await make_ua(on_incoming=answering)
    host, port = callee.listen_address(transport)
    caller = await make_ua(proxy=f"sip:{host}:{port};transport={transport}")
    handler = PortHandler()
    call = await caller.call("4930123456", handler)
    await call.wait_answered()
    [far_call] = callee.calls
    assert await far_call.reinvite_to_t38() is True  # the callee re-INVITEs this time
    assert call.media is not None and call.media.kind is MediaKind.IMAGE
    assert [m.kind for m in handler.history] == [MediaKind.AUDIO, MediaKind.IMAGE]
    await far_call.hangup()
    outcome = await call.wait_ended()
    assert outcome.cause is EndCause.REMOTE_HANGUP


async def test_initial_invite_with_image_only(make_ua: UaFactory) -> None:
    answering = Answering()
    callee = await make_ua(on_incoming=answering)
    host, port = callee.listen_address("udp")
    caller = await make_ua(proxy=f"sip:{host}:{port}")
    call = await caller.call("4930123456", PortHandler(), media=MediaKind.IMAGE,
                             from_user="4940111")
    media = await call.wait_answered()
    assert media.kind is MediaKind.IMAGE
    [incoming] = answering.seen
    assert incoming.caller == "4940111" and incoming.number == "4930123456"
    assert incoming.offer is not None and incoming.offer.media[0].kind == "image"
    await call.hangup()


async def test_unknown_number_and_no_handler(make_ua: UaFactory) -> None:
    async def unknown(incoming: IncomingCall) -> Answer | Reject:
        return Reject(404)

    callee = await make_ua(on_incoming=unknown)
    host, port = callee.listen_address("udp")
    caller = await make_ua(proxy=f"sip:{host}:{port}")
    call = await caller.call("999", PortHandler())
    with pytest.raises(CallFailed) as failed:
        await call.wait_answered()
    assert failed.value.outcome.cause is EndCause.UNALLOCATED
    deaf = await make_ua()
    host, port = deaf.listen_address("udp")
    caller2 = await make_ua(proxy=f"sip:{host}:{port}")
    call2 = await caller2.call("999", PortHandler())
    with pytest.raises(CallFailed) as failed:
        await call2.wait_answered()
    assert failed.value.outcome.status == 480  # a UA without an incoming-call handler


async def test_refresh_rounds_trip_between_our_uas(make_ua: UaFactory) -> None:
    answering = Answering()
    callee = await make_ua(on_incoming=answering)
    host, port = callee.listen_address("udp")
    caller = await make_ua(proxy=f"sip:{host}:{port}")
    sent = tap(caller)
    handler = PortHandler()
    call = await caller.call("4930123456", handler)
    await call.wait_answered()
    assert call.we_refresh  # we asked refresher=uac and the callee agreed
    assert "update" in call.peer_allow
    assert await call.refresh() is True  # by UPDATE: our peer allows it
    assert sent.requests("UPDATE") and len(sent.requests("INVITE")) == 1
    [far_call] = callee.calls
    assert far_call.refreshes_received == 1 and not far_call.we_refresh
    assert len(handler.history) == 1 and len(answering.handlers[0].history) == 1
    await call.hangup()
