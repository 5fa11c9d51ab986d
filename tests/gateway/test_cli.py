"""The ``gateway`` command: admin commands on a temporary SQLite store, config errors, demo."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.auth import KeyCache
from gateway.cli import build_parser, main
from gateway.clock import FrozenClock
from gateway.config import load_settings
from gateway.demo import create_demo, demo_connectors, demo_settings, describe
from gateway.errors import Unauthorized
from gateway.ids import hash_secret, new_id
from gateway.models import Job, Plan
from gateway.store import open_store

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def store_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh SQLite store that every ``main([...])`` call of the test uses."""
    url = f"sqlite:///{tmp_path}/gateway.db"
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    monkeypatch.setenv("GATEWAY_STORE", url)
    monkeypatch.setenv("GATEWAY_BLOBS", str(tmp_path / "blobs"))
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``gateway argv…`` in-process: (exit status, stdout, stderr)."""
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    """``gateway admin … --json``: the one JSON object it prints (exit 0 expected)."""
    code, out, err = run(capsys, *argv, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert isinstance(data, dict)
    return data


def new_team(capsys: pytest.CaptureFixture[str], plan: str = "starter") -> str:
    """Create a team and return its id."""
    team = run_json(capsys, "admin", "team", "create", "--name", "Acme", "--plan", plan)
    return str(team["id"])


def test_team_create_json(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    team = run_json(
        capsys,
        "admin",
        "team",
        "create",
        "--name",
        "Acme GmbH",
        "--plan",
        "business",
        "--credit-limit",
        "12.5",
    )
    assert team["id"].startswith("team_")
    assert team["name"] == "Acme GmbH"
    assert team["plan"] == "business"
    assert team["credit_limit"] == "12.50"
    assert team["region"] == "DE"


def test_team_create_text_and_json_before_subcommand(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "admin", "team", "create", "--name", "Acme")
    assert code == 0
    assert "created team team_" in out and "starter plan" in out
    code, out, _ = run(capsys, "admin", "--json", "team", "create", "--name", "Beta")
    assert code == 0
    assert json.loads(out)["plan"] == "starter"


def test_team_create_bad_arguments(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "admin", "team", "create", "--name", "A", "--plan", "gold")
    assert code == 2 and "invalid choice" in err
    code, _, err = run(capsys, "admin", "team", "create", "--name", "A", "--credit-limit", "-1")
    assert code == 2 and "non-negative" in err
    code, _, err = run(capsys, "admin", "team", "create", "--name", "A", "--region", "XX")
    assert code == 1 and err.startswith("error: ") and "region" in err


def test_member_create_normalizes_national_numbers(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    team_id = new_team(capsys)
    member = run_json(
        capsys,
        "admin",
        "member",
        "create",
        "--team",
        team_id,
        "--name",
        "Anna",
        "--email",
        "anna@example.com",
        "--mobile",
        "0151 12345671",
        "--fax",
        "030 12345670",
        "--addons",
        "sms, fax",
    )
    assert member["id"].startswith("mem_")
    assert member["team_id"] == team_id
    assert member["mobile"] == "+4915112345671"
    assert member["fax"] == "+493012345670"
    assert member["addons"] == ["fax", "sms"]
    assert member["active"] is True


def test_member_create_invalid_numbers(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    team_id = new_team(capsys)
    base = ["admin", "member", "create", "--team", team_id, "--name", "A", "--email", "a@b.de"]
    code, _, err = run(capsys, *base, "--mobile", "030 12345670")
    assert code == 1 and "not a mobile number" in err
    code, _, err = run(capsys, *base, "--fax", "0151 12345671")
    assert code == 1 and "fax needs a landline" in err
    code, _, err = run(capsys, *base, "--mobile", "12")
    assert code == 1 and err.startswith("error: ")
    assert "Traceback" not in err


def test_member_create_unknown_addon(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    team_id = new_team(capsys)
    code, out, err = run(
        capsys,
        "admin",
        "member",
        "create",
        "--team",
        team_id,
        "--name",
        "A",
        "--email",
        "a@b.de",
        "--mobile",
        "0151 12345671",
        "--addons",
        "sms,mms",
        "--json",
    )
    assert code == 1
    assert out == ""
    assert err.startswith("error: ") and "mms" in err and "whatsapp" in err


def test_member_create_addon_needs_number(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    team_id = new_team(capsys)
    code, _, err = run(
        capsys,
        "admin",
        "member",
        "create",
        "--team",
        team_id,
        "--name",
        "A",
        "--email",
        "a@b.de",
        "--mobile",
        "0151 12345671",
        "--addons",
        "fax",
    )
    assert code == 1 and "--fax" in err


def test_plan_cap_refuses_third_member_on_starter(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    team_id = new_team(capsys, "starter")
    for i in range(Plan.STARTER.max_members):
        run_json(
            capsys,
            "admin",
            "member",
            "create",
            "--team",
            team_id,
            "--name",
            f"M{i}",
            "--email",
            f"m{i}@example.com",
            "--mobile",
            f"0151 1234567{i}",
        )
    code, out, err = run(
        capsys,
        "admin",
        "member",
        "create",
        "--team",
        team_id,
        "--name",
        "Third",
        "--email",
        "third@example.com",
        "--json",
    )
    assert code == 1
    assert out == ""
    assert err.strip() == (
        f"error: team {team_id} is on the starter plan, which allows at most 2 active members"
    )


def test_number_taken(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    team_id = new_team(capsys, "business")
    other_id = new_team(capsys, "business")
    run_json(
        capsys,
        "admin",
        "member",
        "create",
        "--team",
        team_id,
        "--name",
        "A",
        "--email",
        "a@b.de",
        "--mobile",
        "+4915112345671",
    )
    code, _, err = run(
        capsys,
        "admin",
        "member",
        "create",
        "--team",
        other_id,
        "--name",
        "B",
        "--email",
        "b@b.de",
        "--mobile",
        "0151 12345671",
    )
    assert code == 1
    assert err.startswith("error: ") and "+4915112345671" in err


def test_unknown_team(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    new_team(capsys)  # the store exists (a read never creates one: tests/gateway/test_demo.py)
    code, _, err = run(capsys, "admin", "member", "list", "--team", "team_nope")
    assert (code, err.strip()) == (1, "error: team team_nope does not exist")


def test_key_create_prints_secret_once_and_stores_only_the_hash(
    store_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    team_id = new_team(capsys)
    data = run_json(capsys, "admin", "key", "create", "--team", team_id)
    secret = data["key"]
    assert data["id"].startswith("key_") and data["team_id"] == team_id
    assert data["member_id"] is None
    assert secret.startswith(data["prefix"])

    async def check() -> None:
        # main() runs its own event loop, so the store is checked in a separate one.
        store = await open_store(store_url)
        try:
            stored = await store.api_key_by_hash(hash_secret(secret))
            assert stored is not None and stored.id == data["id"]
            assert stored.key_hash == hash_secret(secret)
            assert secret not in json.dumps(stored.to_dict())
            principal = await KeyCache(store).resolve(f"Bearer {secret}")
            assert principal.team_id == team_id
        finally:
            await store.aclose()

    asyncio.run(check())
    # Text mode: the secret appears exactly once.
    code, out, _ = run(capsys, "admin", "key", "create", "--team", team_id)
    assert code == 0
    assert out.count("gwk_") == 1


def test_member_key(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    team_id = new_team(capsys)
    member = run_json(
        capsys,
        "admin",
        "member",
        "create",
        "--team",
        team_id,
        "--name",
        "A",
        "--email",
        "a@b.de",
    )
    data = run_json(capsys, "admin", "key", "create", "--team", team_id, "--member", member["id"])
    assert data["member_id"] == member["id"]
    other = new_team(capsys)
    code, _, err = run(capsys, "admin", "key", "create", "--team", other, "--member", member["id"])
    assert code == 1 and "does not exist" in err


def test_member_list_and_team_show(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    team_id = new_team(capsys, "business")
    assert run_json(capsys, "admin", "member", "list", "--team", team_id) == {"members": []}
    names = ["Anna", "Ben"]
    for i, name in enumerate(names):
        run_json(
            capsys,
            "admin",
            "member",
            "create",
            "--team",
            team_id,
            "--name",
            name,
            "--email",
            f"{name.lower()}@example.com",
            "--mobile",
            f"0151 1234567{i}",
            "--addons",
            "whatsapp",
        )
    listed = run_json(capsys, "admin", "member", "list", "--team", team_id)
    assert [m["name"] for m in listed["members"]] == names
    assert all(m["id"].startswith("mem_") for m in listed["members"])

    shown = run_json(capsys, "admin", "team", "show", team_id)
    assert shown["id"] == team_id and shown["plan"] == "business"
    assert shown["member_count"] == 2 and shown["active_members"] == 2
    assert shown["max_members"] == 10
    assert [m["name"] for m in shown["members"]] == names
    assert shown["quota"]["overage_cost"] == "0.00"

    code, out, _ = run(capsys, "admin", "team", "show", team_id)
    assert code == 0
    assert team_id in out and "2 of 10 active members" in out and "Anna" in out
    code, out, _ = run(capsys, "admin", "member", "list", "--team", team_id)
    assert code == 0 and "Anna" in out and "Ben" in out


def test_bad_config_file_names_the_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GATEWAY_STORE", raising=False)
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    config = tmp_path / "gateway.toml"
    config.write_text('[gateway]\nstore = "sqlite:///x.db"\nworkers = "four"\n')
    code, out, err = run(capsys, "admin", "--config", str(config), "team", "create", "--name", "A")
    assert code == 2
    assert out == ""
    assert err.startswith("error: gateway.workers:")
    assert "Traceback" not in err
    # --config also works after the subcommand, and a missing file is a config error too.
    code, _, err = run(
        capsys, "admin", "team", "create", "--name", "A", "--config", str(tmp_path / "nope.toml")
    )
    assert code == 2 and "nope.toml" in err


def test_config_file_store_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GATEWAY_STORE", raising=False)
    monkeypatch.delenv("GATEWAY_CONFIG", raising=False)
    config = tmp_path / "gateway.toml"
    config.write_text(f'[gateway]\nstore = "sqlite:///{tmp_path}/from-config.db"\nregion = "AT"\n')
    team = run_json(capsys, "admin", "team", "create", "--name", "A", "--config", str(config))
    assert (tmp_path / "from-config.db").exists()
    assert team["region"] == "AT"  # new teams default to gateway.region
    shown = run_json(capsys, "admin", "team", "show", team["id"], "--config", str(config))
    assert shown["id"] == team["id"]


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "admin", "team")
    assert code == 2 and "usage:" in err
    code, _, _ = run(capsys)
    assert code == 2
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "serve" in out and "admin" in out


def test_parser_accepts_every_command() -> None:
    parser = build_parser()
    args = parser.parse_args(["serve", "--config", "/etc/g.toml", "--host", "0.0.0.0"])
    assert (args.command, args.config, args.host, args.port) == (
        "serve",
        "/etc/g.toml",
        "0.0.0.0",
        8080,
    )
    assert parser.parse_args(["worker"]).command == "worker"
    assert parser.parse_args(["demo", "--port", "9000"]).port == 9000
    args = parser.parse_args(["admin", "--config", "a.toml", "key", "create", "--team", "t"])
    assert args.config == "a.toml" and args.member is None


def test_admin_jobs_list_and_retry(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``admin jobs`` on the configured store: empty, then a queued and a dead job."""
    new_team(capsys)  # the store exists (a read never creates one)
    assert run_json(capsys, "admin", "jobs", "list") == {"jobs": [], "waiting_for_handler": {}}
    assert run(capsys, "admin", "jobs", "list")[1] == "no jobs\n"

    async def fill() -> tuple[str, str]:
        store = await open_store(store_url)
        try:
            now = datetime.now(UTC)
            queued = Job(new_id("job"), "fax", {"n": 1}, now, 3, created_at=now)
            dead = Job(new_id("job"), "send", {"n": 2}, now, 1, created_at=now)
            await store.enqueue(queued)
            await store.enqueue(dead)
            [leased] = await store.lease_jobs(now, "w", timedelta(seconds=30), 1, kinds={"send"})
            await store.retry_job(leased.id, leased.token or "", now, "carrier gone")
            return queued.id, dead.id
        finally:
            await store.aclose()

    queued, dead = asyncio.run(fill())  # the lease also set the fax job aside (no handler)
    listing = run_json(capsys, "admin", "jobs", "list")
    assert [(j["id"], j["state"]) for j in listing["jobs"]] == [
        (queued, "queued"),
        (dead, "dead"),
    ]
    assert listing["waiting_for_handler"] == {"fax": 1}
    code, out, _ = run(capsys, "admin", "jobs", "list", "--state", "dead")
    assert code == 0 and f"{dead}  send  dead  attempts 1/1" in out
    assert "last error: carrier gone" in out and queued not in out
    assert run_json(capsys, "admin", "jobs", "list", "--kind", "send")["waiting_for_handler"] == {}
    code, _, err = run(capsys, "admin", "jobs", "list", "--state", "leased")
    assert code == 2 and "invalid choice" in err
    revived = run_json(capsys, "admin", "jobs", "retry", dead)
    assert (revived["state"], revived["attempts"]) == ("queued", 0)
    code, _, err = run(capsys, "admin", "jobs", "retry", dead)
    assert (
        code == 1
        and err == f"error: job {dead} is queued, not dead: only a dead job can be retried\n"
    )
    code, _, err = run(capsys, "admin", "jobs", "retry", "job_nope")
    assert code == 1 and "job job_nope does not exist" in err


