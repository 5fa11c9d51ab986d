"""The options of a ``sip_t38`` connector and the outcome table."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import ErrorCode
from connectors.sip_t38.options import parse_options
from connectors.sip_t38.outcomes import LADDER, for_call, for_fax, ladder
from fax.t38.errors import error_for_code
from fax.t38.sip.outcome import CallOutcome
from gateway.errors import ConfigError


def test_defaults() -> None:
    opts = parse_options("fax", {"proxy": "sip:127.0.0.1:5070;transport=tcp"})
    assert (opts.max_calls, opts.ecm, opts.t38_only, opts.register) == (2, True, False, False)
    assert (opts.retry_busy, opts.retry_no_answer, opts.retry_protocol) == (180, 300, 60)
    assert (opts.max_tries, opts.max_dials, opts.max_age) == (3, 12, 3 * 3600)


@pytest.mark.parametrize("raw,key,why", [
    ({"proxy": "http://x"}, "proxy", "not a SIP URI"),
    ({"proxy": "sip:1.2.3.4;transport=sctp"}, "proxy", "transport must be"),
    ({"listen": "host:99999"}, "listen", "host:port"),
    ({"max_calls": 0}, "max_calls", "at least 1"),
    ({"max_calls": "2"}, "max_calls", "expected an integer"),
    ({"ecm": "yes"}, "ecm", "true or false"),
    ({"media_ports": "80-90"}, "media_ports", "1024-65535"),
    ({"register": True}, "register", "needs proxy and username"),
    ({"username": "u"}, "password", "go together"),
    ({"station_id": "x" * 21}, "station_id", "20 ASCII"),
    ({"header": "ü"}, "header", "50 ASCII"),
    ({"retry_busy": -1}, "retry_busy", "greater than 0"),
    ({"tls_cert": "c.pem"}, "tls_key", "go together"),
    ({"lines": 3}, "lines", "unknown option"),
])
def test_bad_options_name_the_key(raw: dict[str, Any], key: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_options("fax", raw)
    assert f"connectors[fax].{key}:" in str(err.value) and why in str(err.value)


def test_the_ladder() -> None:
    assert [s.words() for s in LADDER] == [
        "T.38 + ECM", "G.711 + ECM", "T.38", "G.711 without V.17"]
    assert [s.t38 for s in ladder(parse_options("f", {"t38_only": True}))] == [True, True]
    assert all(not s.ecm for s in ladder(parse_options("f", {"ecm": False})))


@pytest.mark.parametrize("status,kind,code", [
    (486, "busy", ErrorCode.UNREACHABLE), (600, "busy", ErrorCode.UNREACHABLE),
    (480, "no_answer", ErrorCode.UNREACHABLE), (408, "no_answer", ErrorCode.UNREACHABLE),
    (404, "final", ErrorCode.INVALID_NUMBER), (604, "final", ErrorCode.INVALID_NUMBER),
    (403, "final", ErrorCode.REJECTED), (603, "final", ErrorCode.REJECTED),
    (488, "protocol", ErrorCode.CARRIER_ERROR), (407, "auth", ErrorCode.AUTH_FAILED),
    (503, "retry", ErrorCode.CARRIER_ERROR),
])
def test_sip_outcomes(status: int, kind: str, code: str) -> None:
    verdict = for_call(CallOutcome.from_status(status, "x"))
    assert (verdict.kind, verdict.code, verdict.carrier_code) == (kind, code, f"sip:{status}")
    assert not verdict.counts_as_try


@pytest.mark.parametrize("t30,kind,code", [
    (49, "protocol", ErrorCode.CARRIER_ERROR),  # call dropped
    (5, "protocol", ErrorCode.CARRIER_ERROR),  # cannot train
    (3, "no_answer", ErrorCode.UNREACHABLE),  # T1 expired
    (9, "final", ErrorCode.REJECTED),  # far end cannot receive
    (43, "final", ErrorCode.CONTENT_INVALID),  # bad TIFF
])
def test_t30_outcomes(t30: int, kind: str, code: str) -> None:
    error = error_for_code(t30)
    assert error is not None
    verdict = for_fax(error)
    assert (verdict.kind, verdict.code, verdict.carrier_code) == (kind, code, f"t30:{t30}")
    assert verdict.counts_as_try == (kind in ("protocol", "no_answer"))
    opts = parse_options("f", {})
    assert verdict.retry_after(opts) == {"protocol": 60, "no_answer": 300}.get(kind, 60)


def test_the_kind_is_registered() -> None:
    from connectors.base import factory_for, known_kinds
    from connectors.sip_t38.connector import SipT38Connector

    assert "sip_t38" in known_kinds()
    assert factory_for("sip_t38") is SipT38Connector
