"""The `healthflow` command."""

from __future__ import annotations

import asyncio
import enum
import gc
import getpass
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from healthflow import __version__
from healthflow.bench import PHASES as BENCH_PHASES

if TYPE_CHECKING:
    from healthflow.app import Platform
    from healthflow.settings import Settings

app = typer.Typer(
    help="HealthFlow: real-time patient flow and bedside monitoring.", no_args_is_help=True
)
console = Console(stderr=True)
GC_THRESHOLDS = (20_000, 50, 100)  # the server's collector: young, middle, full (see `serve`)


class Role(enum.StrEnum):
    ALL = "all"
    GATEWAY = "gateway"
    PATIENTS = "patients"
    ANALYTICS = "analytics"
    WORKER = "worker"


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port to listen on.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Folder for the embedded databases (HEALTHFLOW_DATA_DIR).")
    ] = None,
    role: Annotated[
        Role | None,
        typer.Option(help="Which part to run (HEALTHFLOW_ROLE); `all` is the whole platform."),
    ] = None,
    ssl_certfile: Annotated[
        Path | None, typer.Option(help="TLS certificate (PEM): serve HTTPS and WSS.")
    ] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
) -> None:
    """Run the whole platform in this process, or one role of the multi-process topology."""
    from healthflow.app import backends, build_app, dev_tokens
    from healthflow.observability.logs import configure
    from healthflow.realtime.uvicorn_ws import UVICORN_WS_OPTIONS
    from healthflow.settings import Settings

    overrides = {
        k: v
        for k, v in {
            "host": host,
            "port": port,
            "data_dir": data_dir,
            "role": role.value if role else None,
        }.items()
        if v
    }
    settings = Settings(**overrides)  # type: ignore[arg-type]
    configure(settings.log_level, settings.log_format)
    table = Table(title=f"HealthFlow {__version__}", show_header=False)
    table.add_row("URL", f"http://{settings.host}:{settings.port}")
    table.add_row("data dir", str(settings.data_dir.resolve()))
    for port_name, backend in backends(settings).items():
        table.add_row(port_name, backend)
    minter = dev_tokens(settings)
    table.add_row("sign-in", "development tokens" if minter else settings.auth_jwks_url)
    console.print(table)
    if minter is not None:
        token = minter.mint("admin", "admin", now=datetime.now(UTC), ttl=timedelta(hours=8))
        # stdout, apart from the banner: `healthflow serve | head -1` hands a script the token
        typer.echo(f"admin token (8h, development only): {token}")
    if bool(ssl_certfile) != bool(ssl_keyfile):
        raise typer.BadParameter("--ssl-certfile and --ssl-keyfile go together")
    app = build_app(settings)
    # What is imported and built by now lives as long as the process: out of the collector's
    # full passes, which otherwise scan it and pause the event loop longer (BENCHMARKS.md).
    gc.freeze()
    # What is made later and lives long (a live client's coroutines and queues: ~250 objects a
    # WebSocket) is rescanned by every full pass: with 1,000 clients Python's default thresholds
    # (700, 10, 10) ran one every ~3 s, each stalling the loop ~150 ms. A young generation of
    # 20,000 lets the short-lived die young; full passes become rare (BENCHMARKS.md, session 7).
    gc.set_threshold(*GC_THRESHOLDS)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        access_log=False,  # request lines carry query strings (WebSocket tokens): never logged
        # the client address (request budgets, audit) is the rightmost X-Forwarded-For entry
        # not added by one of these proxies; from anyone else the header is ignored
        forwarded_allow_ips=settings.forwarded_allow_ips,
        timeout_graceful_shutdown=int(settings.worker_shutdown_grace_s) + 5,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        **UVICORN_WS_OPTIONS,
    )


def _settings(data_dir: Path | None) -> Settings:
    from healthflow.settings import Settings

    return Settings(data_dir=data_dir) if data_dir else Settings()  # type: ignore[call-arg]


DataDir = Annotated[
    Path | None, typer.Option(help="Folder for the embedded databases (HEALTHFLOW_DATA_DIR).")
]


