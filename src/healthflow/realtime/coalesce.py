"""Per-key rate limiting that keeps the newest value: high-rate vitals become a few a second."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    """At most one item per key per `min_interval_s`; items in between collapse into the newest.

    The first item of a quiet key passes at once (leading edge); later ones wait, and only the
    newest of them is released once the interval has passed (trailing edge), so the last value
    always arrives. Memory is one pending item and one timestamp per recently active key.
    """

    def __init__(self, min_interval_s: float, monotonic: Callable[[], float]) -> None:
        self._interval = min_interval_s
        self._now = monotonic
        self._last_sent: dict[str, float] = {}
        self._pending: dict[str, T] = {}
        self.coalesced = 0

    def offer(self, key: str, item: T) -> T | None:
        """The item if it may go now; otherwise None and it is held as the key's newest."""
        now = self._now()
        last = self._last_sent.get(key)
        if last is None or now - last >= self._interval:
            if key in self._pending:
                # a held older item is superseded by this one going out now
                del self._pending[key]
                self.coalesced += 1
            self._last_sent[key] = now
            return item
        if key in self._pending:
            self.coalesced += 1
        self._pending[key] = item
        return None

    def due(self) -> list[T]:
        """Held items whose interval has passed, in the order their keys first waited."""
        now = self._now()
        released: list[T] = []
        for key in list(self._pending):
            if now - self._last_sent[key] >= self._interval:
                released.append(self._pending.pop(key))
                self._last_sent[key] = now
        # keys quiet for a whole interval need no memory: their next item passes at once anyway
        for key in [k for k, t in self._last_sent.items() if now - t >= self._interval]:
            if key not in self._pending:
                del self._last_sent[key]
        return released

    @property
    def pending(self) -> int:
        return len(self._pending)
