"""Standard Webhooks signatures and the endpoints' signing secrets.

Every delivery carries three headers (https://www.standardwebhooks.com/):

* ``webhook-id``: the delivery's id, the same on every attempt and replay (receivers
  deduplicate on it);
* ``webhook-timestamp``: the attempt's time in whole seconds since the epoch;
* ``webhook-signature``: ``v1,<base64 HMAC-SHA256>`` over ``"{id}.{timestamp}.{body}"``,
  keyed with the base64-DECODED part of the secret after ``whsec_``. While a rotated-out
  secret is still valid, one signature per secret, separated by a space (new one first).

A secret is ``whsec_`` + base64 of 32 random bytes. Rotating keeps the old secret valid
for :data:`ROTATION_OVERLAP` (24 hours), so receivers can switch without losing a
delivery; a second rotation within that time drops the oldest secret.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from webhooks.models import WebhookEndpoint

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
ROTATION_OVERLAP = timedelta(hours=24)


def new_secret() -> str:
    """A new signing secret, ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@functools.lru_cache(maxsize=4096)
def secret_key(secret: str) -> bytes:
    """The HMAC key of a secret: its base64 part, decoded."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("a webhook secret is whsec_ followed by base64") from None


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """One ``v1,<base64>`` signature of a delivery."""
    signed = b"%s.%d." % (msg_id.encode(), timestamp) + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(keys: Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per active secret."""
    return " ".join(sign(secret, msg_id, timestamp, body) for secret in keys)


def active_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The secrets that sign a delivery at ``now``: the current one, then the old one
    while it is still valid."""
    keys = [endpoint.secret]
    if endpoint.old_secret and endpoint.old_secret_until and now < endpoint.old_secret_until:
        keys.append(endpoint.old_secret)
    return keys


def rotate(endpoint: WebhookEndpoint, now: datetime) -> str:
    """Give ``endpoint`` a new secret (in memory); the current one stays valid for
    :data:`ROTATION_OVERLAP`. Returns the new secret."""
    endpoint.old_secret = endpoint.secret
    endpoint.old_secret_until = now + ROTATION_OVERLAP
    endpoint.secret = new_secret()
    return endpoint.secret
