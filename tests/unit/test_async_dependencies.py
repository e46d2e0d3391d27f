"""No route waits on a thread: every dependency is a coroutine (or async generator) function.

FastAPI runs a plain `def` dependency in its thread pool, so each request would pay a thread hop
(and the GIL handover it brings) for what is an attribute lookup; the telemetry routes did.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute

from healthflow.app import build_app
from healthflow.settings import Settings


def calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from calls(sub)


def routes_with_calls(routes: Any, inherited: tuple[Any, ...] = ()) -> Iterator[tuple[str, Any]]:
    """(path, dependency) for every route, with what the routers it is included by add."""
    for route in routes:
        original = getattr(route, "original_router", None)
        if original is not None:
            added = tuple(d.dependency for d in route.include_context.dependencies)
            yield from routes_with_calls(original.routes, inherited + added)
        elif isinstance(route, APIRoute | APIWebSocketRoute):
            for call in (*inherited, *calls(route.dependant)):
                yield route.path, call


def runs_on_the_loop(call: Any) -> bool:
    target = call if inspect.isroutine(call) else type(call).__call__
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


@pytest.mark.parametrize("role", ["all", "patients", "analytics", "gateway"])
def test_no_dependency_of_any_route_runs_in_the_thread_pool(
    role: str, make_settings: Callable[..., Settings]
) -> None:
    app = build_app(make_settings(role=role, broker_url="amqp://unused/"))
    found = list(routes_with_calls(app.router.routes))
    assert len(found) > 10  # the walk reaches the routes (the gateway's too)
    on_threads = [
        f"{path}: {getattr(call, '__qualname__', call)}"
        for path, call in found
        if not runs_on_the_loop(call)
    ]
    assert on_threads == []
