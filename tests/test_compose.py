"""compose.yaml: the production layout, and every gateway command in it parses."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.cli import build_parser

COMPOSE = Path(__file__).resolve().parents[1] / "compose.yaml"
CONFIG = "/etc/gateway/gateway.toml"


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    """The ``services`` of compose.yaml (YAML anchors and merge keys resolved)."""
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    result: dict[str, Any] = doc["services"]
    return result


def argv(service: dict[str, Any]) -> list[str]:
    """A service's command as an argument list."""
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def test_services_exist(services: dict[str, Any]) -> None:
    assert {"api", "worker", "redis"} <= set(services)


def test_redis_keeps_an_append_only_file(services: dict[str, Any]) -> None:
    redis = services["redis"]
    assert str(redis["image"]).startswith("redis:7")
    args = argv(redis)
    assert args[args.index("--appendonly") + 1] == "yes"
    assert any(str(v).endswith(":/data") for v in redis["volumes"])


@pytest.mark.parametrize("name", ["api", "worker"])
def test_gateway_services_share_redis_blobs_and_config(services: dict[str, Any], name: str) -> None:
    service = services[name]
    assert service["deploy"]["replicas"] >= 2
    env = service["environment"]
    assert env["GATEWAY_STORE"] == "redis://redis:6379/0"
    blob_mounts = [v for v in service["volumes"] if isinstance(v, str) and v.startswith("blobs:")]
    assert blob_mounts == [f"blobs:{env['GATEWAY_BLOBS']}"]
    config = [v for v in service["volumes"] if isinstance(v, dict) and v["target"] == CONFIG]
    assert config and config[0]["read_only"] is True
    assert "redis" in service["depends_on"]


def test_every_gateway_command_is_a_real_command(services: dict[str, Any]) -> None:
    parser = build_parser()
    seen = {}
    for name, service in services.items():
        args = argv(service)
        if not args or args[0] != "gateway":
            continue
        parsed = parser.parse_args(args[1:])  # a usage error raises SystemExit
        seen[name] = parsed.command
        assert parsed.config == CONFIG
    assert seen == {"api": "serve", "worker": "worker"}
    api = parser.parse_args(argv(services["api"])[1:])
    assert api.host == "0.0.0.0"
    assert api.no_workers  # API replicas run no jobs; the worker service does
    published = [str(p) for p in services["api"]["ports"]]
    assert all(p.endswith(f":{api.port}") for p in published)
