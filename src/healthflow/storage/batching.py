"""What group commit and group read share: callers that arrive while a batch is in flight wait
for it and are then handled together, with no timer.

A caller that arrives while nothing is in flight is handled at once, alone (in the next turn of
the event loop, with whoever else arrived in the same turn). The batches run in a task of their
own with an empty context: a caller that gives up (a request timeout) cannot abandon a batch
other callers wait on, and the batch does not log as, or act for, the request that started it.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

# one batch: each caller's item with the future its result or error goes to
Batch = list[tuple[T, asyncio.Future[R]]]


class Batcher(Generic[T, R]):
    """`submit(item)` returns what `handle` set on the item's future; batches of `max_batch`
    at most, in arrival order."""

    def __init__(
        self,
        name: str,
        *,
        handle: Callable[[Batch[T, R]], Awaitable[None]],
        max_batch: int,
    ) -> None:
        self.name = name
        self._handle = handle
        self._max_batch = max_batch
        self._waiting: Batch[T, R] = []
        self._runner: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._start()
        return await future

    async def submit_many(self, items: Sequence[T]) -> list[R | BaseException]:
        """`submit` for each item, waited for together: each result, or the error it raised."""
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[R]] = [loop.create_future() for _ in items]
        self._waiting.extend(zip(items, futures, strict=True))
        self._start()
        return await asyncio.gather(*futures, return_exceptions=True)

    def _start(self) -> None:
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(
                self._run_waiting(), name=self.name, context=contextvars.Context()
            )

    async def _run_waiting(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                await self._handle(batch)
        finally:
            # only reached early by cancellation (shutdown): nobody may wait for ever
            for _, future in self._waiting:
                if not future.done():
                    future.set_exception(RuntimeError(f"{self.name} is stopping"))
            self._waiting.clear()
