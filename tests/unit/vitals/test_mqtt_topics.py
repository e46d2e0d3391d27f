"""Which MQTT topics carry which device, how a broker URL is read, what the subscriber queues."""

from __future__ import annotations

import pytest
from paho.mqtt.client import MQTTMessage
from prometheus_client import REGISTRY

from healthflow.vitals.ingest_mqtt import Broker, _SubscriberClient, device_of


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


def _refused_qos0() -> float:
    value = REGISTRY.get_sample_value(
        "healthflow_telemetry_refused_total", {"transport": "mqtt", "reason": "qos0_overflow"}
    )
    return value or 0.0


def _message(mid: int, qos: int) -> MQTTMessage:
    message = MQTTMessage(mid=mid, topic=b"devices/mon-1/messages/events/")
    message.qos = qos
    message.payload = b"{}"
    return message


async def test_the_subscriber_keeps_every_qos1_message_and_drops_qos0_past_its_limit() -> None:
    # a QoS 1 message dropped here would never be acknowledged and would stall the session
    client = _SubscriberClient("127.0.0.1", 1883, identifier="unit", qos0_limit=2)
    refused = _refused_qos0()
    for mid in range(1, 6):
        client._on_message(client._client, None, _message(mid, qos=1))
    client._on_message(client._client, None, _message(6, qos=0))
    assert len(client.messages) == 5
    assert _refused_qos0() == refused + 1
    client._on_message(client._client, None, _message(7, qos=1))
    assert [m.mid for m in [await anext(client.messages) for _ in range(6)]] == [1, 2, 3, 4, 5, 7]
    client._on_message(client._client, None, _message(8, qos=0))  # room again: kept
    assert len(client.messages) == 1
