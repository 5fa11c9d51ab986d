"""Connector options: defaults and errors that name the key."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.smpp.options import parse_options
from gateway.errors import ConfigError

BASE = {"host": "smsc.example", "system_id": "gw"}


def test_defaults() -> None:
    o = parse_options("sms1", dict(BASE))
    assert (o.port, o.binds, o.window, o.rate, o.long_messages) == (2775, 1, 10, 100.0, "udh")
    assert (o.gsm7_packing, o.source_ton, o.dest_ton, o.dest_npi) == (False, None, 1, 1)
    assert (o.registered_delivery, o.enquire_link_interval, o.response_timeout) == (1, 30.0, 10.0)
    assert (o.reconnect_min, o.reconnect_max) == (0.5, 30.0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"long_messages": "split"}, "connectors[sms1].long_messages: must be udh, sar or payload"),
        ({"binds": 0}, "connectors[sms1].binds: must be greater than 0"),
        ({"window": "10"}, "connectors[sms1].window: expected an integer"),
        ({"rate": -1}, "connectors[sms1].rate: must not be negative"),
        ({"password": "123456789"}, "connectors[sms1].password: at most 8 ASCII characters"),
        ({"dest_ton": 300}, "connectors[sms1].dest_ton: must be 0-255"),
        ({"gsm7_packing": "yes"}, "connectors[sms1].gsm7_packing: expected true or false"),
        ({"port": 70000}, "connectors[sms1].port: must be 1-65535"),
        ({"reconnect_min": 5, "reconnect_max": 1}, "connectors[sms1].reconnect_max"),
        ({"colour": "blue"}, "connectors[sms1].colour: unknown option"),
    ],
)
def test_errors_name_the_key(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_options("sms1", {**BASE, **extra})
    assert str(e.value).startswith(message)


@pytest.mark.parametrize("missing", ["host", "system_id"])
def test_required(missing: str) -> None:
    opts = dict(BASE)
    del opts[missing]
    with pytest.raises(ConfigError, match=rf"connectors\[x\]\.{missing}: required"):
        parse_options("x", opts)


def test_rate_zero_is_unlimited_and_ints_become_floats() -> None:
    o = parse_options("x", {**BASE, "rate": 0, "response_timeout": 3})
    assert o.rate == 0.0 and isinstance(o.response_timeout, float)
