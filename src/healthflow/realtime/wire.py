"""WebSocket frames encoded once and written straight to each subscriber's socket.

A hub message goes to every connection subscribed to its topic with the same bytes: server
frames are unmasked and the hub's connections negotiate no extension, so the complete frame
(header + UTF-8 payload) can be built once per message and topic and handed to each socket as
it is. `FrameSink` is how a connection's server lets the fan-out do that; servers that do not
offer one (another ASGI server, a test client) get the frames through ordinary ASGI sends.
"""

from __future__ import annotations

from typing import Protocol

from websockets.frames import Frame, Opcode

# The ASGI scope "extensions" entry where a server offers a connection's sink: {"sink": FrameSink}
EXTENSION = "healthflow.websocket.frames"


class FrameSink(Protocol):
    """Where a connection's complete, pre-encoded WebSocket frames are written."""

    def ready(self) -> bool:
        """True when a frame written now goes out without piling up past the socket's limit."""
        ...

    def write(self, data: bytes) -> None:
        """Write complete frames (as `text_frame` builds them) to the socket, in order."""
        ...

    async def drained(self) -> bool:
        """Wait until `ready()` again; False when the connection can take nothing more."""
        ...


def text_frame(text: str) -> bytes:
    """A final, unmasked, uncompressed text frame: what a server sends on a plain connection."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)
