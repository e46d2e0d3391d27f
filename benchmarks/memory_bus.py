"""What the in-process bus costs per event: `MemoryBus.publish` of a batch, acked by a consumer.

The embedded default's relay publishes each batch of readings to the bus and waits until every
group settled every event; this measures that round alone (a consumer task taking deliveries
from a queue and acking them, as the worker pool does), CPU per event, median of the rounds.

    .venv/bin/python benchmarks/memory_bus.py [--events 1000] [--rounds 60]
    PYTHONPATH=<other worktree>/src .venv/bin/python benchmarks/memory_bus.py   # other code
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import UTC, datetime

from healthflow.clock import SystemClock
from healthflow.messaging.events import CloudEvent
from healthflow.messaging.memory import MemoryBus
from healthflow.ports import DeadLetter, Delivery


class NoDeadLetters:
    async def add(self, letter: DeadLetter) -> None:
        raise AssertionError("nothing is rejected here")

    async def list(self, *, group: str | None, limit: int) -> list[DeadLetter]:
        return []

    async def count(self) -> int:
        return 0


async def main(events: int, rounds: int) -> None:
    bus = MemoryBus(dead_letters=NoDeadLetters(), clock=SystemClock(), retry_delays_s=(0.1,))
    queue: asyncio.Queue[Delivery] = asyncio.Queue()

    async def sink(delivery: Delivery) -> None:
        queue.put_nowait(delivery)

    async def consume() -> None:
        while True:
            await (await queue.get()).ack()

    bus.subscribe("bench", sink)
    consumer = asyncio.create_task(consume())
    now = datetime.now(UTC)
    batch = [
        CloudEvent(id=str(i), source="bench", type="VitalSignsRecorded", time=now, subject=f"p{i}")
        for i in range(events)
    ]
    spent = []
    for _ in range(rounds):
        started = time.process_time()
        await bus.publish(batch)
        spent.append(time.process_time() - started)
    consumer.cancel()
    per_event_us = statistics.median(spent) / events * 1e6
    print(f"{events} events a publish, median of {rounds}: {per_event_us:.2f} µs CPU an event")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=60)
    args = parser.parse_args()
    asyncio.run(main(args.events, args.rounds))
