"""Configuration: TOML, ${ENV} interpolation, overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import load_settings, parse_settings
from gateway.errors import ConfigError


def test_defaults() -> None:
    s = parse_settings({})
    assert s.store.startswith("sqlite:///") and s.timezone == "Europe/Berlin"
    assert s.tariff.included == {"sms": 100, "whatsapp": 1000, "fax": 100}
    assert s.connectors == () and s.smtp is None
    assert s.keep_alive_seconds == 75  # beyond the 60 s idle limit of common proxies
    assert s.bell_interval == 0.05


def test_full_file_with_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret")
    monkeypatch.setenv("CARRIER_TOKEN", "tok")
    monkeypatch.delenv("GATEWAY_STORE", raising=False)
    path = tmp_path / "gw.toml"
    path.write_text(
        """
[gateway]
store = "redis://127.0.0.1:6390/2"
blobs = "/srv/blobs"
public_url = "https://gw.example.com"
timezone = "Europe/Vienna"

[[connectors]]
id = "carrier-a"
kind = "twilio"
channels = ["sms"]
numbers = ["0151 12345671"]
auth_token = "${CARRIER_TOKEN}"

[[connectors]]
id = "wa"
kind = "whatsapp_cloud"
channels = ["whatsapp"]

[tariff]
included = { sms = 50 }
overage_price = { sms = "0.075", fax = 0.2 }
thresholds = [50, 100]

[smtp]
host = "mail.example.com"
port = 465
starttls = false
password = "${SMTP_PASSWORD}"
from = "fax@example.com"
"""
    )
    s = load_settings(path)
    assert s.store == "redis://127.0.0.1:6390/2" and s.timezone == "Europe/Vienna"
    a, wa = s.connectors
    assert a.numbers == frozenset({"+4915112345671"}) and a.options == {"auth_token": "tok"}
    assert wa.numbers is None and wa.channels == frozenset({"whatsapp"})
    assert s.tariff.included["sms"] == 50 and s.tariff.included["fax"] == 100
    assert s.tariff.overage_price_micros["sms"] == 75_000
    assert s.tariff.overage_price_micros["fax"] == 200_000
    assert s.tariff.thresholds == (50, 100)
    assert s.smtp is not None and s.smtp.password == "s3cret" and s.smtp.sender == "fax@example.com"
    monkeypatch.setenv("GATEWAY_STORE", "sqlite:////tmp/x.db")
    monkeypatch.setenv("GATEWAY_BLOBS", "/tmp/blobs")
    s = load_settings(path)
    assert s.store == "sqlite:////tmp/x.db" and s.blobs == "/tmp/blobs"


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"gateway": {"timezone": "Mars/Base"}}, "gateway.timezone"),
        ({"gateway": {"workers": -1}}, "gateway.workers"),
        ({"gateway": {"workers": "4"}}, "gateway.workers"),
        ({"gateway": {"keep_alive_seconds": 0}}, "gateway.keep_alive_seconds"),
        ({"gateway": {"bell_interval": -0.01}}, "gateway.bell_interval"),
        ({"gateway": {"bell_interval": 2}}, "gateway.bell_interval"),
        ({"gateway": {"keep_alive_seconds": "long"}}, "gateway.keep_alive_seconds"),
        ({"gateway": {"colour": "blue"}}, "gateway.colour"),
        ({"gateway": {"store": "mysql://x"}}, "gateway.store"),
        ({"gateway": {"public_url": "gw.example.com"}}, "gateway.public_url"),
        ({"connectors": [{"id": "a", "kind": "x"}]}, "connectors[0].channels"),
        ({"connectors": [{"id": "a", "kind": "x", "channels": ["mms"]}]}, "connectors[0].channels"),
        ({"connectors": [{"id": "a b", "kind": "x", "channels": ["sms"]}]}, "connectors[0].id"),
        (
            {"connectors": [{"id": "a", "kind": "x", "channels": ["sms"], "numbers": ["12"]}]},
            "connectors[0].numbers",
        ),
        (
            {"connectors": [{"id": "a", "kind": "x", "channels": ["sms"]}] * 2},
            "connectors[1].id",
        ),
        ({"tariff": {"included": {"sms": -1}}}, "tariff.included.sms"),
        ({"tariff": {"overage_price": {"sms": "cheap"}}}, "tariff.overage_price.sms"),
        ({"smtp": {"port": 25}}, "smtp.host"),
        ({"smtp": {"host": "x", "password": "${NOT_SET_ANYWHERE}"}}, "NOT_SET_ANYWHERE"),
        ({"surprise": {}}, "surprise"),
    ],
)
def test_errors_name_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_settings(data)
    assert key in str(exc.value)


def test_unreadable_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file"):
        load_settings(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[gateway\nstore = 1")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_settings(bad)


def test_unknown_connector_kind_is_named() -> None:
    import asyncio

    from gateway.process import open_runtime

    settings = parse_settings(
        {
            "gateway": {"store": "sqlite:///:memory:"},
            "connectors": [{"id": "x", "kind": "carrier-pigeon", "channels": ["sms"]}],
        }
    )
    with pytest.raises(ConfigError, match="carrier-pigeon"):
        asyncio.run(open_runtime(settings))
