"""What the MQTT subscriber's transport costs per message, without the intake behind it.

Starts a Mosquitto of its own (deploy/mosquitto.conf, as `healthflow bench` does), runs the
production subscriber (`MqttIngest`) in this process with an intake that stores nothing and
refuses nothing, and has a publisher in another process send N one-reading messages at QoS 1,
as bedside monitors do. Reports this process's CPU per message (paho's reads, aiomqtt's
queue, the batching, the PUBACKs) and the messages/s it took them at; the publisher's CPU is
not counted. Runs on uvloop, as `healthflow serve` does. The intake's own cost per message is
`benchmarks/stages.py`'s mqtt stage.

    .venv/bin/python benchmarks/mqtt_transport.py [--messages 50000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import uvloop

from healthflow.bench.server import mosquitto_binary, own_mosquitto
from healthflow.vitals.ingest_mqtt import Broker, MqttIngest
from healthflow.vitals.ports import DeviceMessage

PUBLISHER = r"""
import sys, time
import paho.mqtt.client as mqtt
port, prefix, count, devices = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), 400
client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=prefix + "pub")
client.max_inflight_messages_set(1000)
client.max_queued_messages_set(0)
client.connect("127.0.0.1", port)
client.loop_start()
info = None
for i in range(count):
    body = (
        '{"device_key":"k%d","ts":"2026-12-02T03:%02d:%02d.%03dZ","heart_rate":%d,'
        '"resp_rate":16,"spo2":97,"systolic_bp":121,"diastolic_bp":79,"temperature":36.8,'
        '"consciousness":"alert","on_oxygen":false}'
        % (i % devices, i // 60000 % 60, i // 1000 % 60, i % 1000, 60 + i % 40)
    )
    info = client.publish(f"{prefix}devices/dev-{i % devices}/messages/events/", body, qos=1)
    while len(client._out_messages) >= 1000:
        time.sleep(0.0005)
info.wait_for_publish()
client.loop_stop()
client.disconnect()
"""


class NullIntake:
    """DeviceMessages that takes everything at once: only the transport is measured."""

    def __init__(self) -> None:
        self.messages = 0
        self.batches = 0
        self.first = asyncio.Event()
        self.done = asyncio.Event()
        self.expected = 0

    async def submit_many(self, messages: Sequence[DeviceMessage]) -> list[Exception | None]:
        self.messages += len(messages)
        self.batches += 1
        self.first.set()
        if self.messages >= self.expected:
            self.done.set()
        return [None] * len(messages)


async def one_round(url: str, count: int) -> dict[str, float]:
    broker = Broker.from_url(url)
    prefix = f"bench-{uuid.uuid4().hex[:8]}/"
    intake = NullIntake()
    intake.expected = count
    ingest = MqttIngest(
        intake,
        broker,
        client_id=prefix + "sub",
        topic_prefix=prefix,
        max_message_bytes=65536,
        queue_size=1000,
    )
    task = asyncio.create_task(ingest.run())
    try:
        await asyncio.wait_for(ingest.subscribed.wait(), 10)
        publisher = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PUBLISHER, str(broker.port), prefix, str(count)
        )
        # the clock starts at the first message: the publisher's start-up is not the subscriber's
        await asyncio.wait_for(intake.first.wait(), 60)
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.wait_for(intake.done.wait(), 300)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        await publisher.wait()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return {
        "cpu_us_per_message": cpu / count * 1e6,
        "messages_per_s": count / wall,
        "mean_batch": intake.messages / intake.batches,
    }


async def main(args: argparse.Namespace) -> None:
    binary = mosquitto_binary()
    if binary is None:
        sys.exit("no mosquitto binary on PATH")
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        async with own_mosquitto(binary, Path(folder)) as url:
            for r in range(args.rounds):
                result = await one_round(url, args.messages)
                rounds.append(result)
                print(
                    f"round {r + 1}: {result['cpu_us_per_message']:6.1f} µs CPU a message, "
                    f"{result['messages_per_s']:8,.0f} messages/s, "
                    f"mean batch {result['mean_batch']:.1f}",
                    flush=True,
                )
    print(
        "median: "
        + ", ".join(f"{key} {statistics.median(r[key] for r in rounds):,.1f}" for key in rounds[0])
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rounds", type=int, default=3)
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(main(parser.parse_args()))  # the loop `healthflow serve` runs on
