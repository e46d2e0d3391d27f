"""`GET /ws`: the live-push WebSocket endpoint (protocol in docs/realtime.md)."""

from __future__ import annotations

import asyncio
import contextlib

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from healthflow.realtime.hub import MemoryHub

# Close code for a client that fell behind its bounded send queue; it may reconnect.
CLOSE_TOO_SLOW = 4008

router = APIRouter()


@router.websocket("/ws")
async def live(websocket: WebSocket) -> None:
    hub: MemoryHub = websocket.app.state.hub
    await websocket.accept()
    subscriber = hub.connect()
    try:
        async with asyncio.TaskGroup() as tasks:
            sender = tasks.create_task(_send(websocket, subscriber.queue))
            receiver = tasks.create_task(_drain_client(websocket))
            lagging = tasks.create_task(subscriber.lagging.wait())
            done, _ = await asyncio.wait(
                {sender, receiver, lagging}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in (sender, receiver, lagging):
                task.cancel()
            if lagging in done:
                with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                    await websocket.close(CLOSE_TOO_SLOW, "too slow: reconnect and reload")
    except* WebSocketDisconnect:
        pass
    finally:
        hub.disconnect(subscriber)


async def _send(websocket: WebSocket, queue: asyncio.Queue[bytes]) -> None:
    while True:
        message = await queue.get()
        await websocket.send_text(message.decode())


async def _drain_client(websocket: WebSocket) -> None:
    # The core protocol is server-to-client; reading still notices a closed socket promptly.
    while True:
        await websocket.receive_text()
