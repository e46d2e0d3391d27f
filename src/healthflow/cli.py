"""The `healthflow` command."""

from __future__ import annotations

import asyncio
import enum
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from healthflow import __version__

app = typer.Typer(
    help="HealthFlow: real-time patient flow and bedside monitoring.", no_args_is_help=True
)
console = Console(stderr=True)


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
) -> None:
    """Run the whole platform in this process, or one role of the multi-process topology."""
    from healthflow.app import backends, build_app
    from healthflow.observability.logs import configure
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
    console.print(table)
    uvicorn.run(
        build_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=int(settings.worker_shutdown_grace_s) + 5,
    )


@app.command()
def version() -> None:
    """Print the version."""
    typer.echo(__version__)


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
