"""Group commit: writes that arrive together share one commit; a bad write fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from healthflow.storage.group_commit import GroupCommit


class Refused(Exception):
    pass


class Log:
    """A store that records each commit's contents; items named 'bad' are refused."""

    def __init__(self) -> None:
        self.commits: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def write_batch(self, items: Sequence[str]) -> list[str]:
        await self.gate.wait()
        if "bad" in items:
            raise Refused("bad")
        self.commits.append(list(items))
        return [f"{item} in commit {len(self.commits)}" for item in items]

    async def write_one(self, item: str) -> str:
        (result,) = await self.write_batch([item])
        return result


def committer(log: Log, max_batch: int = 256) -> GroupCommit[str, str]:
    return GroupCommit(
        "test", write_batch=log.write_batch, write_one=log.write_one, max_batch=max_batch
    )


async def test_a_lone_write_commits_at_once_by_itself() -> None:
    log = Log()
    await committer(log).submit("a")
    assert log.commits == [["a"]]


async def test_writes_arriving_during_a_commit_commit_together_after_it() -> None:
    log = Log()
    group = committer(log)
    log.gate.clear()
    first = asyncio.create_task(group.submit("a"))
    await asyncio.sleep(0)  # "a" is now committing, held at the gate
    rest = [asyncio.create_task(group.submit(x)) for x in "bcd"]
    await asyncio.sleep(0)
    log.gate.set()
    results = await asyncio.gather(first, *rest)
    assert log.commits == [["a"], ["b", "c", "d"]]
    # each caller gets its own write's result
    assert results == ["a in commit 1", "b in commit 2", "c in commit 2", "d in commit 2"]


async def test_a_batch_never_exceeds_its_bound() -> None:
    log = Log()
    group = committer(log, max_batch=2)
    log.gate.clear()
    tasks = [asyncio.create_task(group.submit(x)) for x in "abcde"]
    await asyncio.sleep(0)
    log.gate.set()
    await asyncio.gather(*tasks)
    assert log.commits == [["a", "b"], ["c", "d"], ["e"]]


async def test_a_refused_write_fails_alone_and_the_others_commit() -> None:
    log = Log()
    group = committer(log)
    log.gate.clear()
    tasks = [asyncio.create_task(group.submit(x)) for x in ("a", "bad", "c")]
    await asyncio.sleep(0)
    log.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == "a in commit 1" and results[2] == "c in commit 2"
    assert isinstance(results[1], Refused)
    # the failed batch left nothing; each good write was then committed on its own
    assert log.commits == [["a"], ["c"]]


async def test_a_caller_that_stops_waiting_does_not_stop_the_others() -> None:
    log = Log()
    group = committer(log)
    log.gate.clear()
    impatient = asyncio.create_task(group.submit("a"))
    patient = asyncio.create_task(group.submit("b"))
    await asyncio.sleep(0)
    impatient.cancel()
    log.gate.set()
    await patient
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert log.commits == [["a", "b"]]


async def test_writes_submitted_at_once_commit_together_each_with_its_own_outcome() -> None:
    log = Log()
    group = committer(log, max_batch=3)
    log.gate.clear()
    alone = asyncio.create_task(group.submit("x"))  # committing while the others are handed in
    await asyncio.sleep(0)
    many = asyncio.create_task(group.submit_many(["a", "b", "c", "bad", "d"]))
    await asyncio.sleep(0)
    log.gate.set()
    results = await many
    assert await alone == "x in commit 1"
    # in order and within the bound; the batch holding the bad write was replayed one by one
    assert log.commits == [["x"], ["a", "b", "c"], ["d"]]
    assert results[:3] == ["a in commit 2", "b in commit 2", "c in commit 2"]
    assert isinstance(results[3], Refused)
    assert results[4] == "d in commit 3"
