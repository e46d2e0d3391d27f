"""The bare WebSocket broadcast baseline: a minimal `websockets` server, nothing of ours.

    python -m healthflow.bench.bare_ws

Prints `{"port": P}`, then reads commands on stdin: `go RATE SECONDS` publishes RATE messages a
second for SECONDS, round robin over the wards its clients subscribed to, each to every client of
that ward with `websockets.broadcast`, and prints what it sent and the CPU it used; `quit` ends.
Clients speak the same protocol subset as ours: `{"op":"subscribe","topics":[...]}` answered by
`{"type":"Subscribed"}`, `Ping`/`pong` not needed. Messages carry their send time (monotonic) in
`data.sent` and a padding so a frame is as large as a VitalsUpdated.
"""

from __future__ import annotations

import asyncio
import json
import resource
import socket
import sys
import time
from collections import defaultdict
from typing import Any

import orjson

PAD = "x" * 480  # a VitalsUpdated frame is about 600 bytes


async def main() -> None:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    wards: dict[str, set[ServerConnection]] = defaultdict(set)

    async def handler(ws: ServerConnection) -> None:
        joined: list[str] = []
        try:
            async for raw in ws:
                frame = orjson.loads(raw)
                if frame.get("op") == "subscribe":
                    for topic in frame.get("topics", []):
                        if topic.startswith("ward:"):
                            wards[topic].add(ws)
                            joined.append(topic)
                    await ws.send('{"type":"Subscribed"}')
        finally:
            for topic in joined:
                wards[topic].discard(ws)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    async with serve(handler, sock=sock, compression=None, ping_interval=None, max_queue=None):
        print(json.dumps({"port": sock.getsockname()[1]}), flush=True)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            words = (await reader.readline()).decode().split()
            if not words or words[0] != "go":
                break
            print(json.dumps(await publish(wards, float(words[1]), float(words[2]), broadcast)))


async def publish(wards: dict[str, set[Any]], rate: float, seconds: float, broadcast: Any) -> Any:
    names = sorted(wards)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_start = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    sent = deliveries = 0
    while (elapsed := time.perf_counter() - started) < seconds:
        while sent < int(elapsed * rate):
            sent += 1
            topic = names[sent % len(names)]
            frame = {
                "seq": sent,
                "topic": topic,
                "type": "Bare",
                "data": {"sent": time.monotonic(), "pad": PAD},
            }
            broadcast(wards[topic], orjson.dumps(frame).decode())
            deliveries += len(wards[topic])
        await asyncio.sleep(0.002)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "published": sent,
        "deliveries": deliveries,
        "cpu_s": usage.ru_utime + usage.ru_stime - cpu_start,
        "wall_s": time.perf_counter() - started,
    }


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
