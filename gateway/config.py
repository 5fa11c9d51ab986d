"""Configuration: a TOML file plus the environment, read into one frozen ``Settings``.

``${ENV_VAR}`` anywhere in a string value is replaced by that variable (secrets stay out
of the file); ``GATEWAY_STORE`` and ``GATEWAY_BLOBS`` override the file. Every error names
the key it is about, e.g. ``connectors[1].channels: unknown channel 'mms'``.

The core parses its own sections; every other section belongs to an installed extension
(entry-point group ``gateway.extensions``), which parses it (``parse_settings``) into
``Settings.extensions[name]``; a section nobody owns is an error.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from gateway.destinations import DEFAULT_POLICY, Policy, PolicyError, parse_fields
from gateway.errors import ConfigError
from gateway.models import Channel
from gateway.numbers import normalize
from gateway.units import Tariff

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
DEFAULT_STORE = "sqlite:///var/lib/gateway/gateway.db"
DEFAULT_BLOBS = "/var/lib/gateway/blobs"
T = TypeVar("T")


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


@dataclass(frozen=True, slots=True)
class Retention:
    """[retention]: how long the logs that grow with traffic are kept (messages,
    conversations and quota usage are kept for good). Pruned in the background by the
    job workers, in small batches (``gateway/retention.py``)."""

    events_days: float = 30.0  # the event log (webhook fan-out, the portal's live view)
    webhook_deliveries_days: float = 30.0  # finished webhook deliveries and their attempts
    idempotency_hours: float = 24.0  # how long a response is replayed for its key
    batch: int = 500  # rows (or keys) deleted per store write

    @property
    def events(self) -> timedelta:
        """The event log's retention."""
        return timedelta(days=self.events_days)

    @property
    def webhook_deliveries(self) -> timedelta:
        """The webhook delivery log's retention."""
        return timedelta(days=self.webhook_deliveries_days)

    @property
    def idempotency(self) -> timedelta:
        """How long an idempotent response is replayed."""
        return timedelta(hours=self.idempotency_hours)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the gateway reads from its configuration."""

    store: str = DEFAULT_STORE
    blobs: str = DEFAULT_BLOBS
    public_url: str = "http://127.0.0.1:8080"
    timezone: str = "Europe/Berlin"
    region: str = "DE"
    # Jobs run at once per process (each mostly waits on a carrier); 0: this process runs
    # no jobs (an API-only replica, as ``gateway serve --no-workers``).
    workers: int = 128
    job_visibility_seconds: float = 120.0
    job_max_attempts: int = 10
    poll_interval: float = 0.2
    # Seconds between two rings of the job bell (Redis: a process that enqueued jobs wakes
    # an idle worker of another process): a job enqueued sooner after a ring waits for the
    # next, which then wakes a worker for all of them (see Runtime.wake_workers). 0: ring
    # for every job at once.
    bell_interval: float = 0.05
    # How long the API keeps an idle HTTP/1.1 connection open. Longer than the clients' and
    # proxies' own idle limits (httpx 5 s, nginx 60 s, cloud load balancers 60 s): the side
    # that closes an idle connection must be the client, or a request it sends just as the
    # server closes is reset (seen under load with uvicorn's 5 s default).
    keep_alive_seconds: float = 75.0
    max_attachment_bytes: int = 20 * 1024 * 1024
    plugins: tuple[str, ...] = ()
    connectors: tuple[ConnectorConfig, ...] = ()
    tariff: Tariff = field(default_factory=Tariff.default)
    smtp: SmtpConfig | None = None
    policy: Policy = DEFAULT_POLICY  # [policy]: the provider-wide outbound policy
    retention: Retention = field(default_factory=Retention)
    # Each installed extension's section ([webhooks] …), parsed by the extension: by name.
    extensions: Mapping[str, object] = field(default_factory=lambda: extension_settings())
    source: str | None = None

    @property
    def tz(self) -> ZoneInfo:
        """The time zone of quota months."""
        return ZoneInfo(self.timezone)

    def extension(self, name: str, kind: type[T]) -> T:
        """The settings of extension ``name`` (what its ``parse_settings`` returned for its
        ``[name]`` section), which must be a ``kind``."""
        value = self.extensions.get(name)
        if not isinstance(value, kind):
            raise LookupError(
                f"the settings of extension {name!r} are {type(value).__name__}, "
                f"not {kind.__name__} (is the extension installed?)"
            )
        return value

    def with_extension(self, name: str, value: object) -> Settings:
        """These settings with extension ``name``'s replaced by ``value``."""
        return dataclasses.replace(self, extensions={**self.extensions, name: value})


# -- extensions' sections: [webhooks], [portal] … -----------------------------------------
# Loaded here from the entry-point group, not through gateway.extensions: that module types
# its hooks against this one's Settings (no circle); ep.load() gives the same objects.
_EXTENSION_GROUP = "gateway.extensions"
_CORE_SECTIONS = frozenset({"gateway", "connectors", "tariff", "smtp", "policy", "retention"})


