"""`GET /ws`: the live-push WebSocket endpoint (protocol in docs/realtime.md)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from healthflow.realtime import protocol
from healthflow.realtime.access import LiveAccessDenied, topic_filter_for
from healthflow.realtime.fanout import (
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNAUTHORIZED,
    Connection,
)
from healthflow.realtime.hub import LiveHub
from healthflow.realtime.wire import EXTENSION, FrameSink

log = structlog.get_logger(__name__)
MAX_CLIENT_FRAME = 65_536

router = APIRouter()


@router.websocket("/ws")
async def live(websocket: WebSocket) -> None:
    hub: LiveHub = websocket.app.state.hub
    await websocket.accept()
    try:
        allow = await topic_filter_for(websocket)
    except LiveAccessDenied as denied:
        await websocket.close(CLOSE_UNAUTHORIZED, str(denied) or "unauthorized")
        return
    # offered by our uvicorn protocol (realtime/uvicorn_ws.py); other servers: plain ASGI sends
    sink: FrameSink | None = (
        (websocket.scope.get("extensions") or {}).get(EXTENSION, {}).get("sink")
    )
    connection = hub.fanout.connect(allow, heard=time.monotonic(), sink=sink)
    if connection is None:
        await websocket.close(CLOSE_TRY_AGAIN_LATER, "hub at capacity: retry later")
        return
    try:
        await _serve(websocket, hub, connection)
    finally:
        hub.fanout.disconnect(connection)


async def _serve(websocket: WebSocket, hub: LiveHub, connection: Connection) -> None:
    tasks = [
        asyncio.create_task(_read(websocket, hub, connection)),
        asyncio.create_task(_write(websocket, connection)),
    ]
    for task in tasks:
        task.add_done_callback(lambda _: connection.finished.set())
    try:
        await connection.finished.wait()
    finally:
        for task in tasks:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, Exception) and not isinstance(outcome, WebSocketDisconnect):
                log.warning("live_connection_failed", error=repr(outcome))
    if connection.close_code is not None:
        # the client may not be reading: bound the wait for our close frame to go out
        with contextlib.suppress(Exception):
            async with asyncio.timeout(hub.idle_timeout_s):
                await websocket.close(connection.close_code, connection.close_reason)


async def _read(websocket: WebSocket, hub: LiveHub, connection: Connection) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        raw = message.get("text")
        if raw is None:
            raw = message.get("bytes") or b""
        if len(raw) > MAX_CLIENT_FRAME:
            connection.hang_up(CLOSE_TOO_BIG, f"client frames are limited to {MAX_CLIENT_FRAME}")
            return
        connection.heard = time.monotonic()
        protocol.handle(hub.fanout, connection, raw)


async def _write(websocket: WebSocket, connection: Connection) -> None:
    """Send what the fan-out queued: control frames, and messages the socket could not take."""
    if connection.sink is not None:
        await _write_to_sink(connection, connection.sink)
        return
    send = websocket.send
    while True:
        await connection.wait()
        if connection.close_code is not None:
            return
        for _, frame in connection.take():
            await send({"type": "websocket.send", "text": frame})


async def _write_to_sink(connection: Connection, sink: FrameSink) -> None:
    while True:
        await connection.wait()
        while not connection.flush():
            if connection.close_code is not None:
                return
            if not await sink.drained():
                return
        if connection.close_code is not None:
            return
