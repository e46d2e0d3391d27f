"""Group commit: concurrent writes to one store share a transaction, its round trips and its fsync.

There is no timer. A write that arrives while the store is idle commits at once, alone; writes
that arrive while a commit is in flight wait for it and then commit together. So a quiet store
adds no latency and a busy one batches itself, as databases do with their own log.

A batch is all or nothing, so when a batch fails (a taken MRN, a stale version) its writes are
replayed one by one, each in its own transaction: only the bad write fails, with its own error.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog

from healthflow.observability import metrics

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
        self._max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._committer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        """Commit `item` (with whatever else is waiting); its result, or what its write raised."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._committer is None or self._committer.done():
            # one committer at a time, its own task: a caller that is cancelled (request
            # timeout) cannot abandon a half-written batch that other callers wait on; an empty
            # context, so it does not log as (or act for) the request that happened to start it
            self._committer = asyncio.create_task(
                self._commit_waiting(), name=self.name, context=contextvars.Context()
            )
        return await future

    async def _commit_waiting(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                metrics.GROUP_COMMIT_SIZE.labels(store=self.name).observe(len(batch))
                await self._commit(batch)
        finally:
            # only reached early by cancellation (shutdown): nobody may wait for ever
            for _, future in self._waiting:
                if not future.done():
                    future.set_exception(RuntimeError(f"{self.name} is stopping"))
            self._waiting.clear()

    async def _commit(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
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
