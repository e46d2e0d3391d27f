"""The in-process event bus: consumer groups, at-least-once delivery, retries, dead letters."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import structlog

from healthflow.messaging.events import CloudEvent
from healthflow.observability import metrics
from healthflow.ports import Check, Clock, DeadLetter, DeadLetterStore, Sink

log = structlog.get_logger(__name__)


class _Settlement:
    """What one `publish` waits for: every delivery of its events settled.

    One counter and one future per publish, not a future per delivery gathered at the end: a
    batch of 1,000 readings made 1,000 futures and 1,000 done-callbacks for the same answer.
    """

    __slots__ = ("_left", "done")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._left = 1  # the publisher's own hold, released once every delivery is handed over
        self.done: asyncio.Future[None] = loop.create_future()

    def add(self) -> None:
        self._left += 1

    def settle(self) -> None:
        self._left -= 1
        if self._left == 0:
            self.done.set_result(None)


@dataclass(slots=True)
class _Delivery:
    """One event for one group, the same object through every attempt until it is settled."""

    bus: MemoryBus
    group: str
    event: CloudEvent
    attempt: int
    settlement: _Settlement = field(repr=False)
    settled: bool = False

    async def ack(self) -> None:
        self.settle()

    async def reject(self, error: str) -> None:
        await self.bus._retry_or_dead_letter(self, error)

    def settle(self) -> None:
        if not self.settled:
            self.settled = True
            self.settlement.settle()


class MemoryBus:
    """EventBus in one process.

    `publish` returns once every subscribed group has settled the event (acked, or dead-lettered
    after its retries). The outbox marks a row published only then, so a crash at any point
    leaves unsettled events in the outbox to be published again: nothing accepted is lost.
    Publishes made at once reach each group in the order they were made, so a relay may keep
    several batches in flight without mixing a partition's events.
    """

    def __init__(
        self, *, dead_letters: DeadLetterStore, clock: Clock, retry_delays_s: Sequence[float]
    ) -> None:
        self._groups: dict[str, Sink] = {}
        self._types: dict[str, frozenset[str] | None] = {}
        self._handing_over: dict[str, asyncio.Lock] = {}
        self._dead_letters = dead_letters
        self._clock = clock
        self._retry_delays = tuple(retry_delays_s)
        self._timers: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def backend(self) -> str:
        return "memory"

    async def start(self) -> None:
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        for timer in list(self._timers):
            timer.cancel()
        await asyncio.gather(*self._timers, return_exceptions=True)

    def subscribe(self, group: str, sink: Sink, *, types: Collection[str] | None = None) -> None:
        if group in self._groups:
            raise ValueError(f"consumer group {group!r} already has a subscriber")
        self._groups[group] = sink
        self._types[group] = frozenset(types) if types is not None else None
        self._handing_over[group] = asyncio.Lock()

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        if self._closed:
            raise RuntimeError("bus is closed")
        settlement = _Settlement(asyncio.get_running_loop())
        for group, sink in self._groups.items():
            wanted = self._types[group]
            chosen = [e for e in events if wanted is None or e.type in wanted]
            if not chosen:
                continue
            # Publishes at once hand a group their events whole, in the order they were made: a
            # full queue makes each waiting put queue up again, so events handed over side by
            # side would interleave, and a partition's events of two batches mix.
            async with self._handing_over[group]:
                for event in chosen:
                    settlement.add()
                    await sink(_Delivery(self, group, event, 1, settlement))  # a full queue waits
        settlement.settle()  # the publisher's hold: from now on the deliveries decide
        await settlement.done
        metrics.EVENTS_PUBLISHED.labels(bus="memory").inc(len(events))

    async def waiting(self, group: str) -> int:
        # publish awaits each sink, so nothing waits here: a full worker queue holds the relay
        # back and the backlog stays in the outbox, where the intake counts it
        return 0

    async def dead_letters(self, *, group: str | None, limit: int) -> list[DeadLetter]:
        return await self._dead_letters.list(group=group, limit=limit)

    async def dead_letter_count(self) -> int:
        return await self._dead_letters.count()

    async def check(self) -> Check:
        return Check(
            not self._closed,
            {"backend": "memory", "groups": sorted(self._groups), "retrying": len(self._timers)},
        )

    async def _retry_or_dead_letter(self, delivery: _Delivery, error: str) -> None:
        if delivery.settled:
            return
        if delivery.attempt <= len(self._retry_delays):
            metrics.EVENTS_RETRIED.labels(group=delivery.group).inc()
            self._schedule(delivery, self._retry_delays[delivery.attempt - 1])
            return
        letter = DeadLetter(
            delivery.group, delivery.event, error, delivery.attempt, self._clock.now()
        )
        try:
            await self._dead_letters.add(letter)
        except Exception:
            # the dead-letter store is down: keep the event in retry rather than lose it
            log.exception(
                "dead_letter_store_failed", group=delivery.group, event_id=letter.event.id
            )
            self._schedule(delivery, self._retry_delays[-1] if self._retry_delays else 1.0)
            return
        metrics.EVENTS_DEAD_LETTERED.labels(group=delivery.group).inc()
        log.error(
            "event_dead_lettered",
            group=delivery.group,
            event_id=delivery.event.id,
            event_type=delivery.event.type,
            attempts=delivery.attempt,
            error=error,
        )
        delivery.settle()

    def _schedule(self, delivery: _Delivery, delay_s: float) -> None:
        timer = asyncio.create_task(self._redeliver(delivery, delay_s))
        self._timers.add(timer)
        timer.add_done_callback(self._timers.discard)

    async def _redeliver(self, delivery: _Delivery, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        delivery.attempt += 1  # the rejected attempt is over: nothing else holds this object
        await self._groups[delivery.group](delivery)