@app.command()
def token(
    sub: Annotated[str, typer.Option(help="Subject: who the token names.")],
    role: Annotated[str, typer.Option(help="Role: admin, clinician, nurse, analyst, ...")],
    ward: Annotated[str | None, typer.Option(help="Ward claim (limits a nurse).")] = None,
    ttl: Annotated[str, typer.Option(help="Lifetime, like 30m, 8h or 7d.")] = "8h",
    data_dir: DataDir = None,
) -> None:
    """Print a development token (refused when an OIDC issuer is configured)."""
    from healthflow.app import dev_tokens
    from healthflow.security.rbac import Role as AccessRole
    from healthflow.security.tokens import parse_ttl

    if role not in {r.value for r in AccessRole}:
        raise typer.BadParameter(f"unknown role {role!r}", param_hint="--role")
    try:
        lifetime = parse_ttl(ttl)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--ttl") from exc
    minter = dev_tokens(_settings(data_dir))
    if minter is None:
        console.print("refused: an OIDC issuer is configured; get tokens from it")
        raise typer.Exit(2)
    typer.echo(minter.mint(sub, role, now=datetime.now(UTC), ttl=lifetime, ward=ward))


@app.command()
def permissions() -> None:
    """Print the permission table (Markdown), as README shows it."""
    from healthflow.security.rbac import permission_table_markdown

    typer.echo(permission_table_markdown())


