from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

from healthflow.ids import uuid7, uuid7_texts

AT = datetime(2026, 12, 1, 11, 8, 4, 123_456, tzinfo=UTC)
AT_MILLIS = int(AT.timestamp() * 1000)


def _check(value: UUID) -> None:
    assert value.version == 7
    assert value.variant == "specified in RFC 4122"
    assert value.int >> 80 == AT_MILLIS


def test_uuid7_carries_the_instant_version_and_variant() -> None:
    _check(uuid7(AT))


def test_uuid7_texts_are_canonical_uuid7s_of_the_instant() -> None:
    texts = uuid7_texts(AT, 500)
    assert len(texts) == 500
    for text in texts:
        value = UUID(text)
        assert str(value) == text  # lower-case, hyphenated: what str(uuid7(at)) gives
        _check(value)


def test_uuid7_texts_are_distinct_and_follow_time() -> None:
    earlier, later = uuid7_texts(AT, 10_000), uuid7_texts(AT + timedelta(milliseconds=1), 100)
    assert len(set(earlier)) == 10_000
    assert max(earlier) < min(later)  # text order is time order across milliseconds
    # the random part really varies: every bit outside version and variant takes both values
    ints = [UUID(t).int & ((1 << 80) - 1) for t in earlier]
    either = 0
    for bit in range(80):
        if bit in range(76, 80) or bit in (62, 63):
            continue
        seen = {(v >> bit) & 1 for v in ints}
        either += seen == {0, 1}
    assert either == 80 - 6


def test_no_texts_for_no_readings() -> None:
    assert uuid7_texts(AT, 0) == []
