"""Background worker runtime: bounded partitioned queues, N workers, backpressure, clean stop."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

import structlog

from healthflow.messaging.events import CloudEvent
from healthflow.observability import metrics
from healthflow.ports import Delivery
from healthflow.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

Handler = Callable[[CloudEvent], Awaitable[None]]
BatchHandler = Callable[[Sequence[CloudEvent]], Awaitable[None]]
P = ParamSpec("P")
T = TypeVar("T")


class WorkerPool:
    """N workers, each owning one bounded queue; events of one partition key share a worker.

    Sharing a worker per key keeps each patient's events in order while different patients run
    in parallel. `submit` waits while the target queue is full, which is the backpressure that
    reaches the publisher. A delivery is acked only after its handler returned.
    """

    def __init__(
        self,
        name: str,
        handler: Handler,
        *,
        workers: int,
        capacity: int,
        batch_handler: BatchHandler | None = None,
        max_batch: int = 1,
    ) -> None:
        if workers < 1 or capacity < workers or max_batch < 1:
            raise ValueError("need at least one worker, one queue slot per worker, batches of 1+")
        self.name = name
        self._handler = handler
        self._batch_handler = batch_handler
        self._max_batch = max_batch if batch_handler else 1
        per_worker = capacity // workers
        self._queues: list[asyncio.Queue[Delivery]] = [
            asyncio.Queue(maxsize=per_worker) for _ in range(workers)
        ]
        self.capacity = per_worker * workers
        self._tasks: list[asyncio.Task[None]] = []
        self._accepting = False
        self._busy = 0
        self._cpu = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{name}-cpu")
        # the pool's own metric children, looked up once: `labels()` per event was a measurable
        # share of a small batch
        self._depth_gauge = metrics.WORKER_QUEUE_DEPTH.labels(pool=name)
        self._handle_seconds = metrics.HANDLE_SECONDS.labels(pool=name)
        self._batch_size = metrics.WORKER_BATCH_SIZE.labels(pool=name)

    @property
    def workers(self) -> int:
        return len(self._queues)

    @property
    def max_batch(self) -> int:
        return self._max_batch

    @property
    def depth(self) -> int:
        return sum(q.qsize() for q in self._queues)

    @property
    def busy(self) -> int:
        return self._busy

    def start(self) -> None:
        self._accepting = True
        self._tasks = [
            asyncio.create_task(self._work(i, q), name=f"{self.name}-worker-{i}")
            for i, q in enumerate(self._queues)
        ]

    async def submit(self, delivery: Delivery) -> None:
        """The bus's sink: queue a delivery on its partition's worker, waiting while full."""
        if not self._accepting:
            raise RuntimeError(f"worker pool {self.name} is stopping")
        key = delivery.event.partition_key.encode()
        await self._queues[zlib.crc32(key) % len(self._queues)].put(delivery)
        self._depth_gauge.set(self.depth)

    async def offload(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a CPU-bound step on the pool's threads so the event loop keeps serving."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._cpu, lambda: fn(*args, **kwargs))

    async def stop(self, grace_s: float) -> None:
        """Stop taking work, let queued and in-flight deliveries finish within grace_s, then end.

        Anything cut off is never acked, so the bus (or the outbox) delivers it again later.
        """
        self._accepting = False
        try:
            async with asyncio.timeout(grace_s):
                await asyncio.gather(*(q.join() for q in self._queues))
        except TimeoutError:
            log.warning("worker_pool_stop_timeout", pool=self.name, left=self.depth)
        await cancel_and_wait(self._tasks)
        self._cpu.shutdown(wait=False, cancel_futures=True)

    async def _settle(self, settling: Awaitable[None], delivery: Delivery) -> None:
        # A worker must outlive a failed ack or reject: the bus redelivers what was not settled.
        try:
            await settling
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            metrics.SETTLE_FAILURES.labels(pool=self.name).inc()
            log.error(
                "delivery_settle_failed",
                pool=self.name,
                event_id=delivery.event.id,
                error=repr(exc),
            )

    async def _work(self, index: int, queue: asyncio.Queue[Delivery]) -> None:
        while True:
            # take what is already waiting, up to max_batch: one transaction instead of many
            batch = [await queue.get()]
            while len(batch) < self._max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            self._batch_size.observe(len(batch))
            self._busy += len(batch)
            try:
                if len(batch) > 1 and await self._handle_batch(batch):
                    continue
                for delivery in batch:
                    await self._handle_one(delivery)
            finally:
                self._busy -= len(batch)
                for _ in batch:
                    queue.task_done()
                self._depth_gauge.set(self.depth)

    async def _handle_batch(self, batch: list[Delivery]) -> bool:
        """Handle a batch at once; False (nothing acked) if it failed, to go one by one."""
        assert self._batch_handler is not None
        started = time.perf_counter()
        try:
            await self._batch_handler([d.event for d in batch])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # one bad event must not hold back the rest: retry singly, and only it fails
            log.warning(
                "batch_failed_retrying_singly", pool=self.name, size=len(batch), error=repr(exc)
            )
            return False
        elapsed = time.perf_counter() - started
        for delivery in batch:
            await self._settle(delivery.ack(), delivery)
        for event_type, count in Counter(d.event.type for d in batch).items():
            metrics.EVENTS_PROCESSED.labels(pool=self.name, type=event_type).inc(count)
        self._handle_seconds.observe(elapsed / len(batch))
        return True

    async def _handle_one(self, delivery: Delivery) -> None:
        started = time.perf_counter()
        try:
            await self._handler(delivery.event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            metrics.EVENTS_FAILED.labels(pool=self.name, type=delivery.event.type).inc()
            log.warning(
                "event_handling_failed",
                pool=self.name,
                event_id=delivery.event.id,
                event_type=delivery.event.type,
                attempt=delivery.attempt,
                error=repr(exc),
            )
            await self._settle(delivery.reject(f"{type(exc).__name__}: {exc}"), delivery)
        else:
            await self._settle(delivery.ack(), delivery)
            metrics.EVENTS_PROCESSED.labels(pool=self.name, type=delivery.event.type).inc()
            self._handle_seconds.observe(time.perf_counter() - started)