def test_example_config_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GATEWAY_STORE", "GATEWAY_BLOBS", "GATEWAY_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SMTP_PASSWORD", "s3cret")
    settings = load_settings(ROOT / "config.example.toml")
    assert settings.store.startswith("sqlite://")
    assert settings.smtp is not None and settings.smtp.password == "s3cret"
    assert settings.connectors == ()
    assert settings.tariff.included == {"sms": 100, "whatsapp": 1000, "fax": 100}


async def test_create_demo(tmp_path: Path, clock: FrozenClock) -> None:
    settings = demo_settings(tmp_path, "0.0.0.0", 8080)
    assert settings.connectors == demo_connectors()
    assert settings.public_url == "http://127.0.0.1:8080"
    store = await open_store(settings.store)
    try:
        info = await create_demo(store, clock, settings)
        team = await store.get_team(info.team.id)
        assert team is not None
        assert team.plan == "business" and team.credit_limit_micros == 50_000_000
        members = await store.list_members(team.id)
        assert [m.name for m in members] == ["Anna Schmidt", "Ben Wagner", "Clara Hoffmann"]
        assert members[0].fax == "+4930123456701"
        assert members[0].addons == {"sms", "whatsapp", "fax"}
        assert all(m.mobile and m.mobile.startswith("+49151") for m in members)
        principal = await KeyCache(store).resolve(f"Bearer {info.key}")
        assert principal.team_id == team.id and principal.member_id is None
        banner = describe(info, settings)
        assert info.key in banner and "http://127.0.0.1:8080/v1/messages" in banner
        assert "channel_unavailable" in banner  # no carrier yet: the banner says so
    finally:
        await store.aclose()


