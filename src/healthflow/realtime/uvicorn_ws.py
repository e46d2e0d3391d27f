"""uvicorn's WebSocket protocol, plus a `FrameSink` so the hub writes pre-encoded frames.

Through ASGI, every message to every client costs an `await send(...)` through Starlette and
uvicorn, a UTF-8 encoding and a frame serialisation by the websockets library: per delivery,
not per message. With this protocol the fan-out writes the bytes it built once per message and
topic straight to each transport (docs/realtime.md, "Fan-out"; BENCHMARKS.md has what it buys).
Everything else (handshake, client frames, pings, close) stays uvicorn's.

Each connection's writes of one turn of the event loop also leave as one (`_CorkedTransport`):
a vitals worker's batch pushes several patients of a ward to the ward's clients in one turn,
and every write to a socket is a `send` system call and a TCP segment the client wakes for.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from healthflow.realtime.wire import EXTENSION


class _Cork:
    """The connections written to in this turn of the loop; at its end, each sends once."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._held: dict[_CorkedTransport, None] = {}  # in the order they were first written

    def hold(self, transport: _CorkedTransport) -> None:
        if not self._held:
            self._loop.call_soon(self._release)
        self._held[transport] = None

    def _release(self) -> None:
        held, self._held = self._held, {}
        for transport in held:
            transport.flush()


_corks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Cork] = weakref.WeakKeyDictionary()


class _CorkedTransport:
    """A connection's transport whose writes within one turn of the loop are sent together.

    Every write goes through it (uvicorn's handshake, pongs and close frames as the hub's
    frames), so the order on the wire is the order of the writes; `close` sends what is held
    first. Anything else is the transport's own.
    """

    __slots__ = ("_chunks", "_cork", "_transport")

    def __init__(self, transport: asyncio.Transport, cork: _Cork) -> None:
        self._transport = transport
        self._cork = cork
        self._chunks: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._chunks:
            self._cork.hold(self)
        self._chunks.append(bytes(data))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def flush(self) -> None:
        chunks = self._chunks
        if not chunks:
            return
        self._chunks = []
        if not self._transport.is_closing():  # a peer gone meanwhile: nothing to send to
            self._transport.write(chunks[0] if len(chunks) == 1 else b"".join(chunks))

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(map(len, self._chunks))

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def abort(self) -> None:
        self._chunks = []
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class FrameWritingProtocol(WebSocketsSansIOProtocol):
    """Offers itself as the connection's FrameSink when no extension (compression) is in use,
    and writes through a `_CorkedTransport`."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        loop = asyncio.get_running_loop()
        cork = _corks.get(loop)
        if cork is None:
            cork = _corks[loop] = _Cork(loop)
        self.transport = _CorkedTransport(self.transport, cork)  # type: ignore[assignment]

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
