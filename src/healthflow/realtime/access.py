"""The hook that decides who may open a live connection and which topics it may see.

The security layer replaces `open_access` by setting `app.state.live_access` to its own
`LiveAccess` callable: raise `LiveAccessDenied` to refuse the connection (WebSocket close 4001,
SSE 401), or return a filter that says which topics this caller may subscribe to.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import HTTPConnection

from healthflow.realtime.fanout import TopicFilter, allow_all

LiveAccess = Callable[[HTTPConnection], Awaitable[TopicFilter]]


class LiveAccessDenied(Exception):
    """The caller may not open a live connection (no or bad credentials)."""


async def open_access(_: HTTPConnection) -> TopicFilter:
    """No authentication yet: every caller may see every topic."""
    return allow_all


async def topic_filter_for(connection: HTTPConnection) -> TopicFilter:
    """Ask the installed hook (or `open_access`) about this caller; may raise LiveAccessDenied."""
    access: LiveAccess = getattr(connection.app.state, "live_access", open_access)
    return await access(connection)
