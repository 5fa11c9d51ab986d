"""HTTP digest authentication for SIP requests (RFC 2617, RFC 7616, RFC 3261 §22).

A 401 carries ``WWW-Authenticate`` and is answered with ``Authorization``; a 407 carries
``Proxy-Authenticate`` and is answered with ``Proxy-Authorization``. MD5 and SHA-256 (and
their ``-sess`` variants) with ``qop=auth`` or no qop; the nonce count rises with every
request that reuses a nonce, so later requests in a call (BYE, re-INVITE) authenticate
without a new challenge.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from fax.t38.sip.errors import SipParseError
from fax.t38.sip.message import SipRequest, SipResponse
from fax.t38.sip.uri import split_outside_quotes

_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_STRENGTH = {"MD5": 1, "MD5-SESS": 1, "SHA-256": 2, "SHA-256-SESS": 2}


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return value


def parse_auth_params(text: str) -> dict[str, str]:
    """``a="x", b=y`` as a dict with lower-cased names."""
    out: dict[str, str] = {}
    for part in split_outside_quotes(text, ","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep:
            raise SipParseError(f"malformed auth parameter {part.strip()[:40]!r}")
        out[name.strip().lower()] = _unquote(value)
    return out


@dataclass(frozen=True)
class Challenge:
    """One ``Digest`` challenge."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: frozenset[str] = frozenset()
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False

    @classmethod
    def parse(cls, value: str, *, proxy: bool = False) -> Challenge:
        """Parse a ``WWW-Authenticate`` / ``Proxy-Authenticate`` value."""
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() != "digest":
            raise SipParseError(f"unsupported auth scheme {scheme[:20]!r}")
        p = parse_auth_params(rest)
        if "nonce" not in p or "realm" not in p:
            raise SipParseError("digest challenge without realm or nonce")
        qop = frozenset(q.strip().lower() for q in p.get("qop", "").split(",") if q.strip())
        return cls(
            realm=p["realm"],
            nonce=p["nonce"],
            algorithm=p.get("algorithm", "MD5").upper(),
            qop=qop,
            opaque=p.get("opaque"),
            stale=p.get("stale", "").lower() == "true",
            proxy=proxy,
        )

    @property
    def supported(self) -> bool:
        """We can answer it: a known algorithm, and auth (or no) quality of protection."""
        return self.algorithm in _STRENGTH and (not self.qop or "auth" in self.qop)


def digest_response(
    challenge: Challenge,
    username: str,
    password: str,
    method: str,
    uri: str,
    nc: int,
    cnonce: str,
) -> str:
    """The ``response`` value (request-digest) for the given inputs."""
    algo = challenge.algorithm
    base = algo.removesuffix("-SESS")
    h = _HASHES[base]

    def hx(s: str) -> str:
        return h(s.encode()).hexdigest()

    ha1 = hx(f"{username}:{challenge.realm}:{password}")
    if algo.endswith("-SESS"):
        ha1 = hx(f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = hx(f"{method}:{uri}")
    if "auth" in challenge.qop:
        return hx(f"{ha1}:{challenge.nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
    return hx(f"{ha1}:{challenge.nonce}:{ha2}")


class DigestAuth:
    """Our credentials and the challenges seen so far, per realm and header kind."""

    def __init__(self, username: str, password: str) -> None:
        self.username = username
        self.password = password
        self._challenges: dict[tuple[bool, str], Challenge] = {}
        self._nc: dict[str, int] = {}

    def learn(self, resp: SipResponse) -> bool:
        """Take the challenges of a 401/407; True when there is something new to answer.

        False when the response repeats a nonce we already answered without ``stale``:
        the credentials were refused and retrying would loop.
        """
        proxy = resp.status == 407
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        best: dict[str, Challenge] = {}
        for value in resp.headers.get_all(name):
            try:
                ch = Challenge.parse(value, proxy=proxy)
            except SipParseError:
                continue
            if not ch.supported:
                continue
            old = best.get(ch.realm)
            if old is None or _STRENGTH[ch.algorithm] > _STRENGTH[old.algorithm]:
                best[ch.realm] = ch
        fresh = False
        for realm, ch in best.items():
            old = self._challenges.get((proxy, realm))
            if old is None or old.nonce != ch.nonce or ch.stale:
                fresh = True
            self._challenges[(proxy, realm)] = ch
        return fresh

    def authorize(self, request: SipRequest) -> None:
        """Add (Proxy-)Authorization answering every known challenge (nonce count +1)."""
        request.headers.remove("Authorization")
        request.headers.remove("Proxy-Authorization")
        uri = str(request.uri)
        for (proxy, _), ch in self._challenges.items():
            nc = self._nc.get(ch.nonce, 0) + 1
            self._nc[ch.nonce] = nc
            cnonce = secrets.token_hex(8)
            resp = digest_response(ch, self.username, self.password, request.method, uri, nc,
                                   cnonce)
            parts = [
                f'username="{self.username}"',
                f'realm="{ch.realm}"',
                f'nonce="{ch.nonce}"',
                f'uri="{uri}"',
                f'response="{resp}"',
                f"algorithm={ch.algorithm}",
            ]
            if ch.opaque is not None:
                parts.append(f'opaque="{ch.opaque}"')
            if "auth" in ch.qop:
                parts += ["qop=auth", f"nc={nc:08x}", f'cnonce="{cnonce}"']
            header = "Proxy-Authorization" if proxy else "Authorization"
            request.headers.add(header, "Digest " + ", ".join(parts))
