"""The Redis backplane: one Redis stream numbers every message for all instances and replays it.

Publishing runs a Lua script that appends to the stream with the id `{seq}-0`, seq being the
previous entry's seq + 1, atomically; every instance tails the stream with XREAD and fans out
locally. So all instances see the same messages with the same seq in the same order, and a
client can resume on any instance. Design notes in docs/realtime.md.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import orjson
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from healthflow.observability import metrics
from healthflow.realtime.fanout import Fanout, Message
from healthflow.realtime.hub import LiveHub

log = structlog.get_logger(__name__)

# KEYS[1] stream; ARGV: maxlen, then the meta json and data json of each message, in order.
# Appends them with consecutive seqs after the stream's last; returns the last new seq.
_PUBLISH = """
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local seq = 0
if #top > 0 then seq = tonumber(string.match(top[1][1], '^(%d+)')) end
for i = 2, #ARGV, 2 do
  seq = seq + 1
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], seq .. '-0', 'm', ARGV[i], 'd', ARGV[i + 1])
end
return seq
"""
READ_BATCH = 500


class RedisHub(LiveHub):
    """Hub shared by every instance that names the same Redis and key prefix."""

    backend = "redis"

    def __init__(
        self,
        fanout: Fanout,
        *,
        url: str,
        prefix: str,
        replay_size: int,
        publish_timeout_s: float,
        vitals_min_interval_s: float,
        publish_queue_size: int = 10_000,
        heartbeat_s: float = 15.0,
        idle_timeout_s: float = 45.0,
        block_s: float = 5.0,
        tail: bool = True,
    ) -> None:
        super().__init__(
            fanout,
            vitals_min_interval_s=vitals_min_interval_s,
            heartbeat_s=heartbeat_s,
            idle_timeout_s=idle_timeout_s,
        )
        self.stream = f"{prefix}:stream"
        self._replay_size = replay_size
        self._publish_timeout = publish_timeout_s
        self._block_ms = int(block_s * 1000)
        self._redis = Redis.from_url(url, socket_timeout=block_s + 5, socket_connect_timeout=5)
        self._script = self._redis.register_script(_PUBLISH)
        self._last_id: bytes | None = None
        # False in a process that serves no live clients: it publishes only, and reading every
        # message back for nobody cost the patients service 6 % of its CPU (BENCHMARKS.md)
        self._tail = tail
        # publishing is decoupled from the caller (a request that already committed): bounded,
        # one sender keeps this instance's order, and a slow or dead Redis never slows writes
        self._outgoing: asyncio.Queue[tuple[bytes, bytes]] = asyncio.Queue(publish_queue_size)

    async def start(self) -> None:
        if self._tail:
            try:
                async with asyncio.timeout(self._publish_timeout):
                    await self._prime()
            except (RedisError, OSError, TimeoutError) as exc:
                # the reader keeps trying; live push is best effort, the platform still starts
                metrics.HUB_BACKPLANE_ERRORS.labels(op="prime").inc()
                log.warning("hub_backplane_unavailable", error=repr(exc))
            self._keep(asyncio.create_task(self._read(), name="hub-backplane-reader"))
        self._keep(asyncio.create_task(self._send(), name="hub-backplane-sender"))
        await super().start()

    async def close(self) -> None:
        await super().close()
        await self._redis.aclose()

    async def _publish(
        self, type: str, data: dict[str, Any], time: datetime, topics: tuple[str, ...]
    ) -> None:
        meta = orjson.dumps({"type": type, "time": time.isoformat(), "topics": topics})
        try:
            self._outgoing.put_nowait((meta, orjson.dumps(data)))
        except asyncio.QueueFull:
            metrics.HUB_BACKPLANE_ERRORS.labels(op="queue_full").inc()
            log.warning("hub_backplane_queue_full", type=type)

    def stats(self) -> dict[str, int]:
        return {**super().stats(), "backplane_queue": self._outgoing.qsize()}

    async def _send(self) -> None:
        """Append queued messages in batches, one script call each (not a call per message in
        a pipeline), in queue order."""
        while True:
            batch = [await self._outgoing.get()]
            while len(batch) < READ_BATCH and not self._outgoing.empty():
                batch.append(self._outgoing.get_nowait())
            try:
                async with asyncio.timeout(self._publish_timeout):
                    await self._script(
                        keys=[self.stream],
                        args=[self._replay_size, *(part for message in batch for part in message)],
                    )
            except (RedisError, OSError, TimeoutError) as exc:
                # dropped, not retried: a late live message is worth less than a fresh one
                metrics.HUB_BACKPLANE_ERRORS.labels(op="publish").inc(len(batch))
                log.warning("hub_backplane_publish_failed", lost=len(batch), error=repr(exc))

    async def _prime(self) -> None:
        """Fill the local ring from the stream's tail and read on from its last entry."""
        # redis-py's reply types are unions over decode modes; this client returns bytes
        entries: Any = await self._redis.xrevrange(self.stream, count=self._replay_size)
        messages = [
            m for entry_id, fields in reversed(entries) if (m := _decode_or_none(entry_id, fields))
        ]
        self.fanout.restart(0, messages)
        self._last_id = entries[0][0] if entries else b"0-0"

    async def _read(self) -> None:
        backoff = 0.1
        while True:
            try:
                if self._last_id is None:
                    await self._prime()
                batches: Any = await self._redis.xread(
                    {self.stream: self._last_id or b"0-0"}, count=READ_BATCH, block=self._block_ms
                )
                backoff = 0.1
            except (RedisError, OSError) as exc:
                metrics.HUB_BACKPLANE_ERRORS.labels(op="read").inc()
                log.warning("hub_backplane_read_failed", error=repr(exc), retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            for _stream, entries in batches:
                for entry_id, fields in entries:
                    self._receive(entry_id, fields)

    def _receive(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        self._last_id = entry_id
        message = _decode_or_none(entry_id, fields)
        if message is None:
            return
        if message.seq > self.fanout.head + 1:
            # entries were trimmed before this instance read them: its clients must reload
            log.warning("hub_backplane_gap", head=self.fanout.head, seq=message.seq)
            self.fanout.restart(message.seq - 1)
        self.fanout.deliver(message)


def _decode_or_none(entry_id: bytes, fields: dict[bytes, bytes]) -> Message | None:
    try:
        return _decode(entry_id, fields)
    except (ValueError, KeyError, TypeError) as exc:
        metrics.HUB_BACKPLANE_ERRORS.labels(op="decode").inc()
        log.error("hub_backplane_bad_entry", entry_id=entry_id, error=repr(exc))
        return None


def _decode(entry_id: bytes, fields: dict[bytes, bytes]) -> Message:
    meta = orjson.loads(fields[b"m"])
    return Message(
        seq=int(entry_id.split(b"-", 1)[0]),
        type=str(meta["type"]),
        time=str(meta["time"]),
        data_json=fields[b"d"].decode(),
        topics=tuple(str(t) for t in meta["topics"]),
    )