audit_app = typer.Typer(help="The audit trail.", no_args_is_help=True)
keys_app = typer.Typer(help="PHI encryption keys.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
app.add_typer(keys_app, name="keys")


async def _with_platform(settings: Settings, work: Callable[[Platform], Awaitable[int]]) -> int:
    from healthflow.app import build_platform

    platform = build_platform(settings)
    try:
        await platform.prepare_storage()
        return await work(platform)
    finally:
        await platform.patients_db.dispose()
        await platform.analytics_db.dispose()


@audit_app.command("verify")
def audit_verify(data_dir: DataDir = None) -> None:
    """Check the audit chains (patients, and analytics: what it serves in the split topology);
    exit 1 naming the first edited, removed or moved record."""
    from healthflow.security.audit import SqlAuditTrail

    async def verify(platform: Platform) -> int:
        chains = {"patients": platform.security.audit}
        if platform.settings.analytics_url != platform.settings.database_url:
            # one shared database holds one chain, written by both services
            chains["analytics"] = SqlAuditTrail(platform.analytics_db, platform.clock)
        broken = 0
        for name, trail in chains.items():
            result = await trail.verify()
            if result.ok:
                typer.echo(
                    f"{name} audit chain intact: {result.checked} records, head {result.head_hash}"
                )
                continue
            broken += 1
            typer.echo(
                f"{name} audit chain BROKEN at record {result.first_bad_seq}: {result.reason} "
                f"({result.checked} records before it are intact)"
            )
        return 1 if broken else 0

    raise typer.Exit(asyncio.run(_with_platform(_settings(data_dir), verify)))


@keys_app.command("rotate")
def keys_rotate(
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per batch.")] = 200,
    data_dir: DataDir = None,
) -> None:
    """Make a new active key and re-encrypt every patient and event under it, in batches, online."""
    from healthflow.security.audit import Actor, AuditEntry
    from healthflow.security.crypto import KeyRingError

    async def rotate(platform: Platform) -> int:
        try:
            kid = platform.security.keys.rotate()
        except KeyRingError as exc:
            console.print(f"refused: {exc}")
            return 2
        total = 0
        while changed := await platform.patient_store.reencrypt(limit=batch_size):
            total += changed
        actor = Actor(f"cli:{getpass.getuser()}", "admin")
        detail = f"new active key {kid}; {total} rows re-encrypted"
        await platform.security.audit.record(
            AuditEntry("keys.rotate", "key", kid, detail=detail), actor
        )
        typer.echo(f"active key is now {kid}; {total} rows re-encrypted")
        return 0

    raise typer.Exit(asyncio.run(_with_platform(_settings(data_dir), rotate)))


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


class BenchBackend(enum.StrEnum):
    EMBEDDED = "embedded"
    SERVER = "server"


class BenchTopology(enum.StrEnum):
    ALL = "all"
    SPLIT = "split"


@app.command()
def bench(
    backend: Annotated[
        BenchBackend,
        typer.Option(help="embedded (SQLite, in-process) or server (PG+RabbitMQ+Redis)."),
    ] = BenchBackend.EMBEDDED,
    topology: Annotated[
        BenchTopology,
        typer.Option(
            help="all (one `serve --role all` process) or split (every role of `healthflow "
            "cluster` its own process; needs --backend server)."
        ),
    ] = BenchTopology.ALL,
    duration: Annotated[float, typer.Option(min=1, help="Seconds of load per phase.")] = 60.0,
    clients: Annotated[int, typer.Option(min=1, help="WebSocket clients (latency phase).")] = 1000,
    rate: Annotated[
        str, typer.Option(help="Readings/s offered in the vitals phases, or `max`.")
    ] = "max",
    phases: Annotated[
        str, typer.Option(help="Comma-separated phases to run (default: all).")
    ] = ",".join(BENCH_PHASES),
    devices: Annotated[int, typer.Option(min=1, help="Monitors streaming vitals.")] = 1000,
    wards: Annotated[int, typer.Option(min=1, help="Wards of patients and clients.")] = 50,
    batch: Annotated[
        int, typer.Option(min=1, max=1000, help="Readings per HTTP request (throughput).")
    ] = 1000,
    senders: Annotated[int, typer.Option(min=1, help="Concurrent HTTP senders.")] = 8,
    mqtt_batch: Annotated[
        int, typer.Option(min=1, max=1000, help="Readings per MQTT message.")
    ] = 1,
    latency_rate: Annotated[
        float, typer.Option(min=1, help="Readings/s during the latency phase.")
    ] = 10_000.0,
    client_procs: Annotated[
        int, typer.Option(min=1, help="Processes holding the WebSocket clients.")
    ] = 2,
    seed_events: Annotated[
        int, typer.Option(min=0, help="Analytics events stored before the dashboard phase.")
    ] = 10_000_000,
    dashboard_requests: Annotated[
        int, typer.Option(min=1, help="Dashboard requests timed.")
    ] = 1000,
    baseline_seconds: Annotated[
        float, typer.Option(min=0.5, help="Length of each baseline.")
    ] = 10.0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result here.")] = None,
) -> None:
    """Benchmark the pipeline end to end against a fresh `healthflow serve` (BENCHMARKS.md)."""
    import json
    import shlex
    import sys

    from healthflow.bench.context import Params
    from healthflow.bench.pipeline import run
    from healthflow.bench.report import RichProgress, tables

    if topology is BenchTopology.SPLIT and backend is not BenchBackend.SERVER:
        # the roles share no in-process bus or SQLite file: they need the broker and PostgreSQL
        raise typer.BadParameter(
            "--topology split needs --backend server (RabbitMQ, PostgreSQL, Redis)",
            param_hint="--topology",
        )
    chosen = tuple(p.strip() for p in phases.split(",") if p.strip())
    unknown = sorted(set(chosen) - set(BENCH_PHASES))
    if unknown:
        raise typer.BadParameter(f"unknown phases {unknown}; known: {', '.join(BENCH_PHASES)}")
    try:
        offered = None if rate == "max" else float(rate)
    except ValueError:
        raise typer.BadParameter("--rate takes a number of readings/s or `max`") from None
    params = Params(
        backend=backend.value,
        topology=topology.value,
        duration_s=duration,
        clients=clients,
        rate=offered,
        phases=chosen,
        devices=devices,
        wards=wards,
        batch=batch,
        senders=senders,
        mqtt_batch=mqtt_batch,
        latency_rate=latency_rate,
        client_procs=client_procs,
        seed_events=seed_events,
        dashboard_requests=dashboard_requests,
        baseline_s=baseline_seconds,
    )
    command = shlex.join(["healthflow", *sys.argv[1:]])

    def checkpoint(result: dict[str, Any]) -> None:
        if json_out:
            json_out.write_text(json.dumps(result, indent=2))

    with RichProgress(console) as progress:
        result = asyncio.run(run(params, progress, command=command, checkpoint=checkpoint))
    for table in tables(result):
        console.print(table)
    if json_out:
        json_out.write_text(json.dumps(result, indent=2))
        console.print(f"result written to {json_out}")


# --- device telemetry simulator (issue 4) ---
@app.command()
def simulate(
    devices: Annotated[
        int, typer.Option(min=1, max=10_000, help="Patients, one monitor each.")
    ] = 10,
    rate: Annotated[
        float, typer.Option(min=0.01, max=100, help="Readings per second per device.")
    ] = 1.0,
    duration: Annotated[float, typer.Option(min=0.1, help="Seconds to stream.")] = 60.0,
    via: Annotated[str, typer.Option(help="Transport: http or mqtt.")] = "http",
    deteriorate: Annotated[
        int, typer.Option(min=0, help="How many patients slide into a high NEWS2.")
    ] = 0,
    ramp: Annotated[
        float | None,
        typer.Option(min=0.1, help="Seconds a deterioration takes (default 60% of duration)."),
    ] = None,
    recover_at: Annotated[
        float | None,
        typer.Option(min=0.1, help="Second at which deteriorating patients recover (treated)."),
    ] = None,
    url: Annotated[str, typer.Option(help="HealthFlow base URL.")] = "http://127.0.0.1:8000",
    mqtt_url: Annotated[
        str, typer.Option(envvar="HEALTHFLOW_MQTT_URL", help="Broker for --via mqtt.")
    ] = "mqtt://127.0.0.1:1883",
    topic_prefix: Annotated[
        str, typer.Option(envvar="HEALTHFLOW_MQTT_TOPIC_PREFIX", help="MQTT topic prefix.")
    ] = "",
    ward: Annotated[str, typer.Option(help="Ward the simulated patients are in.")] = "SIM",
    seed: Annotated[int | None, typer.Option(help="Seed for reproducible vitals.")] = None,
    token: Annotated[
        str | None,
        typer.Option(
            envvar="HEALTHFLOW_TOKEN",
            help="Bearer token for registering patients and devices; default: a development "
            "clinician token from the local data dir.",
        ),
    ] = None,
    data_dir: DataDir = None,
) -> None:
    """Register patients and monitors, stream realistic vitals, print a summary."""
    import asyncio

    if via not in ("http", "mqtt"):
        raise typer.BadParameter("must be http or mqtt", param_hint="--via")
    if deteriorate > devices:
        raise typer.BadParameter("cannot exceed --devices", param_hint="--deteriorate")
    if token is None:
        from healthflow.app import dev_tokens

        minter = dev_tokens(_settings(data_dir))
        if minter is None:
            raise typer.BadParameter(
                "an OIDC issuer is configured: pass --token", param_hint="--token"
            )
        token = minter.mint(
            "simulator", "clinician", now=datetime.now(UTC), ttl=timedelta(hours=12)
        )
    summary = asyncio.run(
        _simulate(
            devices=devices,
            rate=rate,
            duration=duration,
            via=via,
            deteriorate=deteriorate,
            ramp=ramp,
            recover_at=recover_at,
            url=url,
            mqtt_url=mqtt_url,
            topic_prefix=topic_prefix,
            ward=ward,
            seed=seed,
            token=token,
        )
    )
    table = Table(title="simulation", show_header=False)
    table.add_row("devices", str(summary.devices))
    table.add_row("deteriorating patients", ", ".join(summary.deteriorating) or "none")
    table.add_row("sent", str(summary.sent))
    table.add_row("acknowledged", str(summary.acknowledged))
    table.add_row("refused or failed", str(summary.refused))
    table.add_row("seconds", f"{summary.elapsed_s:.1f}")
    table.add_row("acknowledged per second", f"{summary.rate:.1f}")
    for error in summary.errors:
        table.add_row("error", error)
    console.print(table)
    if summary.refused:
        raise typer.Exit(1)


async def _simulate(
    *,
    devices: int,
    rate: float,
    duration: float,
    via: str,
    deteriorate: int,
    ramp: float | None,
    recover_at: float | None,
    url: str,
    mqtt_url: str,
    topic_prefix: str,
    ward: str,
    seed: int | None,
    token: str,
) -> Any:
    import httpx
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from healthflow.vitals import simulator
    from healthflow.vitals.ingest_mqtt import Broker

    limits = httpx.Limits(max_connections=min(devices, 200))
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits, headers=auth) as client:
        fleet = await simulator.register(
            client,
            devices=devices,
            deteriorate=deteriorate,
            duration_s=duration,
            ramp_s=ramp,
            recover_at_s=recover_at,
            ward=ward,
            seed=seed,
        )
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn(
                "sent {task.fields[sent]}  acked {task.fields[acked]}  {task.fields[rate]}/s"
            ),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=console) as progress:
            task = progress.add_task(
                f"streaming via {via}", total=duration, sent=0, acked=0, rate=0
            )

            def show(tally: simulator.Tally, elapsed: float) -> None:
                per_s = round(tally.acknowledged / elapsed) if elapsed > 0 else 0
                progress.update(
                    task, completed=elapsed, sent=tally.sent, acked=tally.acknowledged, rate=per_s
                )

            if via == "mqtt":
                sender = simulator.MqttSender(Broker.from_url(mqtt_url), topic_prefix=topic_prefix)
                async with sender:
                    return await simulator.stream(
                        fleet, sender, rate=rate, duration_s=duration, on_progress=show
                    )
            return await simulator.stream(
                fleet,
                simulator.HttpSender(client),
                rate=rate,
                duration_s=duration,
                on_progress=show,
            )


