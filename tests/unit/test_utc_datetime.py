"""UtcDateTime on SQLite writes exactly the text SQLAlchemy's own DATETIME writes, faster."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, create_engine, select
from sqlalchemy.dialects import sqlite

from healthflow.storage.engine import UtcDateTime

INSTANTS = [
    datetime(2026, 12, 1, 11, 8, 4, 123_456, tzinfo=UTC),
    datetime(2026, 12, 1, 11, 8, 4, tzinfo=UTC),  # no microseconds: still six digits
    datetime(2026, 12, 1, 13, 8, 4, 5, tzinfo=timezone(timedelta(hours=2))),  # converted
    datetime(2026, 3, 29, 2, 30, tzinfo=ZoneInfo("Europe/London")),
    datetime(1, 1, 1, 0, 0, tzinfo=UTC),
    datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
]


def _processors() -> tuple:
    dialect = sqlite.dialect()
    ours = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    stock = DateTime().dialect_impl(dialect).bind_processor(dialect)
    return ours, stock


@pytest.mark.parametrize("at", INSTANTS)
def test_the_text_is_sqlalchemys_for_the_same_utc_instant(at: datetime) -> None:
    ours, stock = _processors()
    assert ours(at) == stock(at.astimezone(UTC).replace(tzinfo=None))


def test_instants_in_any_order_and_repeats_get_their_own_text() -> None:
    # the processor keeps the last instant's text: repeats, alternations and equal instants
    # that are other objects must each still get the text of the instant itself
    ours, stock = _processors()
    twin = datetime(2026, 12, 1, 11, 8, 4, 123_456, tzinfo=UTC)  # equal to INSTANTS[0], not it
    order = [*INSTANTS, INSTANTS[2], INSTANTS[2], INSTANTS[0], twin, INSTANTS[3], INSTANTS[0]]
    assert [ours(at) for at in order] == [
        stock(at.astimezone(UTC).replace(tzinfo=None)) for at in order
    ]
    with pytest.raises(ValueError, match="naive"):  # a refused value is refused every time
        ours(datetime(2026, 12, 1, 11, 8))
    assert ours(INSTANTS[0]) == stock(INSTANTS[0].replace(tzinfo=None))


def test_naive_datetimes_are_refused_and_none_is_null() -> None:
    ours, _ = _processors()
    with pytest.raises(ValueError, match="naive"):
        ours(datetime(2026, 12, 1, 11, 8))
    assert ours(None) is None


def test_round_trip_and_order_through_sqlite() -> None:
    table = Table(
        "t", MetaData(), Column("n", Integer, primary_key=True), Column("at", UtcDateTime)
    )
    engine = create_engine("sqlite://")
    table.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"n": n, "at": at} for n, at in enumerate(INSTANTS)])
        back = dict(conn.execute(select(table.c.n, table.c.at)).all())
        assert back == dict(enumerate(INSTANTS))  # aware UTC out, the same instants
        assert all(at.tzinfo is UTC for at in back.values())
        later = conn.execute(select(table.c.n).where(table.c.at > INSTANTS[1])).scalars()
        assert sorted(later) == sorted(n for n, at in enumerate(INSTANTS) if at > INSTANTS[1])
