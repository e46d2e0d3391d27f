"""Stopping background tasks for sure: cancel, wait, and cancel again if one ignored it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import structlog

log = structlog.get_logger(__name__)


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]], *, patience_s: float = 10.0) -> None:
    """Cancel every task and wait until all have ended.

    A cancellation can be lost (on Python 3.11 `asyncio.timeout` may swallow one that arrives as
    its deadline fires), and one lost cancellation would hang a shutdown for ever; so whatever is
    still running is cancelled again every half second, for at most `patience_s`.
    """
    pending = {t for t in tasks if not t.done()}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience_s
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)
        if pending and loop.time() > deadline:
            log.error("tasks_ignored_cancellation", tasks=sorted(t.get_name() for t in pending))
            return
