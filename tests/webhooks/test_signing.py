"""Standard Webhooks signing, checked against the reference ``standardwebhooks`` package."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from webhooks import signing
from webhooks.models import WebhookEndpoint


def test_secrets_are_whsec_and_32_random_bytes() -> None:
    secrets = {signing.new_secret() for _ in range(50)}
    assert len(secrets) == 50
    for secret in secrets:
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    with pytest.raises(ValueError, match="base64"):
        signing.secret_key("whsec_not base64!")


def test_signature_matches_the_reference_implementation() -> None:
    secret = signing.new_secret()
    now = datetime.now(UTC)
    stamp = int(now.timestamp())
    body = '{"type":"message.received","data":{"text":"Grüße"}}'.encode()
    header = signing.signature_header([secret], "whd_1", stamp, body)
    assert header == Webhook(secret).sign(
        "whd_1", datetime.fromtimestamp(stamp, UTC), body.decode()
    )
    headers = {"webhook-id": "whd_1", "webhook-timestamp": str(stamp), "webhook-signature": header}
    assert Webhook(secret).verify(body, headers) == {
        "type": "message.received",
        "data": {"text": "Grüße"},
    }
    for changed in ({"webhook-id": "whd_2"}, {"webhook-timestamp": str(stamp + 1)}):
        with pytest.raises(WebhookVerificationError):
            Webhook(secret).verify(body, {**headers, **changed})
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body + b" ", headers)


def test_rotation_keeps_the_old_secret_for_24_hours() -> None:
    now = datetime.now(UTC)
    endpoint = WebhookEndpoint("whep_1", "team_1", "https://x.example/", [], True,
                               signing.new_secret(), now, now)  # fmt: skip
    old = endpoint.secret
    assert signing.active_secrets(endpoint, now) == [old]
    new = signing.rotate(endpoint, now)
    assert new != old and endpoint.old_secret == old
    assert endpoint.old_secret_until == now + timedelta(hours=24)
    assert signing.active_secrets(endpoint, now + timedelta(hours=23)) == [new, old]
    assert signing.active_secrets(endpoint, now + timedelta(hours=24)) == [new]
    stamp, body = int(now.timestamp()), b'{"a":1}'
    header = signing.signature_header(signing.active_secrets(endpoint, now), "whd_9", stamp, body)
    headers = {"webhook-id": "whd_9", "webhook-timestamp": str(stamp), "webhook-signature": header}
    for secret in (old, new):
        assert Webhook(secret).verify(body, headers) == {"a": 1}
    # A second rotation drops the oldest secret.
    newest = signing.rotate(endpoint, now + timedelta(hours=1))
    assert signing.active_secrets(endpoint, now + timedelta(hours=1)) == [newest, new]
