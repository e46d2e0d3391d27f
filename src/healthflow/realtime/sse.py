"""`GET /api/stream?topics=...`: the same live messages as Server-Sent Events, for clients
that cannot open a WebSocket; `Last-Event-ID` (or `?after=`) resumes like the `resume` op."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response, StreamingResponse

from healthflow.http import BadRequest, problem
from healthflow.realtime import protocol
from healthflow.realtime.access import LiveAccessDenied, topic_filter_for
from healthflow.realtime.fanout import PING, TopicFilter
from healthflow.realtime.hub import LiveHub
from healthflow.realtime.topics import MAX_TOPICS, TopicInvalid, parse_topics

router = APIRouter(tags=["live"])
RETRY_MS = 2000


@router.get("/api/stream", response_class=StreamingResponse)
async def stream(
    request: Request,
    topics: Annotated[str, Query(description="Comma-separated topics, e.g. `patients,ward:ICU`.")],
    after: Annotated[int | None, Query(ge=0, description="Resume after this seq.")] = None,
    last_event_id: Annotated[str | None, Header(description="Set by EventSource on retry.")] = None,
) -> Response:
    hub: LiveHub = request.app.state.hub
    wanted = _topics(topics)
    resume_after = _position(last_event_id) if last_event_id else after
    try:
        allow = await topic_filter_for(request)
    except LiveAccessDenied as denied:
        return problem(401, "Unauthorized", str(denied) or "unauthorized", slug="unauthorized")
    if refused := [t for t in wanted if not allow(t)]:
        return problem(403, "Topic not allowed", f"not allowed: {', '.join(refused)}")
    if hub.fanout.clients >= hub.fanout.max_clients:
        return problem(
            503, "Hub at capacity", "too many live clients", headers={"Retry-After": "5"}
        )
    return StreamingResponse(
        _events(hub, allow, wanted, resume_after),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _topics(raw: str) -> list[str]:
    names = [t.strip() for t in raw.split(",") if t.strip()]
    if not names or len(names) > MAX_TOPICS:
        raise BadRequest(f"between 1 and {MAX_TOPICS} comma-separated topics", field="topics")
    try:
        return parse_topics(names)
    except TopicInvalid as exc:
        raise BadRequest(str(exc), field="topics") from None


def _position(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest("Last-Event-ID must be a seq this stream sent", field="last-event-id")
    return int(raw)


async def _events(
    hub: LiveHub, allow: TopicFilter, topics: list[str], after: int | None
) -> AsyncIterator[bytes]:
    # the connection is made here, not in the route: a generator that never starts (client gone
    # before the first byte) then leaves nothing behind
    connection = hub.fanout.connect(allow)
    if connection is None:
        return
    try:
        if after is None:
            protocol.subscribe(hub.fanout, connection, topics)
            protocol.acknowledge(hub.fanout, connection, [])
        else:
            protocol.resume(hub.fanout, connection, after, topics)
        yield f"retry: {RETRY_MS}\n\n".encode()
        while True:
            await connection.wait()
            if connection.close_code is not None:
                return
            yield "".join(_event(seq, frame) for seq, frame in connection.take()).encode()
    finally:
        hub.fanout.disconnect(connection)


def _event(seq: int, frame: str) -> str:
    # stream messages carry their seq as the event id, a Resync the head to resume after;
    # pings are comments, which EventSource ignores but which find a dead peer
    if frame is PING:
        return ": ping\n\n"
    if seq > 0:
        return f"id: {seq}\ndata: {frame}\n\n"
    if seq < 0:
        return f"id: {-seq}\ndata: {frame}\n\n"
    return f"data: {frame}\n\n"