@pytest.mark.slow
def test_console_script_as_subprocess(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "GATEWAY_STORE": f"sqlite:///{tmp_path}/gateway.db",
        "GATEWAY_BLOBS": str(tmp_path / "blobs"),
    }
    env.pop("GATEWAY_CONFIG", None)
    cmd = [
        sys.executable,
        "-m",
        "gateway.cli",
        "admin",
        "team",
        "create",
        "--name",
        "Sub",
        "--json",
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    team = json.loads(proc.stdout)
    assert team["id"].startswith("team_") and team["name"] == "Sub"
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "admin", "team", "show", "team_nope"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == "error: team team_nope does not exist"


# -- the demo's SMS through its SMSC simulator (connectors/smpp) --------------------------
async def test_demo_sms_is_delivered_and_arrives_for_the_member(tmp_path: Path) -> None:
    import httpx

    from connectors.smpp.demo import CONNECTOR_ID as SMS_CONNECTOR_ID
    from connectors.smpp.demo import SmscDemo
    from gateway.api.app import create_app
    from gateway.demo import demo_numbers
    from gateway.process import open_runtime, worker
    from gateway.store.base import MessageFilter

    settings = demo_settings(tmp_path, "127.0.0.1", 8080)
    carrier = SmscDemo()
    config = await carrier.start(settings.public_url, demo_numbers())
    settings = dataclasses.replace(settings, connectors=(config,))
    smsc = carrier.sim
    assert smsc is not None
    smsc.receipt_delay = 0.05  # the demo waits a second; the test need not
    try:
        rt = await open_runtime(settings)
        try:
            info = await create_demo(rt.store, rt.clock, settings)
            await rt.wait_started()
            assert rt.health()[SMS_CONNECTOR_ID].ok
            assert f"127.0.0.1:{smsc.port}" in carrier.banner()
            anna, ben = info.members[0], info.members[1]
            body = {"channel": "sms", "from": anna.mobile, "to": ben.mobile, "text": "Hallo!"}
            transport = httpx.ASGITransport(app=create_app(rt, workers=False))
            async with httpx.AsyncClient(transport=transport, base_url="http://demo") as client:
                headers = {"Authorization": f"Bearer {info.key}"}
                resp = await client.post("/v1/messages", json=body, headers=headers)
                assert resp.status_code == 202, resp.text
                message_id = resp.json()["id"]
                assert await worker(rt).run_once()
                async with asyncio.timeout(10):
                    while True:
                        msg = await client.get(f"/v1/messages/{message_id}", headers=headers)
                        if msg.json()["status"] == "delivered":
                            break
                        await asyncio.sleep(0.02)
                flt = MessageFilter(info.team.id, member_id=ben.id, direction="inbound")
                async with asyncio.timeout(10):
                    while not (page := await rt.store.list_messages(flt, None, 10)).items:  # noqa: ASYNC110
                        await asyncio.sleep(0.02)
                [inbound] = page.items
                assert (inbound.from_, inbound.to, inbound.text) == (
                    anna.mobile,
                    ben.mobile,
                    "Hallo!",
                )
        finally:
            await rt.aclose()
    finally:
        await carrier.stop()


def test_key_list_revoke_and_expiry(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    team_id = new_team(capsys)
    first = run_json(capsys, "admin", "key", "create", "--team", team_id)
    later = run_json(capsys, "admin", "key", "create", "--team", team_id, "--expires", "90d")
    assert first["expires_at"] is None and later["expires_at"] is not None
    fixed = run_json(
        capsys, "admin", "key", "create", "--team", team_id, "--expires", "2099-01-31T00:00:00Z"
    )
    assert fixed["expires_at"] == "2099-01-31T00:00:00.000Z"
    for bad in ("tomorrow", "0d", "2099-01-31T00:00:00", "2001-01-01T00:00:00Z"):
        code, _, err = run(capsys, "admin", "key", "create", "--team", team_id, "--expires", bad)
        assert code == 1 and "expir" in err, bad
    listed = run_json(capsys, "admin", "key", "list", "--team", team_id)["keys"]
    assert [k["id"] for k in listed] == [first["id"], later["id"], fixed["id"]]
    assert all("key" not in k and "key_hash" not in k for k in listed)
    code, out, _ = run(capsys, "admin", "key", "list", "--team", team_id)
    assert code == 0 and first["id"] in out and "gwk_" in out and first["key"] not in out

    assert run_json(capsys, "admin", "key", "revoke", "--team", team_id, first["id"]) == {
        "id": first["id"],
        "revoked": True,
    }
    code, _, err = run(capsys, "admin", "key", "revoke", "--team", team_id, first["id"])
    assert code == 1 and "does not exist" in err
    listed = run_json(capsys, "admin", "key", "list", "--team", team_id)["keys"]
    assert [k["id"] for k in listed] == [later["id"], fixed["id"]]

    async def revoked() -> None:
        store = await open_store(store_url)
        try:
            with pytest.raises(Unauthorized):
                await KeyCache(store).resolve(f"Bearer {first['key']}")
            assert (await KeyCache(store).resolve(f"Bearer {later['key']}")).team_id == team_id
        finally:
            await store.aclose()

    asyncio.run(revoked())


def test_operator_keys(store_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    made = run_json(capsys, "admin", "key", "create", "--operator")
    assert made["operator"] is True and made["team_id"] is None
    listed = run_json(capsys, "admin", "key", "list", "--operator")["keys"]
    assert [k["id"] for k in listed] == [made["id"]]
    code, _, err = run(capsys, "admin", "key", "create", "--operator", "--team", "team_x")
    assert code == 2 and "not allowed" in err
    run_json(capsys, "admin", "key", "revoke", "--operator", made["id"])
    assert run_json(capsys, "admin", "key", "list", "--operator") == {"keys": []}
