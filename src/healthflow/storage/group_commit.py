"""Group commit: concurrent writes to one store share a transaction, its round trips and its fsync.

There is no timer. A write that arrives while the store is idle commits at once, alone; writes
that arrive while a commit is in flight wait for it and then commit together. So a quiet store
adds no latency and a busy one batches itself, as databases do with their own log.

A batch is all or nothing, so when a batch fails (a taken MRN, a stale version) its writes are
replayed one by one, each in its own transaction: only the bad write fails, with its own error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog

from healthflow.observability import metrics
from healthflow.storage.batching import Batch, Batcher

log = structlog.get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    """Writes submitted together are committed together; each caller returns after its commit.

    `write_batch` writes items in one transaction and returns one result per item, in order;
    `write_one` writes a single item in its own transaction.
    """

    def __init__(
        self,
        name: str,
        *,
        write_batch: Callable[[Sequence[T]], Awaitable[Sequence[R]]],
        write_one: Callable[[T], Awaitable[R]],
        max_batch: int = 256,
    ) -> None:
        self.name = name
        self._write_batch = write_batch
        self._write_one = write_one
        self._batches = Batcher[T, R](name, handle=self._commit, max_batch=max_batch)
        self._sizes = metrics.GROUP_COMMIT_SIZE.labels(store=name)

    async def submit(self, item: T) -> R:
        """Commit `item` (with whatever else is waiting); its result, or what its write raised."""
        return await self._batches.submit(item)

    async def submit_many(self, items: Sequence[T]) -> list[R | BaseException]:
        """`submit` for each item at once (they commit together, in order); each result, or
        what its write raised."""
        return await self._batches.submit_many(items)

    async def _commit(self, batch: Batch[T, R]) -> None:
        self._sizes.observe(len(batch))
        if len(batch) > 1:
            try:
                results = await self._write_batch([item for item, _ in batch])
            except Exception:
                log.info("group_commit_replayed_one_by_one", store=self.name, size=len(batch))
            else:
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():  # the caller gave up waiting; its write stands
                        future.set_result(result)
                return
        for item, future in batch:
            try:
                result = await self._write_one(item)
            except Exception as exc:  # the caller's own error: it raises from submit()
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(result)
