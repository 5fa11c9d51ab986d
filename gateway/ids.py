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
# Ten bits at a time: a table of every pair of symbols.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0
_head = ""


def new_id(prefix: str) -> str:
    """A new time-sortable id; monotonic within one process even inside one millisecond."""
    global _last_ms, _last_rand, _head
    ms = time.time_ns() // 1_000_000
    with _lock:
        if ms <= _last_ms:
            _last_rand += 1
        else:
            _last_ms = ms
            _last_rand = int.from_bytes(os.urandom(10), "big") >> 1
            # 48 bits of ms + 80 random bits as 26 base-32 symbols (two leading zero
            # bits): fixed length, most significant first, so string order is time
            # order. The 10 symbols of the milliseconds change once per millisecond.
            _head = "".join([_PAIRS[(ms >> s) & 1023] for s in (40, 30, 20, 10, 0)])
        r = _last_rand
        head = _head
    p = _PAIRS
    # The 16 symbols of the 80 random bits, spelled out: this runs several times a send.
    return (
        f"{prefix}_{head}{p[r >> 70]}{p[(r >> 60) & 1023]}{p[(r >> 50) & 1023]}"
        f"{p[(r >> 40) & 1023]}{p[(r >> 30) & 1023]}{p[(r >> 20) & 1023]}"
        f"{p[(r >> 10) & 1023]}{p[r & 1023]}"
    )


def new_secret(prefix: str) -> str:
    """A new API secret, shown once to its owner."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def hash_secret(secret: str) -> str:
    """The stored form of a secret (SHA-256, hex); secrets are random, so no salt is needed."""
    return hashlib.sha256(secret.encode()).hexdigest()
