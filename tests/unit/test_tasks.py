"""Stopping background tasks: a task that swallows one cancellation still ends."""

from __future__ import annotations

import asyncio
import contextlib

from healthflow.tasks import cancel_and_wait


async def test_a_task_that_swallows_a_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # as a lost cancellation would leave it: still looping

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    await cancel_and_wait([task], patience_s=5)
    assert task.cancelled() and swallowed == 1


async def test_a_task_that_never_ends_is_given_up_on_after_the_patience() -> None:
    release = asyncio.Event()

    async def immortal() -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    task = asyncio.create_task(immortal())
    await asyncio.sleep(0)
    await cancel_and_wait([task], patience_s=0.6)
    assert not task.done()  # the shutdown went on instead of hanging
    release.set()
    await task
