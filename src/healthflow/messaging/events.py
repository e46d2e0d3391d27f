"""CloudEvents 1.0 envelopes, the one shape every event travels in: structured JSON mode (one
event a message) and batched JSON mode (an array of them, for a broker that would otherwise pay
per message for each)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

SPEC_VERSION = "1.0"
JSON = "application/json"
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"


class MalformedEvent(ValueError):
    """Bytes or a mapping that is not a CloudEvent this service understands."""


@dataclass(frozen=True, slots=True)
class CloudEvent:
    id: str
    source: str
    type: str
    time: datetime
    subject: str
    data: dict[str, Any] = field(default_factory=dict)
    datacontenttype: str = JSON
    specversion: str = SPEC_VERSION
    # the object `data` was made from, for a consumer in the producer's process: the in-process
    # bus hands this very event over, and decoding `data` back into what it was made from took
    # 5.6 % of the server's GIL time in the HTTP vitals phase (BENCHMARKS.md, session 14).
    # Never serialized, not compared; None for an event read from bytes
    origin: Any = field(default=None, compare=False, repr=False)

    @property
    def partition_key(self) -> str:
        """Events of one subject (a patient) are handled in order: they share a partition."""
        return self.subject

    def to_dict(self) -> dict[str, Any]:
        return {**self._wire(), "time": self.time.isoformat()}

    def to_json(self) -> bytes:
        return orjson.dumps(self._wire())

    def _wire(self) -> dict[str, Any]:
        # `time` as the datetime itself: orjson writes it as `isoformat()` does, in a fifth of
        # the time (every reading's event is written once)
        return {
            "specversion": self.specversion,
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time,
            "subject": self.subject,
            "datacontenttype": self.datacontenttype,
            "partitionkey": self.partition_key,
            "data": self.data,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CloudEvent:
        try:
            if raw["specversion"] != SPEC_VERSION:
                raise MalformedEvent(f"unsupported specversion {raw['specversion']!r}")
            data = raw.get("data", {})
            if not isinstance(data, dict):
                raise MalformedEvent("data must be a JSON object")
            return cls(
                id=str(raw["id"]),
                source=str(raw["source"]),
                type=str(raw["type"]),
                time=datetime.fromisoformat(raw["time"]),
                subject=str(raw["subject"]),
                data=data,
                datacontenttype=str(raw.get("datacontenttype", JSON)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, MalformedEvent):
                raise
            raise MalformedEvent(f"not a CloudEvent: {exc}") from exc

    @classmethod
    def from_json(cls, payload: bytes | str) -> CloudEvent:
        try:
            raw = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise MalformedEvent(f"not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise MalformedEvent("a CloudEvent is a JSON object")
        return cls.from_dict(raw)


def batch_to_json(events: Sequence[CloudEvent]) -> bytes:
    """Events in the CloudEvents JSON batch format: a JSON array of structured events."""
    return orjson.dumps([e._wire() for e in events])


def batch_from_json(payload: bytes | str) -> list[CloudEvent]:
    """The events of a JSON batch; MalformedEvent if it or any event in it is not one."""
    try:
        raw = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(f"not JSON: {exc}") from exc
    if not isinstance(raw, list) or not raw:
        raise MalformedEvent("a CloudEvents batch is a non-empty JSON array")
    events = []
    for item in raw:
        if not isinstance(item, dict):
            raise MalformedEvent("a CloudEvent is a JSON object")
        events.append(CloudEvent.from_dict(item))
    return events
