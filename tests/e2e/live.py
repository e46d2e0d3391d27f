"""Helpers for live-push tests: a real uvicorn server on a free port, WebSocket and SSE clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import orjson
import uvicorn
from fastapi import FastAPI
from prometheus_client import REGISTRY
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from healthflow.app import build_app
from healthflow.realtime.hub import LiveHub
from healthflow.realtime.uvicorn_ws import UVICORN_WS_OPTIONS
from healthflow.settings import Settings
from tests.conftest import dev_headers, mint_token

WAIT_S = 10.0
# The admin token of each server these helpers started, by "host:port": ws_client and sse_client
# present it (as `?access_token=`, what a browser does) unless the URL carries one already.
TOKENS: dict[str, str] = {}


def _with_token(url: str) -> str:
    parts = urlsplit(url)
    token = TOKENS.get(parts.netloc)
    if token is None or "access_token=" in parts.query:
        return url
    query = f"{parts.query}&access_token={token}" if parts.query else f"access_token={token}"
    return urlunsplit(parts._replace(query=query))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    app: FastAPI
    port: int

    @property
    def hub(self) -> LiveHub:
        hub: LiveHub = self.app.state.hub
        return hub

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[f'127.0.0.1:{self.port}']}"}

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, ws_options: dict[str, Any] | None = None
) -> AsyncIterator[LiveServer]:
    """The app under a real uvicorn on 127.0.0.1 and a free port, in this event loop.

    `ws_options`: uvicorn's WebSocket options; by default what `healthflow serve` uses.
    """
    app = build_app(settings)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level="warning",
            lifespan="on",
            timeout_graceful_shutdown=2,
            **(UVICORN_WS_OPTIONS if ws_options is None else ws_options),
        )
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        async with asyncio.timeout(WAIT_S):
            while not server.started:
                await asyncio.sleep(0.01)
        TOKENS[f"127.0.0.1:{port}"] = mint_token(app, "admin")
        yield LiveServer(app, port)
    finally:
        server.should_exit = True
        await task
        sock.close()


def dropped_clients() -> float:
    """How many live clients this process has dropped as too slow so far."""
    return REGISTRY.get_sample_value("healthflow_hub_slow_clients_dropped_total") or 0.0


def now() -> datetime:
    return datetime.now(UTC)


def patient_data(ward: str = "ICU", patient_id: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"patient_id": patient_id or str(uuid.uuid4()), "ward": ward, **extra}


@dataclass
class WsClient:
    """A WebSocket client that sorts what arrives into stream messages and control frames."""

    ws: ClientConnection
    messages: list[dict[str, Any]] = field(default_factory=list)
    controls: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, **op: Any) -> None:
        await self.ws.send(orjson.dumps(op).decode())

    async def next_control(self, type: str) -> dict[str, Any]:
        """Read until a control frame of `type`; stream messages on the way are kept."""
        async with asyncio.timeout(WAIT_S):
            while True:
                frame = await self.receive()
                if "seq" not in frame and frame["type"] == type:
                    return frame

    async def subscribe(self, *topics: str) -> dict[str, Any]:
        await self.send(op="subscribe", topics=list(topics))
        return await self.next_control("Subscribed")

    async def fence(self) -> list[dict[str, Any]]:
        """Everything the server queued for us before this call (a ping's Pong comes after it)."""
        await self.send(op="ping")
        await self.next_control("Pong")
        return self.messages

    async def until_seq(self, seq: int) -> list[dict[str, Any]]:
        async with asyncio.timeout(WAIT_S):
            while not self.messages or self.messages[-1]["seq"] < seq:
                await self.receive()
        return self.messages

    async def read_until_closed(self) -> int | None:
        """Read everything left; the close code the server sent (None if it sent none)."""
        async with asyncio.timeout(WAIT_S):
            try:
                while True:
                    await self.receive()
            except ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd is not None else None

    async def receive(self) -> dict[str, Any]:
        frame: dict[str, Any] = orjson.loads(await self.ws.recv())
        if "seq" in frame:
            self.messages.append(frame)
        else:
            self.controls.append(frame)
        return frame


@contextlib.asynccontextmanager
async def ws_client(url: str, **options: Any) -> AsyncIterator[WsClient]:
    async with connect(_with_token(url), open_timeout=WAIT_S, **options) as ws:
        yield WsClient(ws)


@dataclass
class SseClient:
    """Reads `text/event-stream` events: (id or None, parsed data)."""

    lines: AsyncIterator[str]
    events: list[tuple[str | None, dict[str, Any]]] = field(default_factory=list)

    async def next_event(self) -> tuple[str | None, dict[str, Any]]:
        event_id: str | None = None
        data: list[str] = []
        async with asyncio.timeout(WAIT_S):
            async for line in self.lines:
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif line == "" and data:
                    event = (event_id, orjson.loads("\n".join(data)))
                    self.events.append(event)
                    return event
        raise AssertionError("stream ended")

    async def until_seq(self, seq: int) -> list[dict[str, Any]]:
        while True:
            _, data = await self.next_event()
            if data.get("seq", 0) >= seq:
                return [d for _, d in self.events if "seq" in d]


@contextlib.asynccontextmanager
async def sse_client(
    base: str, topics: str, headers: dict[str, str] | None = None
) -> AsyncIterator[SseClient]:
    async with (
        httpx.AsyncClient(base_url=base, timeout=WAIT_S) as http,
        http.stream(
            "GET", _with_token(f"{base}/api/stream?topics={topics}"), headers=headers
        ) as reply,
    ):
        assert reply.status_code == 200, reply.status_code
        assert reply.headers["content-type"].startswith("text/event-stream")
        yield SseClient(reply.aiter_lines())


@contextlib.contextmanager
def serve_process(data_dir: Path, **env: str) -> Iterator[str]:
    """A real `healthflow serve` subprocess on a free port; killed at the end whatever happens."""
    port = free_port()
    environ = {
        **os.environ,
        "HEALTHFLOW_PORT": str(port),
        "HEALTHFLOW_DATA_DIR": str(data_dir),
        "HEALTHFLOW_LOG_LEVEL": "warning",
        **env,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "healthflow", "serve"],
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise AssertionError(f"serve exited: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise AssertionError("serve did not answer /health within 30 s")
            time.sleep(0.1)
        TOKENS[f"127.0.0.1:{port}"] = dev_headers(data_dir)["Authorization"].removeprefix("Bearer ")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def auth_for(base: str) -> dict[str, str]:
    """The `Authorization` header for a server started by these helpers."""
    return {"Authorization": f"Bearer {TOKENS[urlsplit(base).netloc]}"}
