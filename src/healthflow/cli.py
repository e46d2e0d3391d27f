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
