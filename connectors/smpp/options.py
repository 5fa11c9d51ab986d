"""The options of an ``smpp`` connector: defaults, validation, errors that name the key."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from gateway.errors import ConfigError

LONG_MESSAGES = ("udh", "sar", "payload")


@dataclass(frozen=True, slots=True)
class SmppOptions:
    """Validated options (see the ``connectors.smpp.connector`` docstring for each)."""

    host: str
    port: int = 2775
    system_id: str = ""
    password: str = ""
    system_type: str = ""
    binds: int = 1
    bind_lease: float = 15.0
    window: int = 10
    rate: float = 100.0
    long_messages: str = "udh"
    gsm7_packing: bool = False
    source_ton: int | None = None
    source_npi: int | None = None
    dest_ton: int = 1
    dest_npi: int = 1
    registered_delivery: int = 1
    service_type: str = ""
    enquire_link_interval: float = 30.0
    response_timeout: float = 10.0
    connect_timeout: float = 5.0
    reconnect_min: float = 0.5
    reconnect_max: float = 30.0
    throttle_pause: float = 1.0
    throttle_retries: int = 5
    send_wait: float = 2.0
    inbound_workers: int = 16
    reassembly_timeout: float = 300.0
    inbound_dedupe_window: float = 600.0


_INT = {"port", "binds", "window", "throttle_retries", "inbound_workers"}
_BYTE = {"source_ton", "source_npi", "dest_ton", "dest_npi", "registered_delivery"}
_FLOAT = {
    "rate",
    "bind_lease",
    "enquire_link_interval",
    "response_timeout",
    "connect_timeout",
    "reconnect_min",
    "reconnect_max",
    "throttle_pause",
    "send_wait",
    "reassembly_timeout",
    "inbound_dedupe_window",
}
# C-octet string fields of bind_transceiver / submit_sm: longest value allowed (SMPP 3.4).
_STR_MAX = {"host": 255, "system_id": 15, "password": 8, "system_type": 12, "service_type": 5}
_POSITIVE = {
    "binds",
    "bind_lease",
    "window",
    "inbound_workers",
    "port",
    "enquire_link_interval",
    "response_timeout",
    "connect_timeout",
    "reconnect_min",
    "reconnect_max",
}
_KNOWN = {f.name for f in fields(SmppOptions)}


def parse_options(connector_id: str, raw: dict[str, Any]) -> SmppOptions:
    """Check ``raw`` (the connector table's own keys) and fill in defaults."""

    def fail(key: str, why: str) -> ConfigError:
        return ConfigError(f"connectors[{connector_id}].{key}: {why}")

    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise fail(unknown[0], f"unknown option (known: {', '.join(sorted(_KNOWN))})")
    for key in ("host", "system_id"):
        if not raw.get(key):
            raise fail(key, "required")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _STR_MAX:
            if not isinstance(value, str):
                raise fail(key, f"expected a string, got {value!r}")
            if not value.isascii() or len(value) > _STR_MAX[key]:
                raise fail(key, f"at most {_STR_MAX[key]} ASCII characters")
        elif key in _INT or key in _BYTE:
            if isinstance(value, bool) or not isinstance(value, int):
                raise fail(key, f"expected an integer, got {value!r}")
            if key in _BYTE and not 0 <= value <= 255:
                raise fail(key, "must be 0-255")
        elif key in _FLOAT:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise fail(key, f"expected a number, got {value!r}")
            if value < 0:
                raise fail(key, "must not be negative")
            value = float(value)
        elif key == "long_messages":
            if value not in LONG_MESSAGES:
                raise fail(key, "must be udh, sar or payload")
        elif key == "gsm7_packing" and not isinstance(value, bool):
            raise fail(key, f"expected true or false, got {value!r}")
        if key in _POSITIVE and value <= 0:
            raise fail(key, "must be greater than 0")
        values[key] = value
    if values.get("port", 2775) > 65535:
        raise fail("port", "must be 1-65535")
    opts = SmppOptions(**values)
    if opts.reconnect_max < opts.reconnect_min:
        raise fail("reconnect_max", "must not be below reconnect_min")
    return opts
