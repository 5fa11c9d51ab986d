"""Configuration: a TOML file plus the environment, read into one frozen ``Settings``.

``${ENV_VAR}`` anywhere in a string value is replaced by that variable (secrets stay out
of the file); ``GATEWAY_STORE`` and ``GATEWAY_BLOBS`` override the file. Every error names
the key it is about, e.g. ``connectors[1].channels: unknown channel 'mms'``.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.destinations import DEFAULT_POLICY, Policy, PolicyError, parse_fields
from gateway.errors import ConfigError
from gateway.models import Channel
from gateway.numbers import normalize
from gateway.units import Tariff

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DEFAULT_STORE = "sqlite:///var/lib/gateway/gateway.db"
DEFAULT_BLOBS = "/var/lib/gateway/blobs"


@dataclass(frozen=True, slots=True)
class ConnectorConfig:
    """One ``[[connectors]]`` table: the common keys plus the connector's own options."""

    id: str
    kind: str
    channels: frozenset[str]
    numbers: frozenset[str] | None
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SmtpConfig:
    """The relay for outgoing mail."""

    host: str
    port: int = 587
    username: str | None = None
    password: str | None = None
    starttls: bool = True
    sender: str = "gateway@localhost"


# -- [webhooks]: outbound webhooks to developers (webhooks/) ----------------------------------
DEFAULT_RETRY_SCHEDULE = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """``[webhooks]``: delivery of events to the teams' webhook endpoints."""

    # Seconds before each attempt: the first entry is the first attempt (after the event),
    # the others the retries after a failed attempt; after the last one a delivery fails.
    retry_schedule: tuple[float, ...] = DEFAULT_RETRY_SCHEDULE
    # Deliver to private, loopback, link-local … addresses too (tests, the demo).
    allow_private_targets: bool = False
    timeout: float = 15.0  # seconds for one attempt: connect, send, status and headers
    concurrency: int = 100  # attempts in flight per process
    poll_interval: float = 0.02  # seconds between looks at the event log and due retries
    lease_seconds: float = 60.0  # an attempt whose process died is taken over after this
    disable_after_seconds: float = 5 * 86400.0  # failing this long without a success: disabled


def _webhooks(table: Any) -> WebhookSettings:
    if not isinstance(table, dict):
        raise ConfigError("webhooks: expected a table")
    numbers: dict[str, tuple[float, float | None]] = {
        "timeout": (0.001, 3600.0),
        "poll_interval": (0.001, 60.0),
        "lease_seconds": (0.001, None),
        "disable_after_seconds": (1.0, None),
    }
    values: dict[str, Any] = {}
    for key, value in table.items():
        where = f"webhooks.{key}"
        if key == "retry_schedule":
            if (
                not isinstance(value, list)
                or not 1 <= len(value) <= 30
                or not all(
                    isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 604800
                    for v in value
                )
            ):
                raise ConfigError(
                    f"{where}: expected a list of 1 to 30 delays in seconds (0 to 604800), "
                    f"got {value!r}"
                )
            values[key] = tuple(float(v) for v in value)
        elif key == "allow_private_targets":
            values[key] = _typed(table, key, bool, "webhooks")
        elif key == "concurrency":
            values[key] = _typed(table, key, int, "webhooks")
            if not 1 <= values[key] <= 10000:
                raise ConfigError(f"{where}: must be from 1 to 10000")
        elif key in numbers:
            low, high = numbers[key]
            values[key] = float(_typed(table, key, (int, float), "webhooks"))
            if values[key] < low or (high is not None and values[key] > high):
                bound = f"from {low:g} to {high:g}" if high is not None else f"at least {low:g}"
                raise ConfigError(f"{where}: must be {bound}, got {value!r}")
        else:
            raise ConfigError(f"{where}: unknown key")
    settings = WebhookSettings(**values)
    if settings.lease_seconds <= settings.timeout:
        raise ConfigError(
            f"webhooks.lease_seconds: must be longer than webhooks.timeout "
            f"({settings.timeout:g} s), got {settings.lease_seconds:g}"
        )
    return settings


