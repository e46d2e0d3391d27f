"""The in-process live-push hub: one bounded send queue per connection, a sequence per message."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import orjson

from healthflow.observability import metrics


class Subscriber:
    """One connected client's bounded outbox; `lagging` is set when it overflowed."""

    def __init__(self, queue_size: int) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=queue_size)
        self.lagging = asyncio.Event()


class MemoryHub:
    """Hub for one process. A subscriber that cannot keep up is marked lagging and dropped by its
    connection handler, so one slow screen never slows the others or grows memory."""

    def __init__(self, *, send_queue_size: int) -> None:
        self._send_queue_size = send_queue_size
        self._subscribers: set[Subscriber] = set()
        self._seq = 0

    def connect(self) -> Subscriber:
        subscriber = Subscriber(self._send_queue_size)
        self._subscribers.add(subscriber)
        metrics.HUB_CLIENTS.set(len(self._subscribers))
        return subscriber

    def disconnect(self, subscriber: Subscriber) -> None:
        self._subscribers.discard(subscriber)
        metrics.HUB_CLIENTS.set(len(self._subscribers))

    async def broadcast(self, type: str, data: dict[str, Any], time: datetime) -> None:
        self._seq += 1
        message = orjson.dumps(
            {"seq": self._seq, "type": type, "time": time.isoformat(), "data": data}
        )
        metrics.HUB_MESSAGES.labels(type=type).inc()
        for subscriber in self._subscribers:
            if subscriber.lagging.is_set():
                continue
            try:
                subscriber.queue.put_nowait(message)
            except asyncio.QueueFull:
                subscriber.lagging.set()
                metrics.HUB_DROPPED_CLIENTS.inc()

    def stats(self) -> dict[str, int]:
        return {"clients": len(self._subscribers), "seq": self._seq}
