"""Group read: concurrent lookups by key in one store share a query, as writes share a commit.

The same shape as group commit (group_commit.py), with no timer: a lookup that arrives while
the store is idle is read at once, alone; lookups that arrive while a read is in flight wait for
it and are then read together, with `WHERE key IN (...)`. The MQTT subscriber stores what
arrived together side by side, so a burst of messages from many monitors checks their devices
in one query instead of one each.

Every lookup reads the store: nothing is remembered between reads, so a change (a device bound
to another patient) is seen by the next lookup after it commits.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class GroupRead(Generic[K, V]):
    """`get(key)` is `read_many([key, ...]).get(key)`, with concurrent keys read together."""

    def __init__(
        self,
        name: str,
        *,
        read_many: Callable[[Sequence[K]], Awaitable[Mapping[K, V]]],
        max_batch: int = 500,
    ) -> None:
        self.name = name
        self._read_many = read_many
        self._max_batch = max_batch
        self._waiting: list[tuple[K, asyncio.Future[V | None]]] = []
        self._reader: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        """What the store holds under `key` (None for nothing), or what its read raised."""
        future: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, future))
        if self._reader is None or self._reader.done():
            # its own task, as for group commit: a caller that gives up cannot abandon a read
            # that other callers wait on, and it does not run as the request that started it
            self._reader = asyncio.create_task(
                self._read_waiting(), name=self.name, context=contextvars.Context()
            )
        return await future

    async def _read_waiting(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                try:
                    found = await self._read_many(list(dict.fromkeys(key for key, _ in batch)))
                except Exception as exc:  # every caller of this batch raises it
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                else:
                    for key, future in batch:
                        if not future.done():  # the caller gave up waiting
                            future.set_result(found.get(key))
        finally:
            # only reached early by cancellation (shutdown): nobody may wait for ever
            for _, future in self._waiting:
                if not future.done():
                    future.set_exception(RuntimeError(f"{self.name} is stopping"))
            self._waiting.clear()
