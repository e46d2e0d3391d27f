"""Which MQTT topics carry which device, and how a broker URL is read."""

from __future__ import annotations

import pytest

from healthflow.vitals.ingest_mqtt import Broker, device_of


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
