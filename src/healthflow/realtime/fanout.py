"""Local fan-out: numbered messages to the connections subscribed to their topics, plus replay.

Everything here runs synchronously on the event loop, so a subscription change, a replay and a
delivery never interleave: that is what makes resume exact (no gap, no duplicate).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from healthflow.observability import metrics
from healthflow.realtime.wire import FrameSink, text_frame

TopicFilter = Callable[[str], bool]

# WebSocket close codes (docs/realtime.md); SSE streams simply end.
CLOSE_GOING_AWAY = 1001
CLOSE_TOO_BIG = 1009
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_UNAUTHORIZED = 4001
CLOSE_TOO_SLOW = 4008
CLOSE_IDLE = 4010


def allow_all(_: str) -> bool:
    return True


def control(type: str, **fields: Any) -> str:
    """A control frame (acks, Resync, Ping, errors): it has no seq and is not replayed."""
    return orjson.dumps({"type": type, **fields}).decode()


PING = control("Ping")


@dataclass(eq=False, slots=True)
class Message:
    """One numbered message of the hub's stream; frames are rendered once per topic and shared."""

    seq: int
    type: str
    time: str
    data_json: str
    topics: tuple[str, ...]
    _frames: dict[str, str] = field(default_factory=dict)
    _wire: dict[str, bytes] = field(default_factory=dict)

    def frame(self, topic: str) -> str:
        frame = self._frames.get(topic)
        if frame is None:
            head = orjson.dumps(
                {"seq": self.seq, "topic": topic, "type": self.type, "time": self.time}
            ).decode()
            frame = f'{head[:-1]},"data":{self.data_json}}}'
            self._frames[topic] = frame
        return frame

    def wire(self, topic: str) -> bytes:
        """The complete WebSocket frame of `frame(topic)`, the same bytes for every socket."""
        wire = self._wire.get(topic)
        if wire is None:
            wire = self._wire[topic] = text_frame(self.frame(topic))
        return wire


