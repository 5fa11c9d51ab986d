"""X-Twilio-Signature: compute the signature of a webhook and verify it in constant time.

The signature is ``base64(HMAC-SHA1(auth_token, url + name1 + value1 + name2 + value2 …))``
over the full URL the carrier requested (query string included) and the POST parameters
sorted by name (case-sensitive, byte order). A name that occurs more than once
contributes each of its distinct values, sorted — what Twilio's own validators do since
2022. Some compatible carriers concatenate repeated values in the order they sent them;
:func:`verify` accepts that form too (both need the token, so nothing is weakened).

Twilio signs some URLs with the port and some without ("signature generation on the
back end is inconsistent", say its libraries), so :func:`verify` tries the URL as given,
without its port, and with the scheme's default port.

Neither function raises on what a request can carry (any URL, Host header or form
parameters): a URL that ``urlsplit`` refuses is tried only as given.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit, urlunsplit

Params = Mapping[str, str] | Iterable[tuple[str, str]]


def _pairs(params: Params) -> list[tuple[str, str]]:
    if isinstance(params, Mapping):
        return [(str(k), str(v)) for k, v in params.items()]
    return [(str(k), str(v)) for k, v in params]


def _canonical(pairs: list[tuple[str, str]]) -> str:
    """Names sorted; each name's distinct values sorted (Twilio's validators)."""
    values: dict[str, set[str]] = {}
    for name, value in pairs:
        values.setdefault(name, set()).add(value)
    return "".join(name + value for name in sorted(values) for value in sorted(values[name]))


def _in_sent_order(pairs: list[tuple[str, str]]) -> str:
    """Names sorted; a repeated name's values in the order they were sent."""
    # sorted() is stable: equal names keep their order of arrival.
    return "".join(name + value for name, value in sorted(pairs, key=lambda p: p[0]))


def _sign(token: str, data: str) -> str:
    digest = hmac.new(token.encode("utf-8"), data.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def compute(token: str, url: str, params: Params = ()) -> str:
    """The X-Twilio-Signature a carrier sends for a POST of ``params`` to ``url``."""
    return _sign(token, url + _canonical(_pairs(params)))


def url_variants(url: str) -> list[str]:
    """``url`` as given, without its port, and with the scheme's default port (no repeats)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # "[" in the host (the Host header, without public_url): as given
        return [url]
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = f"{userinfo}@" if userinfo else ""
    default_port = 443 if parts.scheme == "https" else 80
    try:
        port = parts.port
    except ValueError:  # a malformed port: only the URL as given can match
        return [url]
    out = [url]
    if port is not None:
        out.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}")))
    else:
        out.append(urlunsplit(parts._replace(netloc=f"{prefix}{host}:{default_port}")))
    return list(dict.fromkeys(out))


def verify(token: str, url: str, params: Params, signature: str | None) -> bool:
    """Whether ``signature`` is the carrier's signature of ``params`` POSTed to ``url``.

    Every candidate is compared with ``hmac.compare_digest``; a missing or empty
    signature never verifies.
    """
    if not signature:
        return False
    pairs = _pairs(params)
    bodies = list(dict.fromkeys((_canonical(pairs), _in_sent_order(pairs))))
    given = signature.strip().encode("ascii", "replace")
    ok = False
    for candidate in url_variants(url):
        for body in bodies:
            # No early exit: the work done does not depend on which candidate matched.
            ok |= hmac.compare_digest(_sign(token, candidate + body).encode("ascii"), given)
    return ok
