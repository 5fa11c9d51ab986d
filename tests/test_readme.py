"""The README's examples against the code: the outbound policy's rule names and refusal
texts are what the gateway answers, and the forwarding and webhook ``curl`` examples work
against a gateway set up like the demo."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gateway.demo import DemoInfo
from gateway.destinations import DEFAULT_POLICY
from gateway.errors import DestinationBlocked
from gateway.models import Channel
from gateway.policy import screen
from tests.gateway.portal.browser import LiveServer, demo_gateway

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def section(title: str) -> str:
    """The README's section under the heading ``title`` (up to the next heading)."""
    start = README.index(f" {title}\n")
    end = README.find("\n#", start)
    return README[start:end]


def test_policy_rule_names_and_texts_are_the_gateways() -> None:
    text = section("Outbound policy")
    code = (ROOT / "gateway/destinations.py").read_text()
    rules = set(re.findall(r'"rule": "(\w+)"', code))
    assert rules == {"locked_prefix", "blocked_prefix", "country"}
    named = set(re.findall(r"`(\w+_prefix|country)`", text))
    assert named == rules
    examples = re.findall(
        r'`"((?:\+\d+ matches|country [A-Z]{2} of)[^"]+)"`', " ".join(text.split())
    )
    assert len(examples) == 3
    for example in examples:
        number = re.search(r"\+\d{6,}", example)
        assert number is not None
        with pytest.raises(DestinationBlocked) as refused:
            screen(DEFAULT_POLICY, Channel.SMS, number.group())
        assert refused.value.detail == example
        assert f'`{refused.value.extra["rule"]}` (`"{example}"' in " ".join(text.split())


def curl_examples(title: str) -> list[tuple[str, str, str]]:
    """(method, path, body) of each ``curl -X`` example in a section."""
    text = section(title)
    out = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        words = shlex.split(block.replace("\\\n", " "))
        if words[:1] != ["curl"]:
            continue
        method = words[words.index("-X") + 1]
        url = next(w for w in words if w.startswith("http://127.0.0.1:8080/"))
        body = words[words.index("-d") + 1]
        out.append((method, url.removeprefix("http://127.0.0.1:8080"), body))
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, DemoInfo]]:
    """A gateway set up like the demo."""
    with demo_gateway(tmp_path_factory.mktemp("readme")) as live:
        yield live


@pytest.mark.slow
@pytest.mark.parametrize("title", ["Forwarding inbound SMS and WhatsApp", "Webhooks"])
def test_curl_examples_work_against_the_demo(title: str, demo: tuple[LiveServer, DemoInfo]) -> None:
    server, info = demo
    examples = curl_examples(title)
    assert examples, title
    with httpx.Client(base_url=server.url, timeout=30) as client:
        for method, path, body in examples:
            path = path.replace("mem_…", info.members[0].id)
            target = json.loads(body).get("url")
            if target is not None:  # examples send nothing off this machine
                assert httpx.URL(target).host in ("127.0.0.1", "::1", "localhost"), target
            r = client.request(
                method, path, content=body, headers={"Authorization": f"Bearer {info.key}",
                                                     "Content-Type": "application/json"},
            )  # fmt: skip
            assert r.status_code in (200, 201), (path, r.text)