class Connection:
    """One client's topics and bounded send queue; `close_code` says why it must hang up."""

    __slots__ = (
        "_wake",
        "allow",
        "capacity",
        "close_code",
        "close_reason",
        "delivered",
        "finished",
        "heard",
        "live",
        "queue",
        "sink",
        "streamed",
        "topics",
    )

    def __init__(
        self,
        capacity: int,
        allow: TopicFilter,
        heard: float | None,
        sink: FrameSink | None = None,
    ) -> None:
        self.capacity = capacity
        # set: frames are written to the socket as they are pushed (stream messages pre-encoded,
        # during fan-out) whenever nothing is queued ahead of them; the queue then holds only
        # what the socket cannot take yet, and the writer task only drains it
        self.sink = sink
        # monotonic time of the client's last frame; None: a client that cannot talk (SSE)
        self.heard = heard
        self.allow = allow
        self.topics: set[str] = set()
        # (seq, frame): seq > 0 a stream message, 0 a control frame, -head a Resync to that head
        self.queue: deque[tuple[int, str]] = deque()
        self.delivered = 0
        self.live = False
        # True once a stream message (not a control frame) went to the client: resume is too late
        self.streamed = False
        self.close_code: int | None = None
        self.close_reason = ""
        self._wake = asyncio.Event()
        # set when the connection should end: hung up by the hub, or its reader/writer stopped
        self.finished = asyncio.Event()

    def push(self, seq: int, frame: str, wire: bytes | None = None) -> bool:
        """Send or queue a frame; False (and marked too slow) when the queue is already full.

        With a sink, the frame is written at once (`wire`: its pre-encoded bytes, if shared)
        unless older frames are still queued or the socket cannot take it: no task switch.
        """
        if self.close_code is not None:
            return False
        sink = self.sink
        if sink is not None and not self.queue and sink.ready():
            if seq > 0:
                self.streamed = True
            sink.write(text_frame(frame) if wire is None else wire)
            return True
        if len(self.queue) >= self.capacity:
            self.hang_up(CLOSE_TOO_SLOW, "too slow: resume from your last seq")
            metrics.HUB_DROPPED_CLIENTS.inc()
            return False
        self.queue.append((seq, frame))
        self._wake.set()
        return True

    def hang_up(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code
            self.close_reason = reason
            self.queue.clear()
            self._wake.set()
            self.finished.set()

    async def wait(self) -> None:
        """Wait until there is something to send or a reason to close."""
        # no timer per wait: heartbeats come from one hub-wide ticker (Fanout.heartbeat)
        if self.queue or self.close_code is not None:
            return
        self._wake.clear()
        await self._wake.wait()

    def flush(self) -> bool:
        """Write everything queued to the sink in one write, if it takes frames now; True once
        the queue is empty.

        Synchronous, so frames leave the queue only as they are written: the fan-out's direct
        writes (only when the queue is empty) can never overtake an older frame. One write for
        the whole backlog: one system call instead of one per frame, and at most `capacity`
        frames, the same bound the queue had.
        """
        sink = self.sink
        assert sink is not None
        queue = self.queue
        if not queue or self.close_code is not None or not sink.ready():
            return not queue
        if any(seq > 0 for seq, _ in queue):
            self.streamed = True
        sink.write(b"".join(text_frame(frame) for _, frame in queue))
        queue.clear()
        return True

    def take(self) -> list[tuple[int, str]]:
        """Everything queued, for the writer to send now."""
        items = list(self.queue)
        self.queue.clear()
        if not self.streamed and any(seq > 0 for seq, _ in items):
            self.streamed = True
        return items

    def drop_unsent_messages(self) -> None:
        """Forget queued stream messages (a replay is about to cover them), keep control frames."""
        self.queue = deque(item for item in self.queue if item[0] <= 0)


@dataclass(frozen=True)
class ResumeOutcome:
    """Either `missed` (seq, frame) pairs to send before anything newer, or resync."""

    resync: bool
    head: int
    missed: list[tuple[int, str]]


class Fanout:
    """The connections of this process, an index topic → connections, and the replay ring."""

    def __init__(self, *, replay_size: int, send_queue_size: int, max_clients: int) -> None:
        self.head = 0
        self._ring: deque[Message] = deque(maxlen=replay_size)
        self._send_queue_size = send_queue_size
        self.max_clients = max_clients
        self._connections: set[Connection] = set()
        self._index: dict[str, set[Connection]] = {}
        self._delivered = metrics.Children(metrics.HUB_MESSAGES)  # by message type

    @property
    def clients(self) -> int:
        return len(self._connections)

    @property
    def connections(self) -> tuple[Connection, ...]:
        return tuple(self._connections)

    def connect(
        self,
        allow: TopicFilter = allow_all,
        *,
        heard: float | None = None,
        sink: FrameSink | None = None,
    ) -> Connection | None:
        """A new connection with no topics yet, or None when this process is at capacity.

        `heard` (monotonic now) for clients that answer pings; they are held to the idle timeout.
        `sink` when its server lets the fan-out write pre-encoded frames straight to the socket.
        """
        if len(self._connections) >= self.max_clients:
            return None
        connection = Connection(self._send_queue_size, allow, heard, sink)
        self._connections.add(connection)
        metrics.HUB_CLIENTS.set(len(self._connections))
        return connection

    def disconnect(self, connection: Connection) -> None:
        self._unindex(connection, connection.topics)
        connection.topics.clear()
        self._connections.discard(connection)
        metrics.HUB_CLIENTS.set(len(self._connections))

    def subscribe(self, connection: Connection, topics: Iterable[str]) -> list[str]:
        """Add topics, live from the current head; returns the topics the filter refused."""
        refused = [t for t in topics if not connection.allow(t)]
        added = [t for t in topics if t not in refused and t not in connection.topics]
        if not connection.live:
            connection.live = True
            connection.delivered = self.head
        connection.topics.update(added)
        for topic in added:
            self._index.setdefault(topic, set()).add(connection)
        return refused

    def unsubscribe(self, connection: Connection, topics: Iterable[str]) -> None:
        gone = [t for t in topics if t in connection.topics]
        connection.topics.difference_update(gone)
        self._unindex(connection, gone)

    def resume(self, connection: Connection, after: int) -> ResumeOutcome:
        """What the connection's topics missed after `after`; from now on it is live.

        The caller must queue `missed` before yielding to the event loop, so nothing newer can
        slip in between. Resync when `after` is older than the ring, ahead of the head (another
        stream), or when the missed messages would not fit the send queue.
        """
        connection.live = True
        connection.delivered = self.head
        oldest = self._ring[0].seq if self._ring else self.head + 1
        if after > self.head or after < oldest - 1:
            metrics.HUB_RESUMES.labels(outcome="resync").inc()
            return ResumeOutcome(True, self.head, [])
        missed = [
            (m.seq, m.frame(topic))
            for m in itertools.islice(self._ring, after - oldest + 1, None)
            if (topic := self._first_topic(connection, m)) is not None
        ]
        # one slot more for the Resumed acknowledgement that goes first
        if len(connection.queue) + len(missed) + 1 > connection.capacity:
            metrics.HUB_RESUMES.labels(outcome="resync").inc()
            return ResumeOutcome(True, self.head, [])
        metrics.HUB_RESUMES.labels(outcome="replayed").inc()
        return ResumeOutcome(False, self.head, missed)

    def deliver(self, message: Message) -> None:
        """Append a message to the ring and queue it once for every subscribed connection."""
        if message.seq <= self.head:
            return
        self.head = message.seq
        self._ring.append(message)
        self._delivered.get(message.type).inc()
        too_slow: list[Connection] = []
        seq = message.seq
        for topic in message.topics:
            members = self._index.get(topic)
            if not members:
                continue
            frame = message.frame(topic)
            wire = message.wire(topic)
            for connection in members:
                if connection.delivered >= seq:
                    continue
                connection.delivered = seq
                # with a sink: one write of the shared bytes, no per-client encoding
                if not connection.push(seq, frame, wire):
                    too_slow.append(connection)
        for connection in too_slow:
            self.disconnect_from_topics(connection)

    def restart(self, head: int, messages: Iterable[Message] = ()) -> None:
        """Forget the ring (the stream jumped): every live connection must reload and is told so."""
        self._ring.clear()
        for message in messages:
            # the ring must be gap-free for resume's index arithmetic: keep the contiguous tail
            if self._ring and message.seq != self._ring[-1].seq + 1:
                self._ring.clear()
            self._ring.append(message)
        self.head = self._ring[-1].seq if self._ring else head
        for connection in tuple(self._connections):
            if connection.live:
                connection.delivered = self.head
                connection.push(-self.head, control("Resync", head=self.head))

    def heartbeat(self, now: float, idle_timeout_s: float) -> None:
        """Queue a Ping for every connection; hang up on those silent past the idle timeout."""
        for connection in tuple(self._connections):
            if connection.heard is not None and now - connection.heard > idle_timeout_s:
                connection.hang_up(CLOSE_IDLE, "idle: no frame from the client, not even a pong")
            elif not connection.push(0, PING):
                self.disconnect_from_topics(connection)

    def hang_up_all(self, code: int, reason: str) -> None:
        for connection in tuple(self._connections):
            connection.hang_up(code, reason)

    def disconnect_from_topics(self, connection: Connection) -> None:
        self._unindex(connection, connection.topics)

    def _first_topic(self, connection: Connection, message: Message) -> str | None:
        for topic in message.topics:
            if topic in connection.topics:
                return topic
        return None

    def _unindex(self, connection: Connection, topics: Iterable[str]) -> None:
        for topic in topics:
            members = self._index.get(topic)
            if members is not None:
                members.discard(connection)
                if not members:
                    del self._index[topic]
