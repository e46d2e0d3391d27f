"""Time-ordered identifiers (UUIDv7, RFC 9562), so keyset pages and indexes follow arrival order."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from healthflow.randomness import token_bytes

_MILLIS = (1 << 48) - 1
# the 80 bits after the timestamp: version 7 in bits 76-79, the RFC 9562 variant in bits 62-63,
# random everywhere else
_RANDOM_BITS = ((1 << 80) - 1) & ~(0xF << 76) & ~(0x3 << 62)
_VERSION_VARIANT = (0x7 << 76) | (0x2 << 62)


def _millis(at: datetime) -> int:
    return int(at.timestamp() * 1000) & _MILLIS


def uuid7(at: datetime) -> UUID:
    """A UUIDv7 whose first 48 bits are `at` in Unix milliseconds and the rest random."""
    tail = (int.from_bytes(token_bytes(10), "big") & _RANDOM_BITS) | _VERSION_VARIANT
    return UUID(int=(_millis(at) << 80) | tail)


def uuid7_texts(at: datetime, count: int) -> list[str]:
    """`count` UUIDv7s of the instant `at`, as the canonical text `str(uuid7(at))` gives.

    The telemetry intake names every reading of a request: one clock conversion and one
    draw of randomness for all of them, and no `UUID` object each.
    """
    millis = _millis(at)
    head = f"{millis >> 16:08x}-{millis & 0xFFFF:04x}-"
    pool = token_bytes(10 * count)
    texts = []
    for start in range(0, 10 * count, 10):
        bits = (int.from_bytes(pool[start : start + 10], "big") & _RANDOM_BITS) | _VERSION_VARIANT
        tail = f"{bits:020x}"
        texts.append(f"{head}{tail[:4]}-{tail[4:8]}-{tail[8:]}")
    return texts
