"""The `healthflow` command."""

from __future__ import annotations

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


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port to listen on.")] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Folder for the embedded databases (HEALTHFLOW_DATA_DIR).")
    ] = None,
) -> None:
    """Run the whole platform in this process."""
    from healthflow.app import backends, build_app
    from healthflow.observability.logs import configure
    from healthflow.settings import Settings

    overrides = {k: v for k, v in {"host": host, "port": port, "data_dir": data_dir}.items() if v}
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


@app.command()
def bench(
    duration: Annotated[float, typer.Option(help="Seconds of registration load.")] = 10.0,
    concurrency: Annotated[int, typer.Option(help="Concurrent HTTP clients.")] = 32,
    dashboard_requests: Annotated[int, typer.Option(help="Dashboard requests to time.")] = 500,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the result here.")] = None,
) -> None:
    """Benchmark the pipeline end to end against a fresh `healthflow serve` process."""
    import asyncio
    import json

    from healthflow.bench.pipeline import run

    result = asyncio.run(
        run(
            duration_s=duration,
            concurrency=concurrency,
            dashboard_requests=dashboard_requests,
            env={},
            progress=lambda step: console.print(f"[bold]>[/] {step}"),
        )
    )
    table = Table(title="HealthFlow benchmark")
    table.add_column("figure")
    table.add_column("value", justify="right")
    reg = result["registrations"]
    table.add_row("registrations/s", str(reg["per_second"]))
    for name in ("p50", "p95", "p99"):
        table.add_row(
            f"POST returned → PatientCreated {name} (ms)", str(reg["push_latency_ms"][name])
        )
        table.add_row(
            f"POST sent → PatientCreated {name} (ms)", str(reg["push_from_request_ms"][name])
        )
    table.add_row("pipeline drain after load (s)", str(result["pipeline"]["drain_s"]))
    for name in ("p50", "p95", "p99"):
        table.add_row(f"dashboard {name} (ms)", str(result["dashboard"]["latency_ms"][name]))
    table.add_row("server peak RSS (MB)", str(result["server"]["peak_rss_mb"]))
    table.add_row("server CPU (s)", str(result["server"]["cpu_seconds"]))
    table.add_row("bare sqlite3 tx/s", str(result["baseline"]["sqlite"]["transactions_per_second"]))
    console.print(table)
    if json_out:
        json_out.write_text(json.dumps(result, indent=2))