class SettingsSection(Protocol):
    """What the configuration needs of an extension (``gateway.extensions.Extension`` has
    it): its name, which names its section too, and the parser of that section."""

    name: str

    def parse_settings(self, table: Mapping[str, Any] | None) -> object:
        """The extension's settings from its ``[name]`` table (None: the section is absent,
        the defaults); raises ``ConfigError`` naming the key (``name.key: …``)."""
        ...


@functools.cache
def _installed() -> dict[str, SettingsSection]:
    found = sorted(entry_points(group=_EXTENSION_GROUP), key=lambda ep: ep.name)
    sections: dict[str, SettingsSection] = {}
    for ep in found:
        ext = ep.load()
        sections[ext.name] = ext
    return sections


def extension_settings(tables: Mapping[str, Any] | None = None) -> dict[str, object]:
    """Every installed extension's settings, each parsed from its table in ``tables``
    (by section name; an extension without one gets its defaults). A table that no
    extension owns is an unknown section."""
    tables = tables or {}
    installed = _installed()
    for name in tables:
        if name not in installed:
            raise ConfigError(f"{name}: unknown section")
    out: dict[str, object] = {}
    for name, ext in installed.items():
        table = tables.get(name)
        if table is not None and not isinstance(table, dict):
            raise ConfigError(f"{name}: expected a table")
        out[name] = ext.parse_settings(table)
    return out


# -- end extensions' sections --------------------------------------------------------------


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


def typed(table: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``table[key]`` if it is a ``kind`` (a bool is no number), else a ``ConfigError``
    naming ``where.key``. Public: extensions' section parsers check their keys with it."""
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
        "bell_interval": (int, float),
        "keep_alive_seconds": (int, float),
        "max_attachment_bytes": int,
        "plugins": list,
    }
    for key in table:
        if key not in known:
            raise ConfigError(f"gateway.{key}: unknown key")
        out[key] = typed(table, key, known[key], "gateway")
    if "timezone" in out:
        try:
            ZoneInfo(out["timezone"])
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(f"gateway.timezone: unknown time zone {out['timezone']!r}") from None
    if "public_url" in out and not out["public_url"].startswith(("http://", "https://")):
        raise ConfigError("gateway.public_url: must start with http:// or https://")
    for key in ("job_max_attempts", "max_attachment_bytes"):
        if key in out and out[key] < 1:
            raise ConfigError(f"gateway.{key}: must be at least 1")
    if "bell_interval" in out and not 0 <= out["bell_interval"] <= 1:
        raise ConfigError("gateway.bell_interval: must be from 0 to 1 (seconds)")
    if "keep_alive_seconds" in out and out["keep_alive_seconds"] <= 0:
        raise ConfigError("gateway.keep_alive_seconds: must be more than 0")
    if "workers" in out and out["workers"] < 0:
        raise ConfigError("gateway.workers: must be 0 (no job workers) or more")
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
        cid = typed(raw, "id", str, where)
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", cid):
            raise ConfigError(f"{where}.id: use letters, digits, '-' and '_' only")
        if cid in seen:
            raise ConfigError(f"{where}.id: duplicate connector id {cid!r}")
        seen.add(cid)
        channels = typed(raw, "channels", list, where)
        for ch in channels:
            if ch not in {c.value for c in Channel}:
                raise ConfigError(f"{where}.channels: unknown channel {ch!r}")
        if not channels:
            raise ConfigError(f"{where}.channels: must name at least one channel")
        numbers = None
        if "numbers" in raw:
            try:
                numbers = frozenset(
                    normalize(n, region) for n in typed(raw, "numbers", list, where)
                )
            except Exception as exc:
                raise ConfigError(f"{where}.numbers: {exc}") from None
        options = {k: v for k, v in raw.items() if k not in {"id", "kind", "channels", "numbers"}}
        kind = typed(raw, "kind", str, where)
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
        values["sender" if key == "from" else key] = typed(table, key, known[key], "smtp")
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


def _retention(table: Any) -> Retention:
    if not isinstance(table, dict):
        raise ConfigError("retention: expected a table")
    values: dict[str, Any] = {}
    for key in table:
        if key not in Retention.__dataclass_fields__:
            raise ConfigError(f"retention.{key}: unknown key")
        kind: type | tuple[type, ...] = int if key == "batch" else (int, float)
        if isinstance(table[key], bool):
            raise ConfigError(f"retention.{key}: expected a number, got {table[key]!r}")
        values[key] = typed(table, key, kind, "retention")
        if not values[key] > 0:
            raise ConfigError(f"retention.{key}: must be greater than 0")
    return Retention(**values)


def parse_settings(data: dict[str, Any], source: str | None = None) -> Settings:
    """Settings from an already-parsed TOML document (plus the environment)."""
    data = _interpolate(data, "config")
    # Every section that is not the core's belongs to an extension (or is unknown).
    tables = {k: v for k, v in data.items() if k not in _CORE_SECTIONS}
    for key in tables:
        if key not in _installed():
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
    if "retention" in data:
        values["retention"] = _retention(data["retention"])
    values["extensions"] = extension_settings(tables)
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
