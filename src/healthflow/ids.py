"""Time-ordered identifiers (UUIDv7, RFC 9562), so keyset pages and indexes follow arrival order."""

from __future__ import annotations

import os
from datetime import datetime
from uuid import UUID


def uuid7(at: datetime) -> UUID:
    """A UUIDv7 whose first 48 bits are `at` in Unix milliseconds and the rest random."""
    millis = int(at.timestamp() * 1000) & ((1 << 48) - 1)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis << 80) | rand
    value &= ~(0xF << 76)
    value |= 0x7 << 76  # version 7
    value &= ~(0x3 << 62)
    value |= 0x2 << 62  # RFC 9562 variant
    return UUID(int=value)
