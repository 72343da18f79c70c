"""Resource identifiers: 20 characters, time-ordered so that sorting by id is creation order."""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghijklmnopqrstuv"  # base32hex keeps lexical order = numeric order


def _b32(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """``prefix`` (3 chars) + 10 chars of microsecond time + 7 random chars."""
    return prefix + _b32(time.time_ns() // 1000, 10) + _b32(secrets.randbits(35), 7)
