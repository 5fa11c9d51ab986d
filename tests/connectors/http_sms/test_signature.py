"""X-Twilio-Signature: the published vector, repeated names, ports and negative cases."""

from __future__ import annotations

import pytest

from connectors.http_sms.signature import compute, url_variants, verify

TOKEN = "12345"
URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
PARAMS = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
PUBLISHED = "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_published_vector() -> None:
    assert compute(TOKEN, URL, PARAMS) == PUBLISHED
    assert verify(TOKEN, URL, PARAMS, PUBLISHED)


def test_parameter_order_does_not_matter() -> None:
    reversed_pairs = list(reversed(list(PARAMS.items())))
    assert compute(TOKEN, URL, reversed_pairs) == PUBLISHED


def test_names_sort_case_sensitively() -> None:
    # Byte order puts "To" before "body": a case-insensitive sort would differ.
    mixed = {"body": "x", "To": "+1"}
    expected = compute(TOKEN, URL + "To+1" + "bodyx", {})
    assert compute(TOKEN, URL, mixed) == expected


@pytest.mark.parametrize(
    ("token", "url", "params", "sig"),
    [
        pytest.param("54321", URL, PARAMS, PUBLISHED, id="wrong token"),
        pytest.param(TOKEN, URL.replace("foo=1", "foo=2"), PARAMS, PUBLISHED, id="other query"),
        pytest.param(TOKEN, URL.replace("https", "http"), PARAMS, PUBLISHED, id="other scheme"),
        pytest.param(TOKEN, URL.replace(".com", ".org"), PARAMS, PUBLISHED, id="other host"),
        pytest.param(TOKEN, URL, {**PARAMS, "Digits": "1235"}, PUBLISHED, id="changed value"),
        pytest.param(TOKEN, URL, {**PARAMS, "Body": "hi"}, PUBLISHED, id="added param"),
        pytest.param(
            TOKEN, URL, {k: v for k, v in PARAMS.items() if k != "To"}, PUBLISHED, id="dropped"
        ),
        pytest.param(TOKEN, URL, PARAMS, "1" + PUBLISHED[1:], id="tampered signature"),
        pytest.param(TOKEN, URL, PARAMS, "", id="empty signature"),
        pytest.param(TOKEN, URL, PARAMS, None, id="missing signature"),
        pytest.param(TOKEN, URL, PARAMS, "ä" + PUBLISHED[1:], id="non-ASCII signature"),
    ],
)
def test_negative_cases(token: str, url: str, params: dict[str, str], sig: str | None) -> None:
    assert not verify(token, url, params, sig)


def test_repeated_names_follow_twilio_validators() -> None:
    # Twilio's validators: names sorted, each name's distinct values sorted. The value
    # below is the vector of twilio-python's own test suite for repeated names.
    pairs = [
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]
    assert compute(TOKEN, URL, pairs) == "IK+Dwps556ElfBT0I3Rgjkr1wJU="
    assert verify(TOKEN, URL, pairs, "IK+Dwps556ElfBT0I3Rgjkr1wJU=")


def test_repeated_names_signed_in_sent_order_also_verify() -> None:
    pairs = [("MediaUrl", "https://b.example/2"), ("MediaUrl", "https://a.example/1")]
    in_order = compute(TOKEN, URL + "MediaUrlhttps://b.example/2MediaUrlhttps://a.example/1", {})
    assert in_order != compute(TOKEN, URL, pairs)
    assert verify(TOKEN, URL, pairs, in_order)
    swapped = list(reversed(pairs))
    assert not verify(TOKEN, URL, swapped, in_order)  # order is part of that form


def test_ports_are_tried_with_and_without() -> None:
    assert url_variants("https://gw.example.com/hooks") == [
        "https://gw.example.com/hooks",
        "https://gw.example.com:443/hooks",
    ]
    assert url_variants("http://gw.example.com:8080/h?x=1") == [
        "http://gw.example.com:8080/h?x=1",
        "http://gw.example.com/h?x=1",
    ]
    assert url_variants("https://[::1]:8443/h")[1] == "https://[::1]/h"
    # Signed with the default port, verified against the URL without it, and back.
    with_port = compute(TOKEN, "https://mycompany.com:443/myapp.php?foo=1&bar=2", PARAMS)
    assert verify(TOKEN, URL, PARAMS, with_port)
    assert verify(TOKEN, "https://mycompany.com:443/myapp.php?foo=1&bar=2", PARAMS, PUBLISHED)
    # Like Twilio's validators: any port may have been left out of the signed URL.
    assert verify(TOKEN, URL.replace(".com", ".com:8443"), PARAMS, PUBLISHED)


def test_unicode_values_are_signed_as_utf8() -> None:
    params = {"Body": "Grüße 😀", "From": "+4917612345678"}
    sig = compute("tok", "https://gw.example.com/hooks/tw1/inbound", params)
    assert verify("tok", "https://gw.example.com/hooks/tw1/inbound", params, sig)
    assert not verify(
        "tok", "https://gw.example.com/hooks/tw1/inbound", {**params, "Body": "Gruse 😀"}, sig
    )
