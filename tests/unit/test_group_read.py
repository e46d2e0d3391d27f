"""Group read: lookups that arrive together share one read; every lookup reads the store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from healthflow.storage.group_read import GroupRead


class Unreachable(Exception):
    pass


class Table:
    """A store that records each read's keys; it fails every read while `down`."""

    def __init__(self, rows: dict[str, int]) -> None:
        self.rows = rows
        self.reads: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.down = False

    async def read_many(self, keys: Sequence[str]) -> dict[str, int]:
        await self.gate.wait()
        self.reads.append(list(keys))
        if self.down:
            raise Unreachable("store down")
        return {key: self.rows[key] for key in keys if key in self.rows}


def reader(table: Table, max_batch: int = 500) -> GroupRead[str, int]:
    return GroupRead("test", read_many=table.read_many, max_batch=max_batch)


async def test_a_lone_lookup_is_read_at_once_by_itself() -> None:
    table = Table({"a": 1})
    assert await reader(table).get("a") == 1
    assert await reader(table).get("nobody") is None
    assert table.reads == [["a"], ["nobody"]]


async def test_lookups_made_together_share_one_read_and_each_gets_its_own_row() -> None:
    table = Table({"a": 1, "b": 2, "c": 3})
    group = reader(table)
    found = await asyncio.gather(*(group.get(key) for key in ["a", "b", "x", "c", "a"]))
    assert found == [1, 2, None, 3, 1]
    assert table.reads == [["a", "b", "x", "c"]]  # one read, each key once


async def test_lookups_arriving_during_a_read_are_read_together_after_it() -> None:
    table = Table({"a": 1, "b": 2, "c": 3})
    group = reader(table)
    table.gate.clear()
    first = asyncio.create_task(group.get("a"))
    await asyncio.sleep(0)  # "a" is being read, held at the gate
    rest = [asyncio.create_task(group.get(key)) for key in "bc"]
    await asyncio.sleep(0)
    table.gate.set()
    assert await asyncio.gather(first, *rest) == [1, 2, 3]
    assert table.reads == [["a"], ["b", "c"]]


async def test_a_read_never_exceeds_its_bound() -> None:
    table = Table({key: n for n, key in enumerate("abcde")})
    group = reader(table, max_batch=2)
    assert await asyncio.gather(*(group.get(key) for key in "abcde")) == [0, 1, 2, 3, 4]
    assert table.reads == [["a", "b"], ["c", "d"], ["e"]]


async def test_nothing_is_remembered_between_reads() -> None:
    table = Table({"a": 1})
    group = reader(table)
    assert await group.get("a") == 1
    table.rows["a"] = 2  # e.g. a device bound to another patient
    assert await group.get("a") == 2


async def test_a_failed_read_fails_each_of_its_lookups_and_the_next_read_is_tried_afresh() -> None:
    table = Table({"a": 1, "b": 2})
    group = reader(table)
    table.down = True
    results = await asyncio.gather(group.get("a"), group.get("b"), return_exceptions=True)
    assert [type(r) for r in results] == [Unreachable, Unreachable]
    table.down = False
    assert await group.get("b") == 2


async def test_a_caller_that_gives_up_does_not_stop_the_read_the_others_wait_on() -> None:
    table = Table({"a": 1, "b": 2})
    group = reader(table)
    table.gate.clear()
    impatient = asyncio.create_task(group.get("a"))
    patient = asyncio.create_task(group.get("b"))
    await asyncio.sleep(0)
    impatient.cancel()
    await asyncio.sleep(0)
    table.gate.set()
    assert await patient == 2
    with pytest.raises(asyncio.CancelledError):
        await impatient
