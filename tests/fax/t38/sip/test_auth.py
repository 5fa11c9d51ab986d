"""Digest authentication: the RFC test vectors, challenge parsing, nonce counts, loop guard."""

from __future__ import annotations

import pytest

from fax.t38.sip.auth import Challenge, DigestAuth, digest_response, parse_auth_params
from fax.t38.sip.errors import SipParseError
from fax.t38.sip.message import Headers, SipRequest, SipResponse
from fax.t38.sip.uri import SipUri


def test_rfc2617_vector() -> None:
    ch = Challenge(realm="testrealm@host.com", nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                   qop=frozenset({"auth"}))
    got = digest_response(ch, "Mufasa", "Circle Of Life", "GET", "/dir/index.html", 1,
                          "0a4f113b")
    assert got == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(("algorithm", "expected"), [
    ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
    ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
])
def test_rfc7616_vectors(algorithm: str, expected: str) -> None:
    ch = Challenge(realm="http-auth@example.org",
                   nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                   algorithm=algorithm, qop=frozenset({"auth"}))
    got = digest_response(ch, "Mufasa", "Circle of Life", "GET", "/dir/index.html", 1,
                          "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
    assert got == expected


def test_challenge_parsing() -> None:
    ch = Challenge.parse('Digest realm="sip.example", nonce="n1", qop="auth,auth-int", '
                         'opaque="o", algorithm=md5, stale=TRUE', proxy=True)
    assert (ch.realm, ch.nonce, ch.opaque, ch.algorithm) == ("sip.example", "n1", "o", "MD5")
    assert ch.qop == {"auth", "auth-int"} and ch.stale and ch.proxy and ch.supported
    assert not Challenge.parse('Digest realm="r", nonce="n", qop="auth-int"').supported
    assert not Challenge.parse('Digest realm="r", nonce="n", algorithm=SHA-512').supported
    with pytest.raises(SipParseError):
        Challenge.parse('Basic realm="r"')
    with pytest.raises(SipParseError):
        Challenge.parse('Digest realm="r"')
    assert parse_auth_params('a="x, y", b=z') == {"a": "x, y", "b": "z"}


def _challenge(status: int, *values: str) -> SipResponse:
    h = Headers()
    name = "Proxy-Authenticate" if status == 407 else "WWW-Authenticate"
    for v in values:
        h.add(name, v)
    return SipResponse(headers=h, status=status)


def _request() -> SipRequest:
    return SipRequest(method="INVITE", uri=SipUri.parse("sip:123@example.net"))


def test_authorize_counts_nonce_uses_and_picks_the_strongest() -> None:
    auth = DigestAuth("alice", "secret")
    assert auth.learn(_challenge(401, 'Digest realm="r", nonce="n", qop="auth"',
                                 'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"'))
    req = _request()
    auth.authorize(req)
    value = req.headers.get("Authorization")
    assert value is not None and "algorithm=SHA-256" in value and "nc=00000001" in value
    params = parse_auth_params(value.removeprefix("Digest "))
    expected = digest_response(Challenge("r", "n2", "SHA-256", frozenset({"auth"})), "alice",
                               "secret", "INVITE", "sip:123@example.net", 1, params["cnonce"])
    assert params["response"] == expected and params["uri"] == "sip:123@example.net"
    req2 = _request()
    auth.authorize(req2)
    assert "nc=00000002" in (req2.headers.get("Authorization") or "")


def test_proxy_and_server_challenges_both_answered() -> None:
    auth = DigestAuth("alice", "secret")
    auth.learn(_challenge(401, 'Digest realm="reg", nonce="a"'))
    auth.learn(_challenge(407, 'Digest realm="proxy", nonce="b", opaque="op"'))
    req = _request()
    auth.authorize(req)
    www = req.headers.get("Authorization") or ""
    proxy = req.headers.get("Proxy-Authorization") or ""
    assert 'realm="reg"' in www and "qop" not in www
    assert 'realm="proxy"' in proxy and 'opaque="op"' in proxy


def test_same_nonce_again_means_wrong_credentials() -> None:
    auth = DigestAuth("alice", "wrong")
    first = _challenge(401, 'Digest realm="r", nonce="n"')
    assert auth.learn(first)
    assert not auth.learn(first)  # refused with the same nonce: do not loop
    assert auth.learn(_challenge(401, 'Digest realm="r", nonce="n", stale=true'))
    assert not auth.learn(_challenge(401, 'Digest realm="r", nonce="x", qop="auth-int"'))
