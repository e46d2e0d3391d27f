"""What a reading's conversions cost on its way through the pipeline, each by itself (µs a call).

    .venv/bin/python benchmarks/reading_conversions.py [--calls 20000] [--rounds 7]
    PYTHONPATH=<worktree>/src .venv/bin/python benchmarks/reading_conversions.py   # other code

  instant text, pydantic tz   an instant's SQLite text (the column type's bind processor) for a
                              time parsed by pydantic, which carries its own zero-offset tzinfo
  instant text, UTC           the same for a time in `datetime.UTC`
  instant text, same object   the same for the object bound just before (the rows of one
                              request share their arrival instant)
  measurements()              a reading's measured parameters (asked for four times a reading):
                              the first call on a reading, and a later one
  event + JSON                `vital_signs_recorded` and the event's JSON (the intake's row),
                              the first to ask each reading for its measurements
  counter by labels / child   a labelled Prometheus counter's `labels(type=...).inc()` against
                              its child's `inc()`
  live push                   the monitor's VitalsUpdated of one reading (its data, the hub's
                              topics and JSON, the fan-out with no one subscribed), over 400
                              patients in turn (VitalsMonitor._push_vitals, the private step)

CPU time (`time.process_time`), the median of the rounds. The end-to-end effect is in
`healthflow bench` (BENCHMARKS.md, session 14).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy.dialects.sqlite import aiosqlite

from healthflow.clock import SystemClock
from healthflow.realtime.fanout import Fanout
from healthflow.realtime.hub import MemoryHub
from healthflow.storage.engine import UtcDateTime
from healthflow.vitals.assessment import assess
from healthflow.vitals.domain import Consciousness, Reading
from healthflow.vitals.events import RecordedReading, vital_signs_recorded
from healthflow.vitals.monitor import VitalsMonitor
from healthflow.vitals.ports import Outcome
from healthflow.vitals.schemas import ReadingIn

VALUES = {
    "heart_rate": 70.0,
    "resp_rate": 14.0,
    "spo2": 97.0,
    "systolic_bp": 120.0,
    "diastolic_bp": 70.0,
    "temperature": 36.8,
    "consciousness": Consciousness.ALERT,
}


def per_call(work: Callable[[Any], object], inputs: Callable[[], list[Any]], rounds: int) -> float:
    """CPU µs of `work` over each of `inputs()`, made anew (untimed) for every round."""
    runs = []
    for _ in range(rounds):
        items = inputs()
        started = time.process_time()
        for item in items:
            work(item)
        runs.append((time.process_time() - started) / len(items) * 1e6)
    return statistics.median(runs)


async def push_cost(calls: int, rounds: int) -> float:
    hub = MemoryHub(
        Fanout(replay_size=10_000, send_queue_size=100, max_clients=1), vitals_min_interval_s=0
    )
    monitor = VitalsMonitor.__new__(VitalsMonitor)  # only the push's own parts are used
    monitor._hub, monitor._clock = hub, SystemClock()
    now = datetime.now(UTC)
    patients = [uuid4() for _ in range(400)]
    pushes = []
    for n in range(calls):
        reading = Reading(ts=now, **VALUES)  # type: ignore[arg-type]
        _, assessment = assess(None, reading)
        recorded = RecordedReading(str(n), "monitor", patients[n % 400], reading, now, "W1")
        pushes.append((recorded, Outcome(assessment, None, None)))
    runs = []
    for _ in range(rounds):
        started = time.process_time()
        for recorded, outcome in pushes:
            await monitor._push_vitals(recorded, outcome, ward="W1")
        runs.append((time.process_time() - started) / calls * 1e6)
    return statistics.median(runs)


def main(args: argparse.Namespace) -> None:
    to_text = UtcDateTime().bind_processor(aiosqlite.dialect())
    assert to_text is not None
    parsed = ReadingIn.model_validate_json(b'{"ts": "2026-12-02T05:00:00.123+00:00"}').ts
    in_utc = parsed.astimezone(UTC)
    counter = Counter("bench_messages", "", ["type"], registry=CollectorRegistry())
    child = counter.labels(type="VitalsUpdated")
    # a reading of its own per call, new each round: in the pipeline the event is the first
    # to ask a reading for its measurements
    patient = uuid4()

    def readings() -> list[Reading]:
        return [Reading(ts=in_utc, **VALUES) for _ in range(args.calls)]  # type: ignore[arg-type]

    def asked_once() -> list[Reading]:
        made = readings()
        for reading in made:
            reading.measurements()
        return made

    def recorded() -> list[RecordedReading]:
        return [RecordedReading(str(uuid4()), "monitor", patient, r, in_utc) for r in readings()]

    def once() -> list[None]:
        return [None] * args.calls

    def instants(first: datetime) -> Callable[[], list[datetime]]:
        # a new object each call: the processor keeps the text of the object it bound last
        return lambda: [first + timedelta(microseconds=n) for n in range(args.calls)]

    figures: dict[str, tuple[Callable[[Any], object], Callable[[], list[Any]]]] = {
        "instant text, pydantic tz": (to_text, instants(parsed)),
        "instant text, UTC": (to_text, instants(in_utc)),
        "instant text, same object": (lambda _: to_text(in_utc), once),
        "measurements(), first call": (Reading.measurements, readings),
        "measurements(), again": (Reading.measurements, asked_once),
        "event + JSON": (lambda r: vital_signs_recorded(r).to_json(), recorded),
        "counter by labels": (lambda _: counter.labels(type="VitalsUpdated").inc(), once),
        "counter child": (lambda _: child.inc(), once),
    }
    for name, (work, inputs) in figures.items():
        print(f"{name:28s} {per_call(work, inputs, args.rounds):8.2f} µs")
    push = asyncio.run(push_cost(args.calls, args.rounds))
    print(f"{'live push':28s} {push:8.2f} µs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    main(parser.parse_args())
