"""``gateway admin member set-password`` and the portal's part of ``gateway demo``."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import httpx
import pytest

from gateway.api.app import create_app
from gateway.cli import main
from gateway.clock import SystemClock
from gateway.config import Settings
from gateway.demo import create_demo, demo_settings, extension_demos
from gateway.portal.roles import PORTAL_STORE
from gateway.process import open_runtime
from tests.gateway.portal.conftest import sign_in

pytestmark = pytest.mark.anyio


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_set_password_creates_the_account_and_ends_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GATEWAY_STORE", f"sqlite:///{tmp_path}/gw.db")
    monkeypatch.setenv("GATEWAY_BLOBS", str(tmp_path / "blobs"))
    code, out, _ = run(["admin", "team", "create", "--name", "Acme", "--json"], capsys)
    team = json.loads(out)["id"]
    code, out, _ = run(
        [
            "admin",
            "member",
            "create",
            "--team",
            team,
            "--name",
            "Ann",
            "--email",
            "Ann@Example.com",
            "--mobile",
            "015112345671",
            "--addons",
            "sms",
            "--json",
        ],
        capsys,
    )
    member = json.loads(out)["id"]
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    code, out, err = run(
        [
            "admin",
            "member",
            "set-password",
            member,
            "--role",
            "admin",
            "--password-stdin",
            "--json",
        ],
        capsys,
    )
    assert code == 0, err
    assert json.loads(out) == {
        "member_id": member,
        "email": "ann@example.com",
        "role": "admin",
        "sessions_ended": 0,
    }
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    code, out, err = run(["admin", "member", "set-password", member, "--password-stdin"], capsys)
    assert code == 1 and "at least 10 characters" in err
    code, out, err = run(
        ["admin", "member", "set-password", "mem_nobody", "--password-stdin"], capsys
    )
    assert code == 1 and "does not exist" in err
    # Without a terminal and without --password-stdin it says how.
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    code, out, err = run(["admin", "member", "set-password", member], capsys)
    assert code == 1 and "--password-stdin" in err


async def test_demo_prints_sign_ins_that_work(tmp_path: Path) -> None:
    settings: Settings = demo_settings(tmp_path, "127.0.0.1", 8080)
    rt = await open_runtime(settings, clock=SystemClock(), start_connectors=False)
    try:
        info = await create_demo(rt.store, rt.clock, settings)
        banner = "\n".join(await extension_demos(rt, info))
        assert "Portal       http://127.0.0.1:8080/" in banner
        sign_ins = re.findall(r"^\s+(\S+@\S+)\s+(demo-\S+)( \(team admin\))?$", banner, re.M)
        assert [s[0] for s in sign_ins] == [m.email for m in info.members]
        assert sign_ins[0][2] and not sign_ins[1][2]
        account = await rt.role(PORTAL_STORE).get_account(info.members[0].id)
        assert account is not None and account.role == "admin"
        app = create_app(rt, workers=False)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url=settings.public_url
        ) as client:
            email, password, _ = sign_ins[1]
            assert (await sign_in(client, email, password)).status_code == 303
    finally:
        await rt.aclose()
