"""What the server says it accepted and processed, read from its own `/metrics`.

"Processed" means stored and scored: the vitals monitor counts a reading in
`healthflow_news2_assessments_total` (or `healthflow_telemetry_late_readings_total` when it was
older than the patient's last assessment and only stored) after the transaction holding the
reading, its NEWS2 state and any alert change committed, and only the first time (a redelivered
reading is not counted again). At the end of a run the bench also counts the stored rows
(`vitals` table) to check the counters against the database itself.

In the split topology each figure lives in the process that counts it (readings accepted on
patients, processed on analytics, events handled on the worker): `Scraper` reads every process's
`/metrics` into one text, and every reader here sums a counter's samples, so it sums them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

ACCEPTED = "healthflow_telemetry_readings_total"
PROCESSED = ("healthflow_news2_assessments_total", "healthflow_telemetry_late_readings_total")
# how many readings each stage handles at once, from its batch-size histogram (sum, count):
# what a stage's fixed costs are shared by (docs/telemetry.md)
BATCHES: dict[str, tuple[str, dict[str, str]]] = {
    "mqtt": ("healthflow_mqtt_batch_messages", {}),
    "intake": ("healthflow_group_commit_size", {"store": "telemetry.intake"}),
    "worker": ("healthflow_worker_batch_size", {"pool": "vitals"}),
}


# the samples `parse` reads: `read` asks the server for these alone (`/metrics?name[]=`), as
# the closed loops poll four times a second and a full scrape cost the server ~3 % of its CPU
COUNTED = (
    ACCEPTED,
    "healthflow_telemetry_refused_total",
    *PROCESSED,
    *(f"{name}_{part}" for name, _ in BATCHES.values() for part in ("sum", "count")),
)


@dataclass(frozen=True)
class Counters:
    accepted: dict[str, float]  # by transport
    processed: float
    busy_refusals: dict[str, float]  # by transport: 503 answers / unacknowledged MQTT retries
    batches: dict[str, tuple[float, float]]  # by stage (BATCHES): items and batches handled

    def accepted_total(self) -> float:
        return sum(self.accepted.values())

    def mean_batches(self) -> dict[str, float | None]:
        """Items per batch by stage; None for a stage that handled nothing."""
        return {
            stage: round(items / count, 1) if count else None
            for stage, (items, count) in self.batches.items()
        }

    def minus(self, before: Counters) -> Counters:
        transports = set(self.accepted) | set(before.accepted)
        refusals = set(self.busy_refusals) | set(before.busy_refusals)
        return Counters(
            {t: self.accepted.get(t, 0) - before.accepted.get(t, 0) for t in transports},
            self.processed - before.processed,
            {t: self.busy_refusals.get(t, 0) - before.busy_refusals.get(t, 0) for t in refusals},
            {
                stage: (items - before.batches[stage][0], count - before.batches[stage][1])
                for stage, (items, count) in self.batches.items()
            },
        )


def parse(text: str) -> Counters:
    accepted: dict[str, float] = {}
    refusals: dict[str, float] = {}
    processed = 0.0
    for line in text.splitlines():
        if line.startswith(ACCEPTED + "{") and 'outcome="accepted"' in line:
            transport = _label(line, "transport")
            accepted[transport] = accepted.get(transport, 0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith("healthflow_telemetry_refused_total{") and 'reason="busy"' in line:
            transport = _label(line, "transport")
            refusals[transport] = refusals.get(transport, 0) + float(line.rsplit(" ", 1)[1])
        elif line.startswith(PROCESSED) and not line.startswith("#"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in PROCESSED:
                processed += float(line.rsplit(" ", 1)[1])
    batches = {
        stage: (total(text, f"{name}_sum", **labels), total(text, f"{name}_count", **labels))
        for stage, (name, labels) in BATCHES.items()
    }
    return Counters(accepted, processed, refusals, batches)


def total(text: str, name: str, **labels: str) -> float:
    """Sum of a counter's samples in a /metrics text whose labels include `labels`."""
    found = 0.0
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(w in line for w in wanted):
            found += float(line.rsplit(" ", 1)[1])
    return found


def _label(line: str, name: str) -> str:
    start = line.find(f'{name}="')
    if start < 0:
        return ""
    start += len(name) + 2
    return line[start : line.index('"', start)]


@dataclass(frozen=True)
class Scraper:
    """The server under test's `/metrics`: every one of its processes', as one text."""

    http: httpx.AsyncClient
    urls: tuple[str, ...]

    async def text(self, names: Sequence[str] = ()) -> str:
        """The metrics text, or only the samples `names` (all when empty)."""
        params = {"name[]": list(names)}
        responses = await asyncio.gather(
            *(self.http.get(f"{url}/metrics", params=params) for url in self.urls)
        )
        for response in responses:
            response.raise_for_status()
        return "\n".join(response.text for response in responses)


async def read(metrics: Scraper) -> Counters:
    return parse(await metrics.text(COUNTED))


@dataclass(frozen=True)
class Drain:
    processed: float
    accepted: float
    caught_up_after_s: float | None  # from the phase's start; None: not within the limit
    drain_s: float | None  # from the end of the load


async def wait_until_processed(
    metrics: Scraper,
    before: Counters,
    *,
    started: float,
    load_ended: float,
    limit_s: float,
    handed_over: float | None = None,
) -> Drain:
    """Poll until everything accepted since `before` is processed (or `limit_s` passed).

    Accepted is what the server counted, or `handed_over` when given: MQTT readings the broker
    acknowledged may still wait in the broker, not yet seen by the server.
    """
    deadline = time.perf_counter() + limit_s
    while True:
        now = await read(metrics)
        delta = now.minus(before)
        target = delta.accepted_total() if handed_over is None else handed_over
        if delta.processed >= target:
            at = time.perf_counter()
            return Drain(
                delta.processed,
                delta.accepted_total(),
                round(at - started, 3),
                round(max(0.0, at - load_ended), 3),
            )
        if time.perf_counter() > deadline:
            return Drain(delta.processed, delta.accepted_total(), None, None)
        await asyncio.sleep(0.1)