# -- end [webhooks] ------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway reads from its configuration."""

    store: str = DEFAULT_STORE
    blobs: str = DEFAULT_BLOBS
    public_url: str = "http://127.0.0.1:8080"
    timezone: str = "Europe/Berlin"
    region: str = "DE"
    workers: int = 128  # jobs run at once per process (each mostly waits on a carrier)
    job_visibility_seconds: float = 120.0
    job_max_attempts: int = 10
    poll_interval: float = 0.2
    max_attachment_bytes: int = 20 * 1024 * 1024
    plugins: tuple[str, ...] = ()
    connectors: tuple[ConnectorConfig, ...] = ()
    tariff: Tariff = field(default_factory=Tariff.default)
    smtp: SmtpConfig | None = None
    policy: Policy = DEFAULT_POLICY  # [policy]: the provider-wide outbound policy
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)  # [webhooks]
    source: str | None = None

    @property
    def tz(self) -> ZoneInfo:
        """The time zone of quota months."""
        return ZoneInfo(self.timezone)


def _interpolate(value: Any, where: str) -> Any:
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in os.environ:
                raise ConfigError(f"{where}: environment variable {name} is not set")
            return os.environ[name]

        return _ENV_REF.sub(sub, value)
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _typed(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = table[key]
    if kind in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: expected a number, got {value!r}")
    if not isinstance(value, kind):
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise ConfigError(f"{where}.{key}: expected {name}, got {value!r}")
    return value


def _euro_micros(value: Any, where: str) -> int:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{where}: {value!r} is not an amount in EUR") from None
    if amount < 0 or not amount.is_finite():
        raise ConfigError(f"{where}: {value!r} must be a non-negative amount in EUR")
    return int(amount * 1_000_000)


def _gateway(table: dict[str, Any], out: dict[str, Any]) -> None:
    known: dict[str, type | tuple[type, ...]] = {
        "store": str,
        "blobs": str,
        "public_url": str,
        "timezone": str,
        "region": str,
        "workers": int,
        "job_visibility_seconds": (int, float),
        "job_max_attempts": int,
        "poll_interval": (int, float),
        "max_attachment_bytes": int,
        "plugins": list,
    }
    for key in table:
        if key not in known:
            raise ConfigError(f"gateway.{key}: unknown key")
        out[key] = _typed(table, key, known[key], "gateway")
    if "timezone" in out:
        try:
            ZoneInfo(out["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"gateway.timezone: unknown time zone {out['timezone']!r}") from None
    if "public_url" in out and not out["public_url"].startswith(("http://", "https://")):
        raise ConfigError("gateway.public_url: must start with http:// or https://")
    for key in ("workers", "job_max_attempts", "max_attachment_bytes"):
        if key in out and out[key] < 1:
            raise ConfigError(f"gateway.{key}: must be at least 1")
    if "plugins" in out:
        out["plugins"] = tuple(str(p) for p in out["plugins"])


def _connectors(items: Any, region: str) -> tuple[ConnectorConfig, ...]:
    if not isinstance(items, list):
        raise ConfigError("connectors: expected an array of tables ([[connectors]])")
    seen: set[str] = set()
    out = []
    for i, raw in enumerate(items):
        where = f"connectors[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a table")
        for key in ("id", "kind", "channels"):
            if key not in raw:
                raise ConfigError(f"{where}.{key}: missing")
        cid = _typed(raw, "id", str, where)
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", cid):
            raise ConfigError(f"{where}.id: use letters, digits, '-' and '_' only")
        if cid in seen:
            raise ConfigError(f"{where}.id: duplicate connector id {cid!r}")
        seen.add(cid)
        channels = _typed(raw, "channels", list, where)
        for ch in channels:
            if ch not in {c.value for c in Channel}:
                raise ConfigError(f"{where}.channels: unknown channel {ch!r}")
        if not channels:
            raise ConfigError(f"{where}.channels: must name at least one channel")
        numbers = None
        if "numbers" in raw:
            try:
                numbers = frozenset(
                    normalize(n, region) for n in _typed(raw, "numbers", list, where)
                )
            except Exception as exc:
                raise ConfigError(f"{where}.numbers: {exc}") from None
        options = {k: v for k, v in raw.items() if k not in {"id", "kind", "channels", "numbers"}}
        kind = _typed(raw, "kind", str, where)
        out.append(ConnectorConfig(cid, kind, frozenset(channels), numbers, options))
    return tuple(out)


def _tariff(table: dict[str, Any]) -> Tariff:
    base = Tariff.default()
    included = dict(base.included)
    chars = dict(base.chars_per_unit)
    prices = dict(base.overage_price_micros)
    thresholds = base.thresholds
    for key, value in table.items():
        where = f"tariff.{key}"
        if key == "thresholds":
            if not isinstance(value, list) or not all(
                isinstance(v, int) and 0 < v <= 1000 for v in value
            ):
                raise ConfigError(f"{where}: expected a list of percentages")
            thresholds = tuple(sorted(value))
            continue
        if key not in ("included", "chars_per_unit", "overage_price"):
            raise ConfigError(f"{where}: unknown key")
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table of channel = value")
        for channel, amount in value.items():
            if channel not in {c.value for c in Channel}:
                raise ConfigError(f"{where}.{channel}: unknown channel")
            if key == "overage_price":
                prices[channel] = _euro_micros(amount, f"{where}.{channel}")
            elif not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
                raise ConfigError(f"{where}.{channel}: expected a whole number >= 0")
            elif key == "included":
                included[channel] = amount
            else:
                if amount < 1 or channel == "fax":
                    raise ConfigError(f"{where}.{channel}: must be >= 1 (and fax is per fax)")
                chars[channel] = amount
    return Tariff(included, chars, prices, thresholds)


def _smtp(table: dict[str, Any]) -> SmtpConfig:
    if "host" not in table:
        raise ConfigError("smtp.host: missing")
    known: dict[str, type] = {
        "host": str,
        "port": int,
        "username": str,
        "password": str,
        "starttls": bool,
        "from": str,
    }
    values = {}
    for key in table:
        if key not in known:
            raise ConfigError(f"smtp.{key}: unknown key")
        values["sender" if key == "from" else key] = _typed(table, key, known[key], "smtp")
    return SmtpConfig(**values)


def _policy(table: Any, region: str) -> Policy:
    """``[policy]``: the defaults with the listed keys replaced (``false`` turns a limit
    off; prefixes in national notation are read in ``gateway.region``)."""
    if not isinstance(table, dict):
        raise ConfigError("policy: expected a table")
    try:
        return Policy.build(DEFAULT_POLICY, parse_fields(table, region, off=False, provider=True))
    except PolicyError as exc:
        raise ConfigError(f"policy.{exc.field}: {exc.message}") from None


def parse_settings(data: dict[str, Any], source: str | None = None) -> Settings:
    """Settings from an already-parsed TOML document (plus the environment)."""
    data = _interpolate(data, "config")
    for key in data:
        if key not in {"gateway", "connectors", "tariff", "smtp", "policy", "webhooks"}:
            raise ConfigError(f"{key}: unknown section")
    values: dict[str, Any] = {"source": source}
    section = data.get("gateway", {})
    if not isinstance(section, dict):
        raise ConfigError("gateway: expected a table")
    _gateway(section, values)
    if os.environ.get("GATEWAY_STORE"):
        values["store"] = os.environ["GATEWAY_STORE"]
    if os.environ.get("GATEWAY_BLOBS"):
        values["blobs"] = os.environ["GATEWAY_BLOBS"]
    store = values.get("store", DEFAULT_STORE)
    if not store.startswith(("sqlite://", "redis://", "rediss://", "unix://")):
        raise ConfigError(f"gateway.store: {store!r} is neither sqlite:// nor redis://")
    values["connectors"] = _connectors(data.get("connectors", []), values.get("region", "DE"))
    if "tariff" in data:
        values["tariff"] = _tariff(data["tariff"])
    if "smtp" in data:
        values["smtp"] = _smtp(data["smtp"])
    if "policy" in data:
        values["policy"] = _policy(data["policy"], values.get("region", "DE"))
    if "webhooks" in data:
        values["webhooks"] = _webhooks(data["webhooks"])
    return Settings(**values)


def load_settings(path: str | os.PathLike[str] | None = None) -> Settings:
    """Read ``path`` (or ``$GATEWAY_CONFIG``; none means defaults) into ``Settings``."""
    path = path or os.environ.get("GATEWAY_CONFIG")
    if not path:
        return parse_settings({})
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None
    return parse_settings(data, str(path))
