"""What one service-to-service call costs the caller: httpx's own pool, the services' client
(`service_calls.service_client`: httpx over aiohttp's pool), and bare aiohttp.

Starts a small uvicorn app in a child process (a POST answered with 200 bytes of JSON), then
makes `--requests` POSTs of 300 bytes from `--concurrency` tasks through each client, in rounds
that alternate the clients so drift and other load hit all alike, and prints the medians of the
caller's CPU per request (the server's CPU is not counted) and requests/s:

    .venv/bin/python benchmarks/service_client.py [--requests 6400] [--concurrency 32] [--rounds 3]

The gateway proxies every request through such a client, and the worker calls the services
with it (BENCHMARKS.md, "Service clients on aiohttp's connection pool").
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from healthflow.service_calls import service_client

BODY = b"x" * 300
ANSWER = b'{"id":"0123456789"}' * 10


async def _answer(request: Request) -> Response:
    await request.body()
    return Response(ANSWER, media_type="application/json")


app = Starlette(routes=[Route("/p", _answer, methods=["POST"])])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


Call = Callable[[], Awaitable[None]]


async def httpx_pool(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=2)
    client = httpx.AsyncClient(base_url=url, limits=limits)

    async def call() -> None:
        answer = await client.post("/p", content=BODY)
        assert answer.status_code == 200

    return call, client.aclose


async def services_client(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    client = service_client(url, timeout_s=10, max_connections=100, keepalive_s=2)

    async def call() -> None:
        answer = await client.post("/p", content=BODY)
        assert answer.status_code == 200

    return call, client.aclose


async def bare_aiohttp(url: str) -> tuple[Call, Callable[[], Awaitable[None]]]:
    session = aiohttp.ClientSession(
        url, connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=2)
    )

    async def call() -> None:
        async with session.post("/p", data=BODY) as answer:
            await answer.read()
            assert answer.status == 200

    return call, session.close


CLIENTS = {
    "httpx (its own pool)": httpx_pool,
    "service_client (httpx on aiohttp)": services_client,
    "aiohttp": bare_aiohttp,
}


async def one_round(
    url: str, make: Callable[..., Awaitable[tuple[Call, Any]]], args: argparse.Namespace
) -> tuple[float, float]:
    call, close = await make(url)
    per_task = args.requests // args.concurrency

    async def task(count: int) -> None:
        for _ in range(count):
            await call()

    try:
        await asyncio.gather(*(task(20) for _ in range(args.concurrency)))  # connections open
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(task(per_task) for _ in range(args.concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        await close()
    done = per_task * args.concurrency
    return cpu / done * 1e6, done / wall


async def measure(url: str, args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in CLIENTS}
    for n in range(args.rounds):
        print(f"round {n + 1}/{args.rounds} ...", flush=True)
        for name, make in CLIENTS.items():
            results[name].append(await one_round(url, make, args))
    return results


def main(args: argparse.Namespace) -> None:
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 (our own interpreter, our own arguments)
        [
            sys.executable,
            "-m",
            "uvicorn",
            "service_client:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--app-dir",
            str(Path(__file__).parent),
        ],
    )
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        results = asyncio.run(measure(f"http://127.0.0.1:{port}", args))
    finally:
        server.terminate()
        server.wait()
    print(f"\n{args.requests} POSTs from {args.concurrency} tasks, median of {args.rounds} rounds")
    print(f"{'client':36s} {'caller CPU µs/request':>22s} {'requests/s':>11s}")
    for name, rounds in results.items():
        cpu = statistics.median(r[0] for r in rounds)
        rate = statistics.median(r[1] for r in rounds)
        print(f"{name:36s} {cpu:22.0f} {rate:11.0f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=6400)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    main(parser.parse_args())
