"""The end-to-end benchmark: a real `healthflow serve` process, real HTTP, MQTT and WebSocket
clients, then the bare tools on the same machine for the overhead ratios.

`run` executes the chosen phases against one fresh server (embedded default, or PostgreSQL +
RabbitMQ + Redis) and returns one JSON-ready result with the machine, versions, parameters and
the exact command, so every figure can be reproduced.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import tempfile
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from healthflow.bench import baselines, counters
from healthflow.bench.context import Context, Params, Progress
from healthflow.bench.dashboard import dashboard
from healthflow.bench.keepalive import KeepAlivePool
from healthflow.bench.latency import latency
from healthflow.bench.machine import load_average, machine, versions
from healthflow.bench.registrations import registrations
from healthflow.bench.server import RABBIT_URL, Backend, ServerProcess, backend, reachable
from healthflow.bench.vitals import overload, vitals_http, vitals_mqtt

Checkpoint = Callable[[dict[str, Any]], None]


async def run(
    params: Params,
    progress: Progress,
    *,
    command: str,
    checkpoint: Checkpoint = lambda result: None,
) -> dict[str, Any]:
    """Every chosen phase against one fresh server, then the baselines; the full result.

    `checkpoint` gets the result so far after every phase, so a long run that fails late keeps
    what it measured; a phase that fails is recorded with its error and the run goes on.
    """
    if params.topology == "split" and params.backend != "server":
        # the roles share no in-process bus or SQLite file: they need the broker and PostgreSQL
        raise ValueError("the split topology needs the server backend")
    result: dict[str, Any] = {
        "command": command,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "parameters": params.to_dict(),
        "phases": {},
    }
    load = {"start": load_average()}
    with _cancelled_by_sigterm(), tempfile.TemporaryDirectory(prefix="healthflow-bench-") as folder:
        async with backend(
            params.backend,  # type: ignore[arg-type]
            Path(folder),
            params.topology,  # type: ignore[arg-type]
        ) as found:
            result["versions"] = await versions(found)
            result["backend"] = {
                "name": found.name,
                "topology": params.topology,
                "settings": {k: v for k, v in found.env.items() if k != "HEALTHFLOW_DATA_DIR"},
            }
            await _serve_phases(params, progress, found, result, checkpoint)
            if "baselines" in params.phases:
                result["baselines"] = await _baselines(params, progress, found, result)
    load["end"] = load_average()
    result["machine"]["load_average_1m"] = load
    result["ratios"] = ratios(result)
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return result


@contextlib.contextmanager
def _cancelled_by_sigterm() -> Iterator[None]:
    """A SIGTERM (`timeout`, a cancelled CI job) cancels the run instead of killing the process
    where it stands, so it unwinds: the servers it started are stopped, its scratch databases
    dropped. Killed outright, it left every `healthflow serve` it had started running."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is None:
        yield
        return
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        yield
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _serve_phases(
    params: Params,
    progress: Progress,
    found: Backend,
    result: dict[str, Any],
    checkpoint: Checkpoint,
) -> None:
    server = ServerProcess(found, topology=params.topology)  # type: ignore[arg-type]
    progress.note(f"starting healthflow serve ({found.name}, topology {params.topology})")
    await server.start()
    if len(server.processes) > 1:
        progress.note("roles: " + ", ".join(f"{p.role} {p.child.url}" for p in server.processes))
    try:
        # idle connections are let go before uvicorn's 5 s keep-alive would close them under a
        # request (a ReadError on a POST that cannot be retried)
        limits = httpx.Limits(
            max_connections=256, max_keepalive_connections=256, keepalive_expiry=2.0
        )
        async with httpx.AsyncClient(
            base_url=server.url, headers=server.auth, timeout=120, limits=limits
        ) as http:
            metrics = counters.Scraper(http, server.metrics_urls)
            ctx = Context(
                params,
                found,
                server,
                http,
                KeepAlivePool("127.0.0.1", server.port),
                progress,
                metrics,
            )
            start = await counters.read(metrics)
            phases: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = [
                ("registrations", lambda: registrations(ctx)),
                ("vitals-http", lambda: vitals_http(ctx)),
                ("vitals-mqtt", lambda: vitals_mqtt(ctx)),
                ("overload", lambda: _overload(ctx, result)),
                ("latency", lambda: latency(ctx, _measured(result, "vitals-http"))),
                ("dashboard", lambda: dashboard(ctx)),
            ]
            for name, phase in phases:
                if name not in params.phases:
                    continue
                before = load_average()
                try:
                    outcome = await phase()
                except Exception as exc:  # recorded; the other phases still run
                    progress.note(f"{name} failed: {exc!r}")
                    outcome = {"error": repr(exc), "trace": traceback.format_exc()[-3000:]}
                outcome["load_average_1m"] = {"start": before, "end": load_average()}
                result["phases"][name] = outcome
                checkpoint(result)
            await ctx.requests.close()
            processed = (await counters.read(metrics)).minus(start).processed
            result["server"] = {
                "topology": params.topology,
                "peak_rss_mb": round(server.peak_rss_mb, 1),
                "cpu_s": round(server.cpu_seconds, 1),
                "log_tail": server.log_tail()[-2000:],  # warnings and errors only
            }
            if len(server.processes) > 1:
                result["server"]["roles"] = server.by_role()
    finally:
        await server.stop()
    result["consistency"] = await _stored_readings(found, int(processed))


