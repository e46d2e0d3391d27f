"""Client operations on a live connection (subscribe, unsubscribe, resume, ping, pong).

Each operation is handled synchronously and answers by queueing control frames on the
connection, so its acknowledgement is always ahead of the messages it lets through.
"""

from __future__ import annotations

from typing import Any

import orjson

from healthflow.realtime.fanout import Connection, Fanout, control
from healthflow.realtime.topics import MAX_TOPICS, TopicInvalid, parse_topics

OPS = ("subscribe", "unsubscribe", "resume", "ping", "pong")


class OpRefused(ValueError):
    """A client operation that cannot be carried out; answered with an Error frame."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def handle(fanout: Fanout, connection: Connection, raw: str | bytes) -> None:
    """Carry out one client frame; anything wrong becomes an Error frame, never an exception."""
    try:
        _dispatch(fanout, connection, _parse(raw))
    except OpRefused as refused:
        connection.push(0, control("Error", code=refused.code, detail=str(refused)))


def subscribe(fanout: Fanout, connection: Connection, topics: list[str]) -> list[str]:
    """Add topics within the per-connection limit; returns the ones the access filter refused."""
    if len(connection.topics.union(topics)) > MAX_TOPICS:
        raise OpRefused("too_many_topics", f"at most {MAX_TOPICS} topics per connection")
    return fanout.subscribe(connection, topics)


def resume(fanout: Fanout, connection: Connection, after: int, topics: list[str]) -> None:
    """Subscribe and queue what was missed after `after` (Resumed, messages) or a Resync.

    Allowed until the first stream message went out on this connection; messages queued but not
    yet sent are dropped because the replay covers them in order.
    """
    if connection.streamed:
        raise OpRefused("resume_too_late", "resume must come before any message was received")
    refused = subscribe(fanout, connection, topics) if topics else []
    connection.drop_unsent_messages()
    outcome = fanout.resume(connection, after)
    current = sorted(connection.topics)
    if outcome.resync:
        connection.push(
            -outcome.head, control("Resync", topics=current, refused=refused, head=outcome.head)
        )
        return
    connection.push(
        0,
        control(
            "Resumed",
            topics=current,
            refused=refused,
            after=after,
            replayed=len(outcome.missed),
            head=outcome.head,
        ),
    )
    for seq, frame in outcome.missed:
        connection.push(seq, frame)


def _parse(raw: str | bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise OpRefused("bad_json", "frames must be JSON objects") from None
    if not isinstance(body, dict):
        raise OpRefused("bad_json", "frames must be JSON objects")
    if body.get("op") not in OPS:
        raise OpRefused("bad_op", f"op must be one of {', '.join(OPS)}")
    return body


def _topics(body: dict[str, Any], *, required: bool) -> list[str]:
    raw = body.get("topics")
    if raw is None and not required:
        return []
    if not isinstance(raw, list) or (required and not raw):
        raise OpRefused("bad_topics", "topics must be a non-empty list of topic names")
    if len(raw) > MAX_TOPICS:
        raise OpRefused("too_many_topics", f"at most {MAX_TOPICS} topics per connection")
    try:
        return parse_topics(raw)
    except TopicInvalid as exc:
        raise OpRefused("bad_topics", str(exc)) from None


def _dispatch(fanout: Fanout, connection: Connection, body: dict[str, Any]) -> None:
    op = body["op"]
    if op == "ping":
        connection.push(0, control("Pong"))
    elif op == "pong":
        return
    elif op == "subscribe":
        refused = subscribe(fanout, connection, _topics(body, required=True))
        acknowledge(fanout, connection, refused)
    elif op == "unsubscribe":
        fanout.unsubscribe(connection, _topics(body, required=True))
        acknowledge(fanout, connection, [])
    else:
        after = body.get("after")
        if not isinstance(after, int) or isinstance(after, bool) or after < 0:
            raise OpRefused("bad_after", "after must be the last seq received, an integer >= 0")
        resume(fanout, connection, after, _topics(body, required=False))


def acknowledge(fanout: Fanout, connection: Connection, refused: list[str]) -> None:
    """Queue `Subscribed` with the connection's topics now and the stream's head."""
    connection.push(
        0,
        control("Subscribed", topics=sorted(connection.topics), refused=refused, head=fanout.head),
    )
