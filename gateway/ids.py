"""Identifiers and secrets.

Object ids are ``<prefix>_`` + 26 Crockford base-32 characters: 48 bits of milliseconds
then 80 random bits, so ids sort by creation time and both stores can page "newest
first" by id alone.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Ten bits at a time: a table of every pair of symbols makes an id 13 lookups.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = range(120, -1, -10)
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0


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
    # 48 bits of ms + 80 random bits as 26 base-32 symbols (two leading zero bits):
    # fixed length, most significant first, so string order is time order.
    value = (ms << 80) | rand
    pairs = _PAIRS
    return prefix + "_" + "".join([pairs[(value >> s) & 1023] for s in _SHIFTS])


def new_secret(prefix: str) -> str:
    """A new API secret, shown once to its owner."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_secret(secret: str) -> str:
    """The stored form of a secret (SHA-256, hex); secrets are random, so no salt is needed."""
    return hashlib.sha256(secret.encode()).hexdigest()