def _measured(result: dict[str, Any], phase: str) -> float | None:
    rate = result["phases"].get(phase, {}).get("readings_per_s")
    return float(rate) if rate else None


async def _overload(ctx: Context, result: dict[str, Any]) -> dict[str, Any]:
    sustainable = _measured(result, "vitals-http") or ctx.params.rate
    if not sustainable:
        ctx.progress.note("overload skipped: it needs the vitals-http phase or a numeric --rate")
        return {"skipped": "needs the vitals-http phase or a numeric --rate"}
    return await overload(ctx, float(sustainable))


async def _stored_readings(found: Backend, processed: int) -> dict[str, Any]:
    """The server's processed counter against the rows in the vitals table: the same number."""
    if found.postgres_dsn:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(found.postgres_dsn)
        try:
            rows = int(await conn.fetchval("SELECT count(*) FROM vitals"))
        finally:
            await conn.close()
    else:
        db = sqlite3.connect(found.analytics_sqlite)
        try:
            rows = int(db.execute("SELECT count(*) FROM vitals").fetchone()[0])
        finally:
            db.close()
    return {"vitals_rows": rows, "processed_counter": processed, "equal": rows == processed}


async def _baselines(
    params: Params, progress: Progress, found: Backend, result: dict[str, Any]
) -> dict[str, Any]:
    progress.phase("baselines", None)
    seconds = params.baseline_s
    out: dict[str, Any] = {}
    progress.note("baseline: bare sqlite3 inserts")
    synchronous = found.env.get("HEALTHFLOW_SQLITE_SYNCHRONOUS", "FULL")
    out["sqlite"] = await asyncio.to_thread(
        baselines.sqlite_batched, found.data_dir, seconds, synchronous
    )
    if found.postgres_dsn:
        progress.note("baseline: bare asyncpg inserts")
        out["postgres"] = await baselines.postgres_batched(found.postgres_dsn, seconds)
    if reachable("127.0.0.1", 5672):
        progress.note("baseline: bare aio-pika publish/consume loop")
        queue = f"{found.run_id}.bare.{uuid.uuid4().hex[:6]}"
        out["rabbitmq"] = await baselines.rabbit_loop(RABBIT_URL, seconds, queue)
    lat = result["phases"].get("latency", {})
    if "deliveries" in lat:
        # the same delivery rate as the latency phase: messages/s times clients per ward
        per_message = max(1.0, params.clients / params.wards)
        delivered = lat["deliveries"]["vitals_updated"] + lat["deliveries"]["alert_raised"]
        rate = max(10.0, delivered / max(lat["load_s"], 1.0) / per_message)
        progress.note(f"baseline: bare websockets broadcast, {rate:.0f} messages/s")
        out["websocket"] = await baselines.websocket_broadcast(
            params, rate=round(rate, 1), seconds=min(seconds, params.duration_s)
        )
    return out


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    """Our figures against the bare tools of the same run (how many times the bare tool's)."""
    phases = result.get("phases", {})
    bare = result.get("baselines", {})
    found: dict[str, Any] = {}

    def ratio(name: str, bare_value: Any, ours: Any) -> None:
        with contextlib.suppress(TypeError, ZeroDivisionError):
            found[name] = round(float(bare_value) / float(ours), 2)

    http = phases.get("vitals-http", {}).get("readings_per_s")
    mqtt = phases.get("vitals-mqtt", {}).get("readings_per_s")
    regs = phases.get("registrations", {}).get("per_second")
    db = bare.get("postgres") or bare.get("sqlite") or {}
    db_rows = db.get("copy_rows_per_s") or db.get("batched_rows_per_s")
    ratio("bare_db_batched_rows_per_s_over_http_readings_per_s", db_rows, http)
    ratio("bare_db_batched_rows_per_s_over_mqtt_readings_per_s", db_rows, mqtt)
    ratio(
        "bare_db_transactions_per_s_over_registrations_per_s",
        db.get("single_row_transactions_per_s"),
        regs,
    )
    broker = bare.get("rabbitmq", {}).get("messages_per_s")
    ratio("bare_broker_messages_per_s_over_http_readings_per_s", broker, http)
    ratio("bare_broker_messages_per_s_over_mqtt_readings_per_s", broker, mqtt)
    theirs = bare.get("websocket", {}).get("latency_ms", {})
    lat = phases.get("latency", {})
    for name, one in (("", lat), ("_half_sustainable", lat.get("half_sustainable") or {})):
        ours = one.get("vitals_first_shown_ms", {})
        if ours.get("n") and theirs.get("n") and theirs["p99"]:
            found[f"latency{name}_p99_over_bare_websocket_p99"] = round(
                ours["p99"] / theirs["p99"], 2
            )
    return found
