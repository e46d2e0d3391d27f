"""The seams: small Protocols the services talk to. Adapters implement them; app.py picks which."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Protocol
from uuid import UUID

from healthflow.messaging.events import CloudEvent
from healthflow.patients.domain import Patient, Status


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


@dataclass(frozen=True)
class Check:
    """One dependency's health as seen by a readiness probe."""

    up: bool
    detail: dict[str, Any] = field(default_factory=dict)


class PatientStore(Protocol):
    """Patients and their event history; every write commits state and outbox rows together."""

    async def add(self, patient: Patient, events: Sequence[CloudEvent]) -> None:
        """Insert a new patient; raises MrnTaken when the MRN is in use."""
        ...

    async def save(
        self, patient: Patient, *, expected_version: int, events: Sequence[CloudEvent]
    ) -> None:
        """Replace a patient if still at expected_version; raises PatientChanged otherwise."""
        ...

    async def get(self, patient_id: UUID) -> Patient | None: ...

    async def ward_of(self, patient_id: UUID) -> str | None:
        """The patient's ward (not PHI) without reading the rest; None for an unknown id."""
        ...

    async def page(
        self, *, status: Status | None, ward: str | None, after: UUID | None, limit: int
    ) -> list[Patient]:
        """Patients in registration order, strictly after the `after` id."""
        ...

    async def history(self, patient_id: UUID) -> list[CloudEvent]:
        """The patient's events, oldest first."""
        ...

    async def check(self) -> Check: ...


@dataclass(frozen=True)
class OutboxEntry:
    seq: int
    event: CloudEvent
    created_at: datetime


@dataclass(frozen=True)
class OutboxStats:
    pending: int
    oldest_created_at: datetime | None


class Outbox(Protocol):
    """Events committed with their state change and not yet confirmed by the bus."""

    async def pending(self, *, after_seq: int, limit: int) -> list[OutboxEntry]: ...

    async def mark_published(self, seqs: Sequence[int], at: datetime) -> None: ...

    def remember(self, entries: Sequence[OutboxEntry]) -> None:
        """Entries this process just committed, in sequence order: `pending` may hand them out
        instead of reading them back (messaging.outbox.CommittedCopy)."""
        ...

    async def stats(self) -> OutboxStats: ...


class Delivery(Protocol):
    """One event handed to one consumer group; settle it exactly once with ack or reject."""

    @property
    def event(self) -> CloudEvent: ...

    @property
    def attempt(self) -> int: ...

    async def ack(self) -> None: ...

    async def reject(self, error: str) -> None:
        """Handling failed: the bus retries with backoff, then dead-letters."""
        ...


Sink = Callable[[Delivery], Awaitable[None]]


@dataclass(frozen=True)
class DeadLetter:
    group: str
    event: CloudEvent
    error: str
    attempts: int
    failed_at: datetime


class DeadLetterStore(Protocol):
    async def add(self, letter: DeadLetter) -> None: ...

    async def list(self, *, group: str | None, limit: int) -> list[DeadLetter]: ...

    async def count(self) -> int: ...


class EventBus(Protocol):
    """Topic publish, consumer groups, at-least-once delivery, retries, dead letters."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        """Return once the bus is responsible for every event (broker-confirmed or handled)."""
        ...

    def subscribe(self, group: str, sink: Sink, *, types: Collection[str] | None = None) -> None:
        """Deliver events (of `types`, or all) to `sink` for the group; sink awaiting is
        backpressure. Events of other types never reach the group (nor its queue)."""
        ...

    async def waiting(self, group: str) -> int:
        """Events queued for the group that its consumers have not taken yet: a broker's queue
        depth (may be a moment old); 0 for a bus that holds none, its sinks being backpressure."""
        ...

    async def dead_letters(self, *, group: str | None, limit: int) -> list[DeadLetter]: ...

    async def dead_letter_count(self) -> int:
        """How many dead letters wait to be looked at (all groups)."""
        ...

    async def check(self) -> Check: ...


class Hub(Protocol):
    """Live push to connected dashboards.

    `data` is written as JSON by orjson, in every adapter: JSON values, or what orjson writes
    itself (a datetime as its `isoformat()` text, a dataclass as its fields).
    """

    async def broadcast(self, type: str, data: dict[str, Any], time: datetime) -> None: ...

    def stats(self) -> dict[str, int]: ...


class Cache(Protocol):
    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float) -> None: ...

    async def delete_prefix(self, prefix: str) -> None: ...


class RequestBudget(Protocol):
    """A request budget per key (token bucket): `per_minute` a minute, bursting up to that many.

    Adapters: in-process (security/ratelimit.py) and shared through Redis
    (security/redis_ratelimit.py); both refuse the same way, with the same keys.
    """

    async def spend(self, key: str) -> None:
        """Spend one request of `key`'s budget; raises security.ratelimit.TooManyRequests
        (with the seconds until one is available) when there is none."""
        ...

    async def close(self) -> None:
        """Release connections; the budget is not used afterwards."""
        ...


class AnalyticsStore(Protocol):
    """Event documents plus rollups, written once per event id."""

    async def record(self, event: CloudEvent, *, processed_at: datetime) -> bool:
        """Store the event and update rollups in one transaction; False if already recorded."""
        ...

    async def record_many(
        self, batch: Sequence[CloudEvent], *, processed_at: datetime
    ) -> list[bool]:
        """Store a batch in one transaction; per event, True if it was new."""
        ...

    async def dashboard(self, *, first_day: date, last_day: date) -> dict[str, Any]: ...

    async def ward_of(self, patient_id: UUID) -> str | None:
        """The ward of a patient the projection has seen; None before its first event."""
        ...

    async def check(self) -> Check: ...


class AlertCounts(Protocol):
    """How many clinical alerts were raised per day (the alerts live in the analytics database)."""

    async def raised_by_day(self, *, first_day: date, last_day: date) -> dict[date, dict[str, int]]:
        """Per UTC day with any, the alerts opened that day by severity; both days included."""
        ...


class AnalyticsSink(Protocol):
    """Where a worker hands a processed event: the analytics service in-process or over HTTP."""

    async def record(self, event: CloudEvent) -> bool: ...
