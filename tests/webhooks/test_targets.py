"""Webhook URLs and the address policy against SSRF."""

from __future__ import annotations

import pytest

from webhooks.targets import TargetError, TargetRefused, parse_target, refusal, resolve_checked

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("gopher://example.com/", "http:// or https://"),
        ("https://user:pw@example.com/", "user info"),
        ("https://user@example.com/", "user info"),
        ("https://example.com/a b", "spaces or control"),
        ("https://example.com/\r\nX: 1", "spaces or control"),
        ("https://example.com/#frag", "fragment"),
        ("https:///path", "must name a host"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://example.com:0/", "port 0"),
        ("http://[fe80::1%25eth0]/", "zone"),
        ("https://" + "a" * 2100 + ".com/", "at most 2048"),
        ("", "non-empty"),
    ],
)
def test_bad_urls(url: str, reason: str) -> None:
    with pytest.raises(TargetError, match=reason):
        parse_target(url)


def test_good_urls_are_split() -> None:
    t = parse_target("HTTPS://Hooks.Example.COM/in?x=1&y=2")
    assert (t.scheme, t.host, t.port, t.path, t.host_header) == (
        "https", "hooks.example.com", 443, "/in?x=1&y=2", "hooks.example.com",
    )  # fmt: skip
    t = parse_target("http://[2001:4860::1]:8080")
    assert (t.host, t.port, t.path, t.host_header) == (
        "2001:4860::1",
        8080,
        "/",
        "[2001:4860::1]:8080",
    )
    assert parse_target("http://bücher.example/").host == "xn--bcher-kva.example"


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.0.1", "private"),
        ("169.254.169.254", "cloud metadata"),
        ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("169.254.10.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fc00::1", "unique local"),
        ("fd12:3456::1", "unique local"),
        ("100.64.0.1", "CGNAT"),
        ("224.0.0.251", "multicast"),
        ("ff02::1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.10", "private"),
        ("::ffff:127.0.0.1", "loopback address (embedded in IPv6 as 127.0.0.1)"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("2002:a00:1::", "private address (embedded in IPv6 as 10.0.0.1)"),
        ("64:ff9b::c0a8:1", "private address (embedded in IPv6 as 192.168.0.1)"),
        ("fec0::1", "site-local"),
        ("2001:db8::1", "private"),
    ],
)
def test_refused_addresses(address: str, reason: str) -> None:
    found = refusal(address)
    assert found is not None and reason in found


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.215.14", "2001:4860:4860::8888",
                                     "::ffff:8.8.8.8", "64:ff9b::808:808"])  # fmt: skip
def test_public_addresses_pass(address: str) -> None:
    assert refusal(address) is None


async def test_resolution_is_checked_whole() -> None:
    async def resolver(host: str, port: int) -> list[str]:
        return {"ok.test": ["93.184.215.14", "2001:4860::1"], "bad.test": ["93.184.215.14",
                "127.0.0.1"], "none.test": []}[host]  # fmt: skip

    assert await resolve_checked(parse_target("https://ok.test/"), False, resolver) == [
        "93.184.215.14", "2001:4860::1",
    ]  # fmt: skip
    with pytest.raises(TargetRefused, match=r"bad\.test resolves to 127\.0\.0\.1, a loopback"):
        await resolve_checked(parse_target("https://bad.test/"), False, resolver)
    assert await resolve_checked(parse_target("https://bad.test/"), True, resolver) == [
        "93.184.215.14", "127.0.0.1",
    ]  # fmt: skip
    with pytest.raises(TargetRefused, match="does not resolve"):
        await resolve_checked(parse_target("https://none.test/"), False, resolver)
    with pytest.raises(TargetRefused, match="does not resolve"):
        await resolve_checked(parse_target("https://nxdomain.invalid/"), False,
                              __import__("webhooks.targets").targets.system_resolver)  # fmt: skip
