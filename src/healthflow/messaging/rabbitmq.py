"""The RabbitMQ event bus (aio-pika): confirmed publishes, quorum queues, delayed retries, a DLQ.

Topology, all names derived from one prefix (the exchange name) so test runs never collide:

    {prefix}                   durable topic exchange, routing key = event type
    {prefix}.{group}           durable quorum queue per consumer group, bound with "#"
    {prefix}.{group}.retry.N   durable delay queue N: message TTL = retry delay N, then
                               dead-lettered back into {prefix}.{group} through the default exchange
    {prefix}.dlx               durable fanout dead-letter exchange
    {prefix}.dead-letters      durable classic queue bound to the DLX: the DLQ

Consecutive events of one type published together travel as one message in the CloudEvents JSON
batch format (`application/cloudevents-batch+json`, at most `batch_events` a message): the broker
routes, stores, confirms and delivers them once, not once each, and they arrive in order. A
message is acked once every event in it is settled.

A failed delivery is republished alone (publisher-confirmed) into the next delay queue with its
attempt count in the `x-attempt` header and only then counted settled; after the last delay it
goes to the DLX with `x-error`, `x-attempts`, `x-group` and `x-failed-at` headers. A crash between
the republish and the ack delivers the event (and the rest of its batch) twice, which consumers
absorb by deduplicating on the event id.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import time
from collections import deque
from collections.abc import Awaitable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    ExchangeType,
)
from aio_pika.exceptions import AMQPConnectionError
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_delay,
    wait_random_exponential,
)

from healthflow.messaging.events import (
    BATCH,
    STRUCTURED,
    CloudEvent,
    MalformedEvent,
    batch_from_json,
    batch_to_json,
)
from healthflow.observability import metrics
from healthflow.ports import Check, Clock, DeadLetter, Sink

log = structlog.get_logger(__name__)

T = TypeVar("T")
ATTEMPT = "x-attempt"
MAX_DEAD_LETTER_SCAN = 10_000
REQUEUE_PAUSE_S = 1.0
LIVE_QUEUE_MAX = 10_000
# and by bytes: a message may be a batch of events, so a count alone would not bound the memory
LIVE_QUEUE_MAX_BYTES = 64 * 1024 * 1024
# how old a group's queue depth may be when `waiting` answers from what it counted before
WAITING_RECOUNT_S = 0.5
# the events per message of a type are averaged over its last SIZES_KEPT messages published
SIZES_KEPT = 64


class _Message:
    """One AMQP message and the events it carries: acked once every event is settled (handled,
    or moved on to a delay queue or the DLQ), or handed back whole if one could not be moved on,
    its handled events then absorbed by the consumers' dedupe by event id."""

    def __init__(self, message: AbstractIncomingMessage, events: int) -> None:
        self.amqp = message
        raw = (message.headers or {}).get(ATTEMPT, 1)
        self.attempt = raw if isinstance(raw, int) and raw >= 1 else 1
        self._unsettled = events
        self._requeue = False

    async def settled(self, *, requeue: bool = False) -> None:
        self._requeue = self._requeue or requeue
        self._unsettled -= 1
        if self._unsettled == 0:
            if self._requeue:
                await RabbitBus._quietly(self.amqp.nack(requeue=True))
            else:
                await RabbitBus._quietly(self.amqp.ack())


class _RabbitDelivery:
    """One event of an AMQP message handed to a sink; settles it exactly once."""

    __slots__ = ("_bus", "_event", "_group", "_message", "_settled")

    def __init__(self, bus: RabbitBus, group: str, message: _Message, event: CloudEvent) -> None:
        self._bus = bus
        self._group = group
        self._message = message
        self._event = event
        self._settled = False

    @property
    def event(self) -> CloudEvent:
        return self._event

    @property
    def attempt(self) -> int:
        return self._message.attempt

    async def ack(self) -> None:
        if self._settled:
            return
        self._settled = True
        await self._message.settled()

    async def reject(self, error: str) -> None:
        if self._settled:
            return
        self._settled = True
        moved_on = await self._bus._retry_or_dead_letter(
            self._group, self._event, self._message.attempt, error
        )
        await self._message.settled(requeue=not moved_on)


