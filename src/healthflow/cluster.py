"""`healthflow cluster`: run every role as its own process on this machine, stop them together.

Written here rather than using honcho: the roles need each other's URLs and ports computed from
one Settings value, start-up must wait for each service's readiness in order, and a stop must
reach every child even when one of them died first; that is a small supervisor, not a Procfile.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

ROLE_PORT_ENV = "HEALTHFLOW_PORT"


@dataclass
class Child:
    role: str
    process: subprocess.Popen[bytes]
    url: str


class Interrupted(Exception):
    """A stop was asked for while the cluster was still starting."""


def start(
    plan: list[tuple[str, dict[str, str]]],
    *,
    ready_timeout_s: float = 60.0,
    say: Callable[[str], None] = print,
    stopping: Callable[[], bool] = lambda: False,
) -> list[Child]:
    """Start each role in plan order and wait until it answers `/health` before the next."""
    children: list[Child] = []
    try:
        for role, env in plan:
            url = f"http://{env['HEALTHFLOW_HOST']}:{env[ROLE_PORT_ENV]}"
            process = subprocess.Popen(
                [sys.executable, "-m", "healthflow", "serve"],
                env={**os.environ, **env},
                start_new_session=True,
            )
            children.append(Child(role, process, url))
            _wait_alive(children[-1], ready_timeout_s, stopping)
            say(f"{role:<10} {url}  (pid {process.pid})")
    except BaseException:
        stop(children)
        raise
    return children


def _wait_alive(child: Child, timeout_s: float, stopping: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stopping():
            raise Interrupted
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.role} exited with {child.process.returncode} on start")
        try:
            if httpx.get(f"{child.url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{child.role} did not answer on {child.url} within {timeout_s}s")


def stop(children: list[Child], grace_s: float = 20.0) -> None:
    """SIGTERM every child (the gateway first, so intake stops first), then SIGKILL stragglers."""
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for child in reversed(children):
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def run(
    plan: list[tuple[str, dict[str, str]]],
    *,
    say: Callable[[str], None] = print,
    ready_timeout_s: float = 60.0,
) -> int:
    """Start the plan, block until Ctrl-C/SIGTERM or a child's death, stop everything.

    The signal handlers go in before the first child starts, so a stop asked for at any moment,
    even halfway through start-up, still reaches every child that was started.
    """
    stopping = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            children = start(
                plan, ready_timeout_s=ready_timeout_s, say=say, stopping=lambda: stopping
            )
        except Interrupted:
            return 0
        say("all services ready; Ctrl-C stops them")
        while not stopping:
            dead = [c for c in children if c.process.poll() is not None]
            if dead:
                say(f"{dead[0].role} exited with {dead[0].process.returncode}; stopping all")
                stop(children)
                return 1
            time.sleep(0.2)
        stop(children)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