@app.command()
def openapi(
    output: Annotated[
        Path | None, typer.Option(help="Write the schema here instead of standard output.")
    ] = None,
) -> None:
    """Print the HTTP API's OpenAPI schema (JSON) without starting the server."""
    import json
    import tempfile

    from healthflow.app import build_app
    from healthflow.settings import Settings

    with tempfile.TemporaryDirectory() as data_dir:
        # building the app opens nothing yet; the temporary data dir keeps it from touching ours
        schema = build_app(Settings.model_validate({"data_dir": data_dir})).openapi()
    text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)


db_app = typer.Typer(help="Database schemas (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the patients and analytics schemas to the newest revision."""
    from healthflow.app import migrate_databases
    from healthflow.settings import Settings

    settings = Settings()  # type: ignore[call-arg]  # every field comes from the environment
    for schema, revision in asyncio.run(migrate_databases(settings)).items():
        typer.echo(f"{schema}: at revision {revision}")


@app.command()
def cluster(
    port: Annotated[int | None, typer.Option(help="Gateway port; services use the next 3.")] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Folder for embedded databases.")] = None,
) -> None:
    """Run gateway, patients, analytics and worker as separate processes until Ctrl-C."""
    from healthflow import cluster as supervisor
    from healthflow.app import cluster_plan, migrate_databases
    from healthflow.settings import Settings

    overrides = {k: v for k, v in {"port": port, "data_dir": data_dir}.items() if v}
    settings = Settings(**overrides)  # type: ignore[arg-type]
    if not settings.broker_url.startswith("amqp"):
        console.print("cluster needs a shared broker: set HEALTHFLOW_BROKER_URL=amqp://...")
        raise typer.Exit(2)
    asyncio.run(migrate_databases(settings))
    console.print(f"gateway will listen on http://{settings.host}:{settings.port}")
    raise typer.Exit(supervisor.run(cluster_plan(settings), say=console.print))


@app.command()
def dlq(
    group: Annotated[str | None, typer.Option(help="Only this consumer group.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Newest N dead letters.")] = 50,
) -> None:
    """List dead letters (newest first) from the configured bus, without removing any."""
    from healthflow.app import dead_letters
    from healthflow.settings import Settings

    settings = Settings()  # type: ignore[call-arg]  # every field comes from the environment
    letters = asyncio.run(dead_letters(settings, group=group, limit=limit))
    table = Table("failed at", "group", "event", "type", "attempts", "error")
    for letter in letters:
        table.add_row(
            letter.failed_at.isoformat(),
            letter.group,
            letter.event.id,
            letter.event.type,
            str(letter.attempts),
            letter.error,
        )
    Console().print(table)
