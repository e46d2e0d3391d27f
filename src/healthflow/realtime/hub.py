"""The live-push hub: topics, numbering, coalescing; memory here, Redis in redis_backplane.py."""

from __future__ import annotations

import asyncio
import contextlib
import time as _time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import orjson
import structlog

from healthflow.observability import metrics
from healthflow.realtime.coalesce import Coalescer
from healthflow.realtime.fanout import CLOSE_GOING_AWAY, Fanout, Message
from healthflow.realtime.topics import VITALS_UPDATED, topics_for
from healthflow.tasks import cancel_and_wait

log = structlog.get_logger(__name__)

Pending = tuple[str, dict[str, Any], datetime, tuple[str, ...]]


class LiveHub:
    """Implements the `Hub` port: derives topics, coalesces vitals, then numbers and fans out.

    Subclasses decide how a message gets its sequence number and reaches the fan-out: in this
    process (MemoryHub) or through a shared Redis stream (RedisHub).
    """

    backend = "memory"

    def __init__(
        self,
        fanout: Fanout,
        *,
        vitals_min_interval_s: float,
        heartbeat_s: float = 15.0,
        idle_timeout_s: float = 45.0,
        monotonic: Callable[[], float] = _time.monotonic,
    ) -> None:
        self.fanout = fanout
        self.heartbeat_s = heartbeat_s
        self.idle_timeout_s = idle_timeout_s
        self._monotonic = monotonic
        self._vitals_interval = vitals_min_interval_s
        self._coalescer: Coalescer[Pending] = Coalescer(vitals_min_interval_s, monotonic)
        self._tasks: list[asyncio.Task[None]] = []

    async def broadcast(self, type: str, data: dict[str, Any], time: datetime) -> None:
        topics = topics_for(type, data)
        if not topics:
            log.warning("hub_message_without_topic", type=type)
            return
        patient_id = data.get("patient_id")
        if type == VITALS_UPDATED and patient_id is not None and self._vitals_interval > 0:
            before = self._coalescer.coalesced
            item = self._coalescer.offer(str(patient_id), (type, data, time, topics))
            metrics.HUB_COALESCED.inc(self._coalescer.coalesced - before)
            if item is None:
                return
        await self._publish(type, data, time, topics)

    def stats(self) -> dict[str, int]:
        return {
            "clients": self.fanout.clients,
            "seq": self.fanout.head,
            "vitals_held": self._coalescer.pending,
        }

    async def start(self) -> None:
        self._keep(asyncio.create_task(self._heartbeat(), name="hub-heartbeat"))
        if self._vitals_interval > 0:
            self._keep(asyncio.create_task(self._release_vitals(), name="hub-vitals"))

    async def close(self) -> None:
        await cancel_and_wait(self._tasks)
        self._tasks.clear()
        self.fanout.hang_up_all(CLOSE_GOING_AWAY, "server shutting down")

    async def _publish(
        self, type: str, data: dict[str, Any], time: datetime, topics: tuple[str, ...]
    ) -> None:
        raise NotImplementedError

    def _keep(self, task: asyncio.Task[None]) -> None:
        self._tasks.append(task)
        task.add_done_callback(_report_crash)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            self.fanout.heartbeat(self._monotonic(), self.idle_timeout_s)

    async def _release_vitals(self) -> None:
        # a quarter interval keeps the trailing value at most 1.25 intervals behind
        while True:
            await asyncio.sleep(self._vitals_interval / 4)
            for type, data, at, topics in self._coalescer.due():
                try:
                    await self._publish(type, data, at, topics)
                except Exception:
                    metrics.HUB_FAILURES.inc()
                    log.exception("hub_coalesced_publish_failed", type=type)


class MemoryHub(LiveHub):
    """Hub for one process: the sequence is a counter here, so resume works on this process."""

    async def _publish(
        self, type: str, data: dict[str, Any], time: datetime, topics: tuple[str, ...]
    ) -> None:
        data_json = orjson.dumps(data).decode()
        self.fanout.deliver(
            Message(self.fanout.head + 1, type, time.isoformat(), data_json, topics)
        )


def _report_crash(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        if task.exception() is not None:
            log.error("hub_task_crashed", task=task.get_name(), error=repr(task.exception()))
