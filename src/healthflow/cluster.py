"""`healthflow cluster`: run every role as its own process on this machine, stop them together.

Written here rather than using honcho: the roles need each other's URLs and ports computed from
one Settings value, start-up must wait for each service's readiness in order, and a stop must
reach every child even when one of them died first; that is a small supervisor, not a Procfile.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

ROLE_PORT_ENV = "HEALTHFLOW_PORT"


@dataclass
class Child:
    role: str
    process: subprocess.Popen[bytes]
    url: str

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


class Interrupted(Exception):
    """A stop was asked for while the cluster was still starting."""


def log_path(logs: Path, role: str, port: int) -> Path:
    """Where `start(..., logs=...)` writes a role's stderr."""
    return logs / f"serve-{role}-{port}.log"


def start(
    plan: list[tuple[str, dict[str, str]]],
    *,
    ready_timeout_s: float = 60.0,
    say: Callable[[str], None] = print,
    stopping: Callable[[], bool] = lambda: False,
    ready_path: str = "/health",
    logs: Path | None = None,
) -> list[Child]:
    """Start each role in plan order and wait until it answers `ready_path` before the next.

    `/health` (the default) is alive; `/health/ready` also waits for the role's stores, broker
    and upstream services. With `logs`, each role's stderr goes to a file there (`log_path`)
    and its stdout nowhere, instead of both to this process's terminal.
    """
    children: list[Child] = []
    try:
        for role, env in plan:
            url = f"http://{env['HEALTHFLOW_HOST']}:{env[ROLE_PORT_ENV]}"
            with contextlib.ExitStack() as files:
                # None: the child writes to this process's terminal
                stderr = None
                if logs is not None:
                    path = log_path(logs, role, int(env[ROLE_PORT_ENV]))
                    stderr = files.enter_context(path.open("ab"))
                process = subprocess.Popen(
                    [sys.executable, "-m", "healthflow", "serve"],
                    env={**os.environ, **env},
                    start_new_session=True,
                    stdout=None if logs is None else subprocess.DEVNULL,
                    stderr=stderr,
                )
            children.append(Child(role, process, url))
            _wait_alive(children[-1], ready_timeout_s, stopping, ready_path)
            say(f"{role:<10} {url}  (pid {process.pid})")
    except BaseException:
        stop(children)
        raise
    return children


def free_port_block(size: int = 4, host: str = "127.0.0.1") -> int:
    """A base port with `size` consecutive free ports after it (the cluster's layout).

    Taken below the ephemeral range: the first roles' own connections (database, broker) get
    ephemeral ports, and one of them could otherwise take a port reserved for a later role.
    """
    ephemeral = _ephemeral_ports()
    top = min(ephemeral.start, 65536) - size
    for _ in range(200):
        base = random.randrange(10000, top) if top > 10000 else random.randrange(1024, 65536 - size)
        if any(p in ephemeral for p in range(base, base + size)):
            continue
        try:
            with contextlib.ExitStack() as stack:
                for port in range(base, base + size):
                    sock = stack.enter_context(socket.socket())
                    sock.bind((host, port))
            return base
        except OSError:
            continue
    raise RuntimeError("no block of free ports")


def _ephemeral_ports() -> range:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def _wait_alive(
    child: Child, timeout_s: float, stopping: Callable[[], bool], path: str = "/health"
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stopping():
            raise Interrupted
        if child.process.poll() is not None:
            raise RuntimeError(f"{child.role} exited with {child.process.returncode} on start")
        try:
            if httpx.get(f"{child.url}{path}", timeout=5.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{child.role} did not answer {path} on {child.url} within {timeout_s}s")


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
