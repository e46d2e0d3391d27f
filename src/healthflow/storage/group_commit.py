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


class GroupCommit(Generic[T]):
    """Writes submitted together are committed together; each caller returns after its commit."""

    def __init__(
        self,
        name: str,
        *,
        write_batch: Callable[[Sequence[T]], Awaitable[None]],
        write_one: Callable[[T], Awaitable[None]],
        max_batch: int = 256,
    ) -> None:
        self.name = name
        self._write_batch = write_batch
        self._write_one = write_one
        self._max_batch = max_batch
        self._waiting: list[tuple[T, asyncio.Future[None]]] = []
        self._committer: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Commit `item` (with whatever else is waiting); raises what its own write raised."""
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._committer is None or self._committer.done():
            # one committer at a time, its own task: a caller that is cancelled (request
            # timeout) cannot abandon a half-written batch that other callers wait on; an empty
            # context, so it does not log as (or act for) the request that happened to start it
            self._committer = asyncio.create_task(
                self._commit_waiting(), name=self.name, context=contextvars.Context()
            )
        await future

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

    async def _commit(self, batch: list[tuple[T, asyncio.Future[None]]]) -> None:
        if len(batch) > 1:
            try:
                await self._write_batch([item for item, _ in batch])
            except Exception:
                log.info("group_commit_replayed_one_by_one", store=self.name, size=len(batch))
            else:
                for _, future in batch:
                    _settle(future, None)
                return
        for item, future in batch:
            try:
                await self._write_one(item)
            except Exception as exc:  # the caller's own error: it raises from submit()
                _settle(future, exc)
            else:
                _settle(future, None)


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():  # the caller gave up waiting; its write stands
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)
