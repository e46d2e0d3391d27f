"""Live-push benchmark: C WebSocket clients on one server process, M messages/s for D seconds.

    python benchmarks/realtime.py [--clients 2000] [--rate 1000] [--duration 30] [--wards 50]

One `healthflow` server process (the real app under uvicorn, memory hub unless --backplane) runs
a publisher task inside it that calls `hub.broadcast` M times a second, spread evenly over W
wards, each message stamped with its wall-clock send time. Client processes open C connections,
each subscribing to one ward (`ward:W{i % W}`), answer pings, and record publish-to-receive
latency. Reported: p50/p95/p99 latency, messages delivered/expected (to clients that were not
dropped), clients dropped as too slow, server peak RSS and RSS per idle connection.
This is a measurement, not a test: it asserts nothing. Results go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import multiprocessing as mp
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ----------------------------------------------------------------------------- server process


async def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from healthflow.app import build_app
    from healthflow.settings import Settings

    env: dict[str, Any] = {
        "data_dir": Path(args.data_dir),
        "log_level": "warning",
        "hub_max_clients": args.clients + 100,
        "hub_metrics_interval_s": 3600.0,
        # thousands of connections from one address in seconds: not what the limits are for
        "rate_limit_client_per_minute": 10_000_000,
        "rate_limit_subject_per_minute": 10_000_000,
    }
    if args.backplane:
        env["hub_backplane_url"] = args.backplane
        env["hub_redis_prefix"] = f"bench-{os.getpid()}"
    app = build_app(Settings(**env))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", backlog=4096))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for this)
        await asyncio.sleep(0.05)
    hub = app.state.hub
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    minter = app.state.platform.security.dev_tokens
    token = minter.mint("bench", "admin", now=datetime.now(UTC), ttl=timedelta(hours=2))
    print(json.dumps({"port": port, "rss_kib": rss_kib(), "token": token}), flush=True)
    while True:
        command = (await reader.readline()).decode().strip()
        if command == "rss":
            print(json.dumps({"rss_kib": rss_kib()}), flush=True)
        elif command == "go":
            before = resource.getrusage(resource.RUSAGE_SELF)
            profile = cProfile.Profile() if os.environ.get("BENCH_PROFILE") else None
            if profile:
                profile.enable()
            published = await publish(hub, args.rate, args.duration, args.wards)
            after = resource.getrusage(resource.RUSAGE_SELF)
            if profile:
                profile.disable()
                profile.dump_stats(os.environ["BENCH_PROFILE"])
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            reply = {"published": published, "peak_rss_kib": after.ru_maxrss, "cpu_s": cpu}
            print(json.dumps(reply), flush=True)
        else:
            break
    server.should_exit = True
    await task
    if args.backplane:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(args.backplane)
        await client.delete(hub.stream)
        await client.aclose()


async def publish(hub: Any, rate: int, duration: float, wards: int) -> list[int]:
    from datetime import UTC, datetime

    per_ward = [0] * wards
    tick = 0.01
    started = time.perf_counter()
    sent = 0
    n = 0
    while (elapsed := time.perf_counter() - started) < duration:
        due = int(elapsed * rate)
        while sent < due:
            ward = n % wards
            data = {"ward": f"W{ward}", "n": n, "sent_at": time.time()}
            await hub.broadcast("AlertUpdated", data, datetime.now(UTC))
            per_ward[ward] += 1
            sent += 1
            n += 1
        await asyncio.sleep(tick)
    return per_ward


# ----------------------------------------------------------------------------- client processes


async def clients(
    url: str, first: int, count: int, wards: int, ready: Any, stop: Any, out: Any
) -> None:
    import orjson
    from websockets.asyncio.client import connect

    latencies: list[float] = []
    delivered: dict[int, int] = {}
    closed: dict[int, int | None] = {}
    subscribed: set[int] = set()

    async def one(i: int) -> None:
        delivered[i] = 0
        try:
            async with connect(url, open_timeout=120, ping_interval=None, compression=None) as ws:
                await ws.send(orjson.dumps({"op": "subscribe", "topics": [f"ward:W{i % wards}"]}))
                async for raw in ws:
                    frame = orjson.loads(raw)
                    if "seq" in frame:
                        delivered[i] += 1
                        if len(latencies) < 2_000_000:
                            latencies.append(time.time() - frame["data"]["sent_at"])
                    elif frame["type"] == "Ping":
                        await ws.send(b'{"op":"pong"}')
                    elif frame["type"] == "Subscribed":
                        subscribed.add(i)
        except Exception as exc:
            closed[i] = getattr(getattr(exc, "rcvd", None), "code", None)

    tasks = []
    for i in range(first, first + count):
        tasks.append(asyncio.create_task(one(i)))
        if len(tasks) % 100 == 0:
            await asyncio.sleep(0.05)
    # ready once every client's subscription is acknowledged (or it failed to connect)
    while len(subscribed) + len(closed) < count:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    ready.set()
    while not stop.is_set():  # noqa: ASYNC110 (a multiprocessing event: polled)
        await asyncio.sleep(0.2)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out.put({"latencies": latencies, "delivered": delivered, "closed": closed})


def client_process(*args: Any) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(clients(*args))
    else:
        uvloop.run(clients(*args))


# ----------------------------------------------------------------------------- driver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=1000, help="messages per second")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of publishing")
    parser.add_argument("--wards", type=int, default=50, help="each client watches one ward")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--backplane", default="", help="redis://... to go through Redis")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        # the loop `healthflow serve` gets from uvicorn when uvloop is installed
        try:
            import uvloop
        except ImportError:
            asyncio.run(serve(args))
        else:
            uvloop.run(serve(args))
        return
    run(args)


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as data_dir:
        command = [sys.executable, __file__, "--child", "--data-dir", data_dir]
        for name in ("clients", "rate", "duration", "wards", "backplane"):
            command += [f"--{name}", str(getattr(args, name))]
        server = subprocess.Popen(  # noqa: S603 (our own script, our own arguments)
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            hello = answer(server, "port")
            report = drive(args, server, hello)
        finally:
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    print(json.dumps(report, indent=2))


def answer(server: subprocess.Popen[str], key: str) -> dict[str, Any]:
    """The server's next JSON line holding `key` (log lines on the same pipe are skipped)."""
    assert server.stdout is not None
    for line in server.stdout:
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                reply: dict[str, Any] = json.loads(line)
                if key in reply:
                    return reply
    raise RuntimeError("server process ended")


