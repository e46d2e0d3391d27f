"""Fan-out straight to a socket: pre-encoded frames, written in order, queued only when needed."""

from __future__ import annotations

import orjson
import pytest

from healthflow.realtime import protocol
from healthflow.realtime.fanout import CLOSE_TOO_SLOW, Connection, Fanout, Message, control
from healthflow.realtime.wire import text_frame


class RecordingSink:
    """A socket that takes frames while `accepting`, and remembers them (our own port's fake)."""

    def __init__(self) -> None:
        self.accepting = True
        self.written: list[bytes] = []

    def ready(self) -> bool:
        return self.accepting

    def write(self, data: bytes) -> None:
        self.written.append(data)

    async def drained(self) -> bool:
        return True

    def texts(self) -> list[dict[str, object]]:
        """The JSON of every frame written: checks that each is whole, plain text frames."""
        out = []
        for data in self.written:
            at = 0
            while at < len(data):
                assert data[at] == 0x81  # final text frame, no compression bit
                assert data[at + 1] & 0x80 == 0  # server frames are never masked
                size, start = data[at + 1], at + 2
                if size == 126:
                    size, start = int.from_bytes(data[at + 2 : at + 4], "big"), at + 4
                out.append(orjson.loads(data[start : start + size]))
                at = start + size
        return out


def message(seq: int, *topics: str) -> Message:
    return Message(seq, "AlertRaised", "2026-11-25T09:00:00+00:00", f'{{"n":{seq}}}', topics)


def socket_connection(fanout: Fanout, *topics: str) -> tuple[Connection, RecordingSink]:
    sink = RecordingSink()
    connection = fanout.connect(sink=sink)
    assert connection is not None
    fanout.subscribe(connection, list(topics))
    return connection, sink


def test_a_message_is_written_to_every_ready_socket_as_the_same_bytes() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=10, max_clients=10)
    (a, sink_a), (b, sink_b) = (socket_connection(fanout, "alerts") for _ in range(2))
    fanout.deliver(message(1, "alerts"))
    assert sink_a.written == sink_b.written
    assert sink_a.written[0] is sink_b.written[0]  # encoded once, shared
    assert sink_a.texts() == [
        {
            "seq": 1,
            "topic": "alerts",
            "type": "AlertRaised",
            "time": "2026-11-25T09:00:00+00:00",
            "data": {"n": 1},
        }
    ]
    assert not a.queue
    assert not b.queue


def test_a_socket_that_cannot_take_more_gets_a_queue_that_flushes_in_order() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=10, max_clients=10)
    connection, sink = socket_connection(fanout, "alerts")
    fanout.deliver(message(1, "alerts"))
    sink.accepting = False
    fanout.deliver(message(2, "alerts"))
    sink.accepting = True
    # ready again, but 2 is still queued: 3 must wait behind it, never overtake it
    fanout.deliver(message(3, "alerts"))
    assert [seq for seq, _ in connection.queue] == [2, 3]
    assert connection.flush()
    fanout.deliver(message(4, "alerts"))
    assert [f["seq"] for f in sink.texts()] == [1, 2, 3, 4]


def test_a_backlog_goes_out_in_one_write_in_order() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=10, max_clients=10)
    connection, sink = socket_connection(fanout, "alerts")
    sink.accepting = False
    for seq in (1, 2, 3):
        fanout.deliver(message(seq, "alerts"))
    sink.accepting = True
    assert connection.flush()
    assert len(sink.written) == 1
    assert [f["seq"] for f in sink.texts()] == [1, 2, 3]


def test_a_flush_writes_nothing_while_the_socket_takes_no_frames() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=10, max_clients=10)
    connection, sink = socket_connection(fanout, "alerts")
    sink.accepting = False
    for seq in (1, 2):
        fanout.deliver(message(seq, "alerts"))
    assert not connection.flush()
    assert sink.written == []
    assert len(connection.queue) == 2


def test_a_queued_control_frame_keeps_its_place_ahead_of_later_messages() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=10, max_clients=10)
    connection, sink = socket_connection(fanout, "alerts")
    sink.accepting = False
    protocol.acknowledge(fanout, connection, [])
    sink.accepting = True
    fanout.deliver(message(1, "alerts"))
    assert sink.written == []
    assert connection.flush()
    assert [f.get("type") for f in sink.texts()] == ["Subscribed", "AlertRaised"]


def test_a_socket_that_stays_blocked_is_hung_up_too_slow_and_written_no_more() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=2, max_clients=10)
    connection, sink = socket_connection(fanout, "alerts")
    sink.accepting = False
    for seq in (1, 2, 3):
        fanout.deliver(message(seq, "alerts"))
    assert connection.close_code == CLOSE_TOO_SLOW
    sink.accepting = True
    fanout.deliver(message(4, "alerts"))
    assert connection.flush()
    assert sink.written == []


def test_a_message_written_to_the_socket_makes_a_later_resume_too_late() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=10, max_clients=10)
    connection, sink = socket_connection(fanout, "alerts")
    fanout.deliver(message(1, "alerts"))
    protocol.handle(fanout, connection, b'{"op": "resume", "after": 0}')
    assert sink.texts()[-1]["code"] == "resume_too_late"


def test_resume_writes_the_acknowledgement_and_the_replay_before_anything_newer() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=10, max_clients=10)
    for seq in (1, 2, 3):
        fanout.deliver(message(seq, "alerts"))
    sink = RecordingSink()
    connection = fanout.connect(sink=sink)
    assert connection is not None
    protocol.resume(fanout, connection, 1, ["alerts"])
    fanout.deliver(message(4, "alerts"))
    assert [f.get("seq") for f in sink.texts()] == [None, 2, 3, 4]
    assert not connection.queue


def test_a_replay_the_socket_cannot_take_waits_in_the_queue_ahead_of_live_messages() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=10, max_clients=10)
    for seq in (1, 2, 3):
        fanout.deliver(message(seq, "alerts"))
    sink = RecordingSink()
    sink.accepting = False
    connection = fanout.connect(sink=sink)
    assert connection is not None
    protocol.resume(fanout, connection, 1, ["alerts"])
    sink.accepting = True
    fanout.deliver(message(4, "alerts"))  # queued behind the replay, not written first
    assert connection.flush()
    fanout.deliver(message(5, "alerts"))
    assert [f.get("seq") for f in sink.texts()] == [None, 2, 3, 4, 5]


def test_control_frames_are_written_at_once_when_nothing_waits() -> None:
    fanout = Fanout(replay_size=10, send_queue_size=10, max_clients=10)
    connection, sink = socket_connection(fanout, "alerts")
    fanout.heartbeat(now=0.0, idle_timeout_s=45.0)
    assert [f["type"] for f in sink.texts()] == ["Ping"]
    assert not connection.queue


@pytest.mark.parametrize(("size", "header"), [(125, b"\x81\x7d"), (126, b"\x81\x7e\x00\x7e")])
def test_text_frames_are_final_unmasked_and_length_prefixed(size: int, header: bytes) -> None:
    text = "x" * size
    assert text_frame(text) == header + text.encode()


def test_control_frames_encode_like_stream_messages() -> None:
    assert text_frame(control("Pong")) == b"\x81\x0f" + b'{"type":"Pong"}'
