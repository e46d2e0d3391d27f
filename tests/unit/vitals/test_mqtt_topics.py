"""Which MQTT topics carry which device, and how a broker URL is read."""

from __future__ import annotations

import socket

import pytest

from healthflow.vitals.ingest_mqtt import Broker, _ReadAhead, device_of


@pytest.mark.parametrize(
    ("topic", "prefix", "device"),
    [
        ("devices/mon-1/messages/events/", "", "mon-1"),
        ("devices/mon-1/messages/events/$.ct=application%2Fjson", "", "mon-1"),
        ("site-a/devices/mon-1/messages/events/", "site-a/", "mon-1"),
        ("devices/mon-1/messages/events/", "site-a/", None),
        ("devices//messages/events/", "", None),
        ("devices/mon-1/messages/devicebound/", "", None),
        ("devices/mon-1", "", None),
        ("other/mon-1/messages/events/", "", None),
    ],
)
def test_the_device_id_comes_from_the_iot_hub_topic(
    topic: str, prefix: str, device: str | None
) -> None:
    assert device_of(topic, prefix) == device


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mqtt://127.0.0.1:1883", Broker("127.0.0.1", 1883, None, None, False)),
        ("mqtt://broker", Broker("broker", 1883, None, None, False)),
        ("mqtts://broker", Broker("broker", 8883, None, None, True)),
        ("mqtt://svc:p%40ss@broker:1884", Broker("broker", 1884, "svc", "p@ss", False)),
    ],
)
def test_broker_urls(url: str, expected: Broker) -> None:
    assert Broker.from_url(url) == expected


@pytest.mark.parametrize("url", ["http://broker", "broker:1883", "amqp://broker"])
def test_urls_of_other_protocols_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="mqtt"):
        Broker.from_url(url)


def test_the_read_ahead_hands_out_what_one_recv_took_in_the_pieces_asked_for() -> None:
    # paho reads a packet's header a byte at a time; the read-ahead serves those from one recv
    ours, broker = socket.socketpair()
    with ours, broker:
        ours.setblocking(False)
        sock = _ReadAhead(ours)
        with pytest.raises(BlockingIOError):  # nothing sent yet: paho's "try again"
            sock.recv(1)
        broker.sendall(b"\x30\x05hello\x40\x02")
        assert sock.recv(1) == b"\x30"
        assert sock.pending() == 8  # read but not yet taken: the subscriber reads on
        assert sock.recv(1) == b"\x05"
        assert sock.recv(5) == b"hello"
        assert sock.recv(10) == b"\x40\x02"  # a short read, as a socket gives
        assert sock.pending() == 0
        broker.sendall(b"\x00\x01")  # a partial packet: paho asks for more than there is
        assert sock.recv(4) == b"\x00\x01"
        assert sock.fileno() == ours.fileno()  # everything else is the socket's
        broker.close()
        assert sock.recv(1) == b""  # the broker closed the connection
