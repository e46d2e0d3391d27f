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

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, TypeVar

from healthflow.storage.batching import Batch, Batcher

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
        self._batches = Batcher[K, V | None](name, handle=self._read, max_batch=max_batch)

    async def get(self, key: K) -> V | None:
        """What the store holds under `key` (None for nothing), or what its read raised."""
        return await self._batches.submit(key)

    async def _read(self, batch: Batch[K, V | None]) -> None:
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
