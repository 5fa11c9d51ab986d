"""Identifiers and secrets.

Object ids are ``<prefix>_`` + 26 Crockford base-32 characters: 48 bits of milliseconds
then 80 random bits (the ULID layout), so ids sort by creation time and both stores can
page "newest first" by id alone.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A new time-sortable id; monotonic within one process even inside one millisecond."""
    global _last_ms, _last_rand
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms <= _last_ms:
            ms = _last_ms
            _last_rand += 1
        else:
            _last_ms = ms
            _last_rand = int.from_bytes(os.urandom(10), "big") >> 1
        rand = _last_rand
    return f"{prefix}_{_encode(ms, 10)}{_encode(rand, 16)}"


def new_secret(prefix: str) -> str:
    """A new API secret, shown once to its owner."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_secret(secret: str) -> str:
    """The stored form of a secret (SHA-256, hex); secrets are random, so no salt is needed."""
    return hashlib.sha256(secret.encode()).hexdigest()
