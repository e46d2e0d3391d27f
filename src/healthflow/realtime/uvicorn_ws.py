"""uvicorn's WebSocket protocol, plus a `FrameSink` so the hub writes pre-encoded frames.

Through ASGI, every message to every client costs an `await send(...)` through Starlette and
uvicorn, a UTF-8 encoding and a frame serialisation by the websockets library: per delivery,
not per message. With this protocol the fan-out writes the bytes it built once per message and
topic straight to each transport (docs/realtime.md, "Fan-out"; BENCHMARKS.md has what it buys).
Everything else (handshake, client frames, pings, close) stays uvicorn's.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from healthflow.realtime.wire import EXTENSION


class FrameWritingProtocol(WebSocketsSansIOProtocol):
    """Offers itself as the connection's FrameSink when no extension (compression) is in use."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        # the ASGI task was created but has not run yet: the scope can still be completed.
        # pre-encoded frames are only valid without extensions (permessage-deflate rewrites them)
        if self.response.status_code == 101 and not self.conn.extensions:
            self.scope["extensions"][EXTENSION] = {"sink": self}

    def ready(self) -> bool:
        return (
            self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.writable.is_set()
            and not self.transport.is_closing()
        )

    def write(self, data: bytes) -> None:
        self.transport.write(data)

    async def drained(self) -> bool:
        await self.writable.wait()
        return not (self.close_sent or self.disconnected or self.transport.is_closing())


# uvicorn options for serving the hub: the protocol above; no permessage-deflate (hub frames are
# a few hundred bytes, and deflate would compress each one again for every client, with a
# compression context per connection: exactly the per-client cost fan-out avoids); and no
# protocol-level pings, since the hub's own heartbeat and idle timeout (Ping/pong, 4010) already
# find dead peers: uvicorn's would add a timer, a frame and a pong per connection every 20 s.
UVICORN_WS_OPTIONS: dict[str, Any] = {
    "ws": FrameWritingProtocol,
    "ws_per_message_deflate": False,
    "ws_ping_interval": None,
}
