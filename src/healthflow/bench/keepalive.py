"""Lean HTTP/1.1 keep-alive connections for the benchmark's request loads.

httpx spends about 10 ms of CPU per request at 32 concurrent requests on these machines (its
connection pool assigns requests to connections by scanning all of them, and more), so with the
load generator on the same two cores it measured itself, not the server: 40 registrations/s
where wrk gets several hundred. This client writes one prepared request and reads one response
per call; it speaks only what `healthflow serve` answers (Content-Length bodies, keep-alive).
`KeepAlivePool` lends such connections to concurrent requests (the telemetry loads: a monitor's
key in each request's headers).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from dataclasses import dataclass, field


class ConnectionClosed(Exception):
    """The server closed the connection before a whole response arrived."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case


class KeepAliveConnection:
    """One TCP connection sending the same kind of request again and again."""

    def __init__(self, host: str, port: int, headers: dict[str, str]) -> None:
        self._host = host
        self._port = port
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def post_json(
        self, path: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> Response:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        assert self._reader is not None
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n{self._headers}"
            f"{extra}Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        try:
            return await self._read_response(self._reader)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            await self.close()
            raise ConnectionClosed(str(exc)) from exc

    async def _read_response(self, reader: asyncio.StreamReader) -> Response:
        header = await reader.readuntil(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", 0))
        body = await reader.readexactly(length) if length else b""
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, body, headers)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError):
                await self._writer.wait_closed()
            self._writer = None


class KeepAlivePool:
    """Keep-alive connections lent to concurrent requests: an idle one, or a new one.

    A connection idle for `expiry_s` is let go before uvicorn's 5 s keep-alive closes it under a
    request (a POST on a connection the server just closed fails, and is not retried).
    """

    def __init__(
        self, host: str, port: int, headers: dict[str, str] | None = None, expiry_s: float = 2.0
    ) -> None:
        self._host = host
        self._port = port
        self._headers = headers or {}
        self._expiry_s = expiry_s
        self._idle: list[tuple[KeepAliveConnection, float]] = []

    async def post_json(
        self, path: str, body: bytes, headers: Mapping[str, str] | None = None
    ) -> Response:
        """One request on a connection of the pool; ConnectionClosed or OSError if it failed."""
        connection = await self._take()
        response = await connection.post_json(path, body, headers)  # a failure drops it
        self._idle.append((connection, time.monotonic()))
        return response

    async def _take(self) -> KeepAliveConnection:
        fresh_after = time.monotonic() - self._expiry_s
        while self._idle:
            connection, released = self._idle.pop()
            if released >= fresh_after:
                return connection
            await connection.close()
        return KeepAliveConnection(self._host, self._port, self._headers)

    async def close(self) -> None:
        for connection, _ in self._idle:
            await connection.close()
        self._idle.clear()