def drive(args: argparse.Namespace, server: subprocess.Popen[str], hello: dict[str, Any]) -> Any:
    assert server.stdin is not None
    ctx = mp.get_context("spawn")
    stop, out = ctx.Event(), ctx.Queue()
    per_proc = args.clients // args.client_procs
    procs, readies = [], []
    connect_started = time.perf_counter()
    for p in range(args.client_procs):
        count = per_proc if p < args.client_procs - 1 else args.clients - per_proc * p
        ready = ctx.Event()
        proc = ctx.Process(
            target=client_process,
            args=(
                f"ws://127.0.0.1:{hello['port']}/ws?access_token={hello['token']}",
                p * per_proc,
                count,
                args.wards,
                ready,
                stop,
                out,
            ),
        )
        proc.start()
        procs.append(proc)
        readies.append(ready)
    for ready in readies:
        ready.wait(timeout=600)
    connect_s = time.perf_counter() - connect_started
    server.stdin.write("rss\n")
    server.stdin.flush()
    idle_rss = answer(server, "rss_kib")["rss_kib"]
    server.stdin.write("go\n")
    server.stdin.flush()
    result = answer(server, "published")
    time.sleep(3)  # let the last messages arrive
    stop.set()
    parts = [out.get(timeout=120) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
    server.stdin.write("quit\n")
    server.stdin.flush()
    return summarise(args, hello, idle_rss, result, parts, connect_s)


def summarise(
    args: argparse.Namespace,
    hello: dict[str, Any],
    idle_rss: int,
    result: dict[str, Any],
    parts: list[dict[str, Any]],
    connect_s: float,
) -> dict[str, Any]:
    latencies = sorted(x for part in parts for x in part["latencies"])
    delivered: dict[int, int] = {}
    closed: dict[int, Any] = {}
    for part in parts:
        delivered.update({int(k): v for k, v in part["delivered"].items()})
        closed.update({int(k): v for k, v in part["closed"].items()})
    published = result["published"]
    kept_up = [i for i in delivered if i not in closed]
    expected = sum(published[i % args.wards] for i in kept_up)
    got = sum(delivered[i] for i in kept_up)

    def pct(p: float) -> float:
        return round(latencies[min(int(p * len(latencies)), len(latencies) - 1)] * 1000, 2)

    return {
        "clients": args.clients,
        "rate_per_s": args.rate,
        "duration_s": args.duration,
        "wards": args.wards,
        "backplane": args.backplane or "memory",
        "published": sum(published),
        "deliveries_expected": expected,
        "deliveries": got,
        "delivered_ratio": round(got / expected, 6) if expected else None,
        "clients_dropped": len(closed),
        "latency_ms": {"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99)} if latencies else {},
        "server_rss_start_mib": round(hello["rss_kib"] / 1024, 1),
        "server_rss_idle_clients_mib": round(idle_rss / 1024, 1),
        "server_peak_rss_mib": round(result["peak_rss_kib"] / 1024, 1),
        "server_cpu_s_while_publishing": round(result["cpu_s"], 1),
        "kib_per_idle_connection": round((idle_rss - hello["rss_kib"]) / args.clients, 1),
        "connect_s": round(connect_s, 1),
    }


if __name__ == "__main__":
    main()