class RabbitBus:
    """EventBus over RabbitMQ; `publish` returns only once the broker confirmed every event.

    Ordering: each group has one queue and this process feeds its deliveries to the sink one at a
    time, in queue order, so one consumer process sees each patient's events in publish order and
    the worker pool keeps them ordered per partition key. Retries and several consumer processes
    on one group can reorder a patient's events; handlers are idempotent by event id and analytics
    never moves a patient's state backwards (see docs/infrastructure.md).
    """

    def __init__(
        self,
        url: str,
        *,
        clock: Clock,
        exchange: str,
        retry_delays_s: Sequence[float],
        prefetch: int,
        declare_groups: Sequence[str] = (),
        group_types: Mapping[str, Collection[str]] | None = None,
        live_groups: Sequence[str] = (),
        connection_name: str = "healthflow",
        connect_timeout_s: float = 30.0,
        batch_events: int = 100,
    ) -> None:
        self._url = url
        # events of one type published together travel as one message (CloudEvents batch mode)
        self._batch_events = batch_events
        # how many events the messages published lately carried, per type: a queue depth in
        # messages becomes an estimate in events (`waiting`)
        self._sizes: dict[str, deque[int]] = {}
        self._clock = clock
        self._prefix = exchange
        self._retry_delays = tuple(retry_delays_s)
        self._prefetch = prefetch
        self._declare_groups = tuple(declare_groups)
        # live groups feed one process's live push: a private queue that dies with the connection
        self._live_groups = frozenset(live_groups)
        # a group's queue is bound to its event types (routing keys), or to all ("#")
        self._routing_keys = {g: sorted(t) for g, t in (group_types or {}).items()}
        self._connection_name = connection_name
        self._connect_timeout_s = connect_timeout_s
        self._groups: dict[str, Sink] = {}
        self._connection: AbstractRobustConnection | None = None
        self._publisher: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._dlx: AbstractExchange | None = None
        self._consumers: list[tuple[AbstractChannel, AbstractQueue, str]] = []
        self._ordering: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, tuple[float, int]] = {}
        # one count per group at a time: a burst of requests finding the count stale (a relayed
        # batch of MQTT messages asks once per message) waits for one passive declare, not one each
        self._recounts: dict[str, asyncio.Task[int]] = {}

    @property
    def backend(self) -> str:
        return "rabbitmq"

    def queue_names(self, group: str) -> list[str]:
        """Every queue this bus declares for a group (the group's, then its delay queues)."""
        main = self._queue(group)
        return [main, *(f"{main}.retry.{i}" for i in range(1, len(self._retry_delays) + 1))]

    @property
    def dead_letter_queue(self) -> str:
        return f"{self._prefix}.dead-letters"

    @property
    def exchanges(self) -> list[str]:
        return [self._prefix, f"{self._prefix}.dlx"]

    def _queue(self, group: str) -> str:
        return f"{self._prefix}.{group}"

    async def start(self) -> None:
        # the first connection is retried with growing, jittered waits (a broker still starting);
        # after that connect_robust reconnects by itself and restores channels and consumers
        retrying = AsyncRetrying(
            stop=stop_after_delay(self._connect_timeout_s),
            wait=wait_random_exponential(multiplier=0.2, max=5.0),
            retry=retry_if_exception_type((ConnectionError, OSError, AMQPConnectionError)),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                self._connection = await aio_pika.connect_robust(
                    self._url,
                    client_properties={"connection_name": self._connection_name},
                    reconnect_interval=1.0,
                    timeout=5.0,
                )
        connection = self._require(self._connection)
        self._publisher = await connection.channel(publisher_confirms=True, on_return_raises=True)
        self._exchange = await self._publisher.declare_exchange(
            self._prefix, ExchangeType.TOPIC, durable=True
        )
        self._dlx = await self._publisher.declare_exchange(
            f"{self._prefix}.dlx", ExchangeType.FANOUT, durable=True
        )
        dlq = await self._publisher.declare_queue(self.dead_letter_queue, durable=True)
        await dlq.bind(self._dlx)
        for group in self._declare_groups:
            await self._declare_group(self._publisher, group)
        for group, sink in self._groups.items():
            await self._consume(group, sink)

    async def close(self) -> None:
        for channel, queue, tag in self._consumers:
            try:
                await queue.cancel(tag)
                await channel.close()
            except Exception as exc:  # closing anyway: the broker requeues what was unacked
                log.warning("rabbitmq_consumer_close_failed", error=repr(exc))
        self._consumers.clear()
        if self._connection is not None:
            await self._connection.close()
        self._connection = None

    def subscribe(self, group: str, sink: Sink, *, types: Collection[str] | None = None) -> None:
        if group in self._groups:
            raise ValueError(f"consumer group {group!r} already has a subscriber")
        if self._connection is not None:
            raise RuntimeError("subscribe before start: consumers are declared when the bus starts")
        self._groups[group] = sink
        # routing keys are event types: the queue is bound to its types only, so the broker
        # never queues what the group would drop, and an event whose consumers have not
        # declared their queue yet is refused (it stays in the outbox) instead of lost
        if types is not None:
            self._routing_keys[group] = sorted(types)

    async def publish(self, events: Sequence[CloudEvent]) -> None:
        exchange = self._require(self._exchange)
        messages = []
        for batch in self._batches(events):
            if len(batch) == 1:
                messages.append((self._message(batch[0], {ATTEMPT: 1}), batch[0].type))
            else:
                messages.append((self._batch_message(batch), batch[0].type))
            self._sizes.setdefault(batch[0].type, deque(maxlen=SIZES_KEPT)).append(len(batch))
        # concurrent publishes on one confirming channel: each await returns on the broker's ack
        await asyncio.gather(
            *(exchange.publish(m, routing_key=key, mandatory=True) for m, key in messages)
        )
        metrics.EVENTS_PUBLISHED.labels(bus="rabbitmq").inc(len(events))

    def _batches(self, events: Sequence[CloudEvent]) -> list[Sequence[CloudEvent]]:
        """Runs of consecutive events of one type (one routing key), at most `batch_events`
        each: the broker routes, queues and confirms each run as one message, in order."""
        batches: list[Sequence[CloudEvent]] = []
        start = 0
        for i in range(1, len(events) + 1):
            if (
                i == len(events)
                or events[i].type != events[start].type
                or i - start == self._batch_events
            ):
                batches.append(events[start:i])
                start = i
        return batches

    async def dead_letters(self, *, group: str | None, limit: int) -> list[DeadLetter]:
        """The newest dead letters, read without removing any: unacked gets go back in place."""
        connection = self._require(self._connection)
        letters: list[DeadLetter] = []
        channel = await connection.channel(publisher_confirms=False)
        try:
            queue = await channel.get_queue(self.dead_letter_queue, ensure=True)
            for _ in range(MAX_DEAD_LETTER_SCAN):
                message = await queue.get(no_ack=False, fail=False)
                if message is None:
                    break
                letters.extend(
                    letter
                    for letter in self._letters(message)
                    if group is None or letter.group == group
                )
        finally:
            # closing the channel hands every unacked message back to the queue, order kept
            await channel.close()
        return list(reversed(letters))[:limit]

    async def waiting(self, group: str) -> int:
        """Events ready in the group's queue: its messages, from a passive declare at most every
        WAITING_RECOUNT_S (the intake asks on every request) and one at a time, times the events a
        message of the group's types carried lately; 0 while the queue does not exist, since then
        nothing is routed to it (mandatory publishes keep such events in the outbox)."""
        counted_at, count = self._waiting.get(group, (-math.inf, 0))
        if time.monotonic() - counted_at < WAITING_RECOUNT_S:
            return count
        recount = self._recounts.get(group)
        if recount is None or recount.done():
            # its own task: a caller that gives up does not cancel the others' count
            recount = asyncio.create_task(
                self._recount(group), name=f"bus.waiting.{group}", context=contextvars.Context()
            )
            self._recounts[group] = recount
        return await asyncio.shield(recount)

    async def _recount(self, group: str) -> int:
        _, count = self._waiting.get(group, (-math.inf, 0))
        try:
            messages = await self._ready_in(self._queue(group))
            count = math.ceil(messages * self._events_per_message(group))
        except Exception as exc:
            # a broker that cannot be asked must not stop the intake, which keeps accepting
            # into its outbox: the last count stands until the broker answers again
            metrics.BUS_QUERY_FAILURES.inc()
            log.warning("bus_queue_depth_unknown", group=group, error=repr(exc))
        self._waiting[group] = (time.monotonic(), count)
        return count

    def _events_per_message(self, group: str) -> float:
        """How many events a message of the group's types carried lately (1 if none was sent
        from this process): batches are fuller the busier the publisher, so this follows load."""
        keys = self._routing_keys.get(group)
        ratios = [sum(n) / len(n) for t, n in self._sizes.items() if keys is None or t in keys]
        return max(ratios, default=1.0)

    async def _ready_in(self, queue_name: str) -> int:
        channel = await self._require(self._connection).channel(publisher_confirms=False)
        try:
            queue = await channel.declare_queue(queue_name, passive=True)
            return int(queue.declaration_result.message_count or 0)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return 0  # no queue yet: nothing is routed to it
        finally:
            if not channel.is_closed:
                await channel.close()

    async def dead_letter_count(self) -> int:
        """Messages ready in the dead-letter queue, from a passive declare (nothing is read);
        letters a concurrent `dead_letters` listing holds unacked are not counted meanwhile."""
        connection = self._require(self._connection)
        channel = await connection.channel(publisher_confirms=False)
        try:
            queue = await channel.declare_queue(self.dead_letter_queue, passive=True)
            count = queue.declaration_result.message_count
        finally:
            await channel.close()
        return int(count or 0)

    async def check(self) -> Check:
        connection = self._connection
        up = connection is not None and not connection.is_closed and connection.connected.is_set()
        return Check(up, {"backend": "rabbitmq", "groups": sorted(self._groups)})

    async def _declare_group(self, channel: AbstractChannel, group: str) -> AbstractQueue:
        exchange = self._require(self._exchange)
        names = self.queue_names(group)
        if group in self._live_groups:
            # bounded: a gateway that falls behind loses the oldest live pushes, never memory
            live = await channel.declare_queue(
                names[0],
                exclusive=True,
                auto_delete=True,
                arguments={
                    "x-max-length": LIVE_QUEUE_MAX,
                    "x-max-length-bytes": LIVE_QUEUE_MAX_BYTES,
                    "x-overflow": "drop-head",
                },
            )
            for key in self._routing_keys.get(group, ["#"]):
                await live.bind(exchange, routing_key=key)
            return live
        queue = await channel.declare_queue(
            names[0],
            durable=True,
            arguments={"x-queue-type": "quorum", "x-dead-letter-exchange": f"{self._prefix}.dlx"},
        )
        for key in self._routing_keys.get(group, ["#"]):
            await queue.bind(exchange, routing_key=key)
        for name, delay in zip(names[1:], self._retry_delays, strict=True):
            await channel.declare_queue(
                name,
                durable=True,
                arguments={
                    "x-message-ttl": max(1, round(delay * 1000)),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": names[0],
                },
            )
        return queue

    async def _consume(self, group: str, sink: Sink) -> None:
        connection = self._require(self._connection)
        channel = await connection.channel(publisher_confirms=False)
        await channel.set_qos(prefetch_count=self._prefetch)
        queue = await self._declare_group(channel, group)
        ordering = self._ordering.setdefault(group, asyncio.Lock())

        async def on_message(message: AbstractIncomingMessage) -> None:
            # aio-pika runs each callback as its own task; the fair lock hands deliveries to the
            # sink in arrival order, and waiting on a full sink holds back the ones behind it
            async with ordering:
                await self._deliver(group, sink, message)

        tag = await queue.consume(on_message, no_ack=False)
        self._consumers.append((channel, queue, tag))

    async def _deliver(self, group: str, sink: Sink, message: AbstractIncomingMessage) -> None:
        try:
            events = self._events_of(message)
        except MalformedEvent as exc:
            log.error("rabbitmq_malformed_message", group=group, error=str(exc))
            metrics.EVENTS_DEAD_LETTERED.labels(group=group).inc()
            await self._quietly(message.reject(requeue=False))  # the queue's DLX takes it
            return
        held = _Message(message, len(events))
        for event in events:
            try:
                await sink(_RabbitDelivery(self, group, held, event))
            except Exception as exc:
                # e.g. the worker pool is stopping: the message stays unacked (this event and
                # any after it unsettled) and the broker delivers it again
                log.warning(
                    "rabbitmq_sink_refused", group=group, event_id=event.id, error=repr(exc)
                )
                return

    @staticmethod
    def _events_of(message: AbstractIncomingMessage) -> list[CloudEvent]:
        if message.content_type == BATCH:
            return batch_from_json(message.body)
        return [CloudEvent.from_json(message.body)]

    async def _retry_or_dead_letter(
        self, group: str, event: CloudEvent, attempt: int, error: str
    ) -> bool:
        """Move one failed event on, alone (out of its batch): True once its next home (delay
        queue or DLQ) confirmed it; False if that failed and its message must go back whole."""
        try:
            if attempt <= len(self._retry_delays):
                delay_queue = self.queue_names(group)[attempt]
                channel = self._require(self._publisher)
                await channel.default_exchange.publish(
                    self._message(event, {ATTEMPT: attempt + 1, "x-last-error": error[:1000]}),
                    routing_key=delay_queue,
                    mandatory=True,
                )
                metrics.EVENTS_RETRIED.labels(group=group).inc()
            else:
                headers = {
                    "x-group": group,
                    "x-error": error[:4000],
                    "x-attempts": attempt,
                    "x-failed-at": self._clock.now().isoformat(),
                }
                await self._require(self._dlx).publish(
                    self._message(event, headers), routing_key=group, mandatory=True
                )
                metrics.EVENTS_DEAD_LETTERED.labels(group=group).inc()
                log.error(
                    "event_dead_lettered",
                    group=group,
                    event_id=event.id,
                    event_type=event.type,
                    attempts=attempt,
                    error=error,
                )
        except Exception as exc:
            # not moved on: the original goes back (after a pause, so a broker that refuses the
            # republish is not hammered) and the broker delivers it again, same attempt count
            log.error(
                "rabbitmq_retry_publish_failed", group=group, event_id=event.id, error=repr(exc)
            )
            await asyncio.sleep(REQUEUE_PAUSE_S)
            return False
        return True

    def _letters(self, message: AbstractIncomingMessage) -> list[DeadLetter]:
        """A handler's failure arrives alone; a batch the broker itself dead-lettered is every
        event in it; a message that is no CloudEvent at all is none (it stays in the queue)."""
        headers: dict[str, Any] = dict(message.headers or {})
        try:
            events = self._events_of(message)
        except MalformedEvent:
            return []
        group = headers.get("x-group")
        if group is None:  # dead-lettered by the broker itself (x-death), not by a handler
            deaths = headers.get("x-death") or [{}]
            queue = str(deaths[0].get("queue", "")) if isinstance(deaths, list) else ""
            group = queue.removeprefix(f"{self._prefix}.")
        failed_at = headers.get("x-failed-at")
        return [
            DeadLetter(
                group=str(group),
                event=event,
                error=str(headers.get("x-error", "rejected by the broker")),
                attempts=int(headers.get("x-attempts", 0)),
                failed_at=datetime.fromisoformat(failed_at) if failed_at else self._clock.now(),
            )
            for event in events
        ]

    @staticmethod
    def _message(event: CloudEvent, headers: dict[str, Any]) -> aio_pika.Message:
        return aio_pika.Message(
            event.to_json(),
            message_id=event.id,
            type=event.type,
            content_type=STRUCTURED,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers=headers,
        )

    @staticmethod
    def _batch_message(events: Sequence[CloudEvent]) -> aio_pika.Message:
        return aio_pika.Message(
            batch_to_json(events),
            message_id=events[0].id,
            type=events[0].type,
            content_type=BATCH,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            headers={ATTEMPT: 1},
        )

    @staticmethod
    async def _quietly(settle: Awaitable[Any]) -> None:
        # a settle on a channel lost meanwhile fails; the broker then redelivers the message and
        # the consumer's dedupe by event id absorbs the repeat
        try:
            await settle
        except Exception as exc:
            log.warning("rabbitmq_settle_failed", error=repr(exc))

    @staticmethod
    def _require(value: T | None) -> T:
        if value is None:
            raise RuntimeError("rabbitmq bus is not started")
        return value
