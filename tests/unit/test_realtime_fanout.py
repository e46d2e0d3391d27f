"""The fan-out: once per connection, bounded queues, replay and Resync decisions."""

from __future__ import annotations

import orjson

from healthflow.realtime import protocol
from healthflow.realtime.fanout import CLOSE_IDLE, CLOSE_TOO_SLOW, Connection, Fanout, Message


def message(seq: int, *topics: str, n: int = 0) -> Message:
    return Message(seq, "AlertRaised", "2026-11-25T09:00:00+00:00", f'{{"n":{n}}}', topics)


def connected(fanout: Fanout, *topics: str) -> Connection:
    connection = fanout.connect()
    assert connection is not None
    fanout.subscribe(connection, list(topics))
    return connection


def frames(connection: Connection) -> list[dict[str, object]]:
    return [orjson.loads(frame) for _, frame in connection.take()]


def test_a_message_on_two_subscribed_topics_is_queued_once_under_the_first() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=10, max_clients=10)
    connection = connected(fanout, "ward:ICU", "alerts")
    fanout.deliver(message(1, "alerts", "ward:ICU"))
    assert frames(connection) == [
        {
            "seq": 1,
            "topic": "alerts",
            "type": "AlertRaised",
            "time": "2026-11-25T09:00:00+00:00",
            "data": {"n": 0},
        }
    ]


def test_an_old_or_repeated_seq_is_ignored() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=10, max_clients=10)
    connection = connected(fanout, "alerts")
    fanout.deliver(message(1, "alerts"))
    fanout.deliver(message(1, "alerts"))
    assert len(connection.take()) == 1


def test_a_full_queue_hangs_up_too_slow_and_stops_delivery_to_it() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=2, max_clients=10)
    slow, fast = connected(fanout, "alerts"), connected(fanout, "alerts")
    for seq in range(1, 4):
        fanout.deliver(message(seq, "alerts"))
        fast.take()
    assert slow.close_code == CLOSE_TOO_SLOW
    assert slow.queue == type(slow.queue)()  # its memory is released at once
    fanout.deliver(message(4, "alerts"))
    assert slow.take() == []
    assert [f["seq"] for f in frames(fast)] == [4]


def test_capacity_is_enforced() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=2, max_clients=1)
    assert fanout.connect() is not None
    assert fanout.connect() is None


def test_resume_within_the_ring_replays_only_subscribed_topics() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=10, max_clients=10)
    for seq in range(1, 7):
        fanout.deliver(message(seq, "alerts" if seq % 2 else "metrics", n=seq))
    connection = fanout.connect()
    assert connection is not None
    protocol.resume(fanout, connection, 2, ["alerts"])
    got = frames(connection)
    assert got[0]["type"] == "Resumed"
    assert [f["seq"] for f in got[1:]] == [3, 5]


def test_resume_older_than_the_ring_or_beyond_the_head_is_resync() -> None:
    fanout = Fanout(replay_size=3, send_queue_size=10, max_clients=10)
    for seq in range(1, 7):
        fanout.deliver(message(seq, "alerts"))
    for after in (0, 2, 7):
        connection = fanout.connect()
        assert connection is not None
        protocol.resume(fanout, connection, after, ["alerts"])
        assert [f["type"] for f in frames(connection)] == ["Resync"], after
    edge = fanout.connect()
    assert edge is not None
    protocol.resume(fanout, edge, 3, ["alerts"])
    assert [f.get("seq") for f in frames(edge)] == [None, 4, 5, 6]


def test_resume_that_would_overflow_the_send_queue_is_resync() -> None:
    fanout = Fanout(replay_size=100, send_queue_size=5, max_clients=10)
    for seq in range(1, 21):
        fanout.deliver(message(seq, "alerts"))
    connection = fanout.connect()
    assert connection is not None
    protocol.resume(fanout, connection, 10, ["alerts"])
    assert [f["type"] for f in frames(connection)] == ["Resync"]
    assert connection.close_code is None


def test_a_restart_tells_live_connections_to_resync() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=10, max_clients=10)
    connection = connected(fanout, "alerts")
    fanout.restart(41)
    [(position, frame)] = connection.take()
    assert position == -41
    assert orjson.loads(frame) == {"type": "Resync", "head": 41}


def test_heartbeat_pings_everyone_and_hangs_up_only_silent_talkers() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=10, max_clients=10)
    silent = fanout.connect(heard=100.0)
    chatty = fanout.connect(heard=100.0)
    listener = fanout.connect()  # SSE: cannot answer, never idle
    assert silent is not None
    assert chatty is not None
    assert listener is not None
    chatty.heard = 140.0
    fanout.heartbeat(now=150.0, idle_timeout_s=45.0)
    assert silent.close_code == CLOSE_IDLE
    assert [f["type"] for f in frames(chatty)] == ["Ping"]
    assert [f["type"] for f in frames(listener)] == ["Ping"]


def test_a_restart_from_entries_with_a_hole_keeps_only_the_gap_free_tail() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=10, max_clients=10)
    fanout.restart(0, [message(seq, "alerts") for seq in (1, 2, 5, 6, 7)])
    assert fanout.head == 7
    connection = fanout.connect()
    assert connection is not None
    protocol.resume(fanout, connection, 2, ["alerts"])
    assert [f["type"] for f in frames(connection)] == ["Resync"]
    again = fanout.connect()
    assert again is not None
    protocol.resume(fanout, again, 5, ["alerts"])
    assert [f.get("seq") for f in frames(again)] == [None, 6, 7]
