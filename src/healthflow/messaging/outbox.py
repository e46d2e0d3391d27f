"""The outbox relay: publishes committed events to the bus, marks them sent once confirmed."""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Sequence

import structlog

from healthflow.messaging.events import CloudEvent
from healthflow.observability import metrics
from healthflow.ports import Clock, EventBus, Outbox, OutboxEntry
from healthflow.tasks import cancel_and_wait

log = structlog.get_logger(__name__)


class CommittedCopy:
    """What this process committed to an outbox, kept for its relay.

    The store hands over each commit's entries (`remember`, in sequence order); while they
    continue the relay's cursor exactly, the outbox's `pending` returns them (`take`) instead of
    selecting the rows back and decoding them again. Only a copy: rows are marked published in
    the table once the bus confirmed them, and whenever the copy does not continue the cursor (a
    restart, a rewind after a failed publish, a sequence gap, which PostgreSQL leaves for an
    insert skipped by `ON CONFLICT` or rows another process wrote, more than `keep` waiting),
    `take` gives nothing and the table is read as before.
    """

    def __init__(self, *, keep: int = 10_000) -> None:
        self._keep = keep
        self._entries: deque[OutboxEntry] = deque()

    def remember(self, entries: Sequence[OutboxEntry]) -> None:
        """Entries just committed, in sequence order, after the ones remembered before."""
        if len(self._entries) + len(entries) > self._keep:
            self._entries.clear()  # the relay is far behind: it reads the table until it catches up
        self._entries.extend(entries)

    def take(self, *, after_seq: int, limit: int) -> list[OutboxEntry]:
        """Up to `limit` remembered entries from `after_seq + 1` on, without a gap; else none."""
        entries = self._entries
        while entries and entries[0].seq <= after_seq:
            entries.popleft()  # read from the table meanwhile, or handed out before a rewind
        if not entries or entries[0].seq != after_seq + 1:
            return []
        taken = [entries.popleft()]
        while entries and len(taken) < limit and entries[0].seq == taken[-1].seq + 1:
            taken.append(entries.popleft())
        return taken


class OutboxRelay:
    """Reads unpublished outbox rows in commit order and publishes them in batches.

    Up to `max_in_flight` batches wait for confirmation at once. A row is marked published only
    after the bus confirmed it; a failed batch rewinds the cursor so its rows go out again, and a
    restart begins from the oldest unpublished row. Consumers dedupe by event id, so the repeats
    that at-least-once delivery allows have no second effect.
    """

    def __init__(
        self,
        outbox: Outbox,
        bus: EventBus,
        clock: Clock,
        *,
        batch_size: int,
        poll_interval_s: float,
        max_in_flight: int,
        publish_timeout_s: float = 120.0,
        rescan_when_idle: bool = True,
    ) -> None:
        self._outbox = outbox
        self._bus = bus
        self._clock = clock
        self._batch_size = batch_size
        self._poll_interval = poll_interval_s
        self._publish_timeout = publish_timeout_s
        self._slots = asyncio.Semaphore(max_in_flight)
        self._wake = asyncio.Event()
        self._cursor = 0
        self._inflight: set[asyncio.Task[None]] = set()
        self._failures = 0
        self._rewinds = 0
        # False only where rows commit in sequence order (one SQLite writer): none can appear
        # behind the cursor, so an idle relay goes on from it instead of from the oldest row
        self._rescan_when_idle = rescan_when_idle

    def wake(self) -> None:
        """Called after a commit so new rows go out without waiting for the next poll."""
        self._wake.set()

    def committed(self, entries: Sequence[OutboxEntry]) -> None:
        """A store's `on_commit`: the outbox keeps what was committed for the relay, which wakes."""
        self._outbox.remember(entries)
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._slots.acquire()
            rewinds = self._rewinds
            try:
                entries = await self._outbox.pending(after_seq=self._cursor, limit=self._batch_size)
            except Exception:
                self._slots.release()
                log.exception("outbox_read_failed")
                await asyncio.sleep(self._backoff())
                continue
            if self._rewinds != rewinds:
                # a failed batch rewound the cursor while we read: moving it on would skip that
                # batch for good, so read again from the rewound position
                self._slots.release()
                continue
            if not entries:
                self._slots.release()
                if not self._inflight and self._rescan_when_idle:
                    # On PostgreSQL sequence numbers are taken before commit, so a row can become
                    # visible behind the cursor; once idle, start over from the oldest unpublished.
                    self._cursor = 0
                await self._idle()
                continue
            self._cursor = entries[-1].seq
            task = asyncio.create_task(self._deliver(entries))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

    async def stop(self) -> None:
        await cancel_and_wait(list(self._inflight))

    async def _idle(self) -> None:
        self._wake.clear()
        try:
            async with asyncio.timeout(self._poll_interval):
                await self._wake.wait()
        except TimeoutError:
            pass

    async def _deliver(self, entries: list[OutboxEntry]) -> None:
        try:
            events: list[CloudEvent] = [e.event for e in entries]
            # a batch the bus never confirms must not hold its slot forever: time out, send again
            async with asyncio.timeout(self._publish_timeout):
                await self._bus.publish(events)
            await self._outbox.mark_published([e.seq for e in entries], self._clock.now())
            metrics.OUTBOX_RELAYED.inc(len(entries))
            self._failures = 0
        except asyncio.CancelledError:
            raise
        except Exception:
            self._failures += 1
            metrics.OUTBOX_FAILURES.inc()
            log.exception("outbox_publish_failed", first_seq=entries[0].seq, count=len(entries))
            await asyncio.sleep(self._backoff())
            # rows already marked published are skipped by pending(), so rewinding is safe
            self._cursor = min(self._cursor, entries[0].seq - 1)
            self._rewinds += 1
            self._wake.set()
        finally:
            self._slots.release()

    def _backoff(self) -> float:
        # exponential with full jitter, capped: a down broker is retried without a thundering herd
        return random.uniform(0, min(30.0, 0.1 * 2 ** min(self._failures, 10)))
