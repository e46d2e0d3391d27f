"""Alembic migrations for each schema, run through one small API on an async Database.

Two migration environments, one per database (patients + dead letters; analytics), each with
its own version table so both schemas may also share one PostgreSQL database.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect

from healthflow.storage.engine import Database

HERE = Path(__file__).parent


@dataclass(frozen=True)
class Schema:
    """One migration environment: its folder, its version table, a table it always creates."""

    name: str
    version_table: str
    marker_table: str

    @property
    def location(self) -> Path:
        return HERE / self.name


PATIENTS = Schema("patients", "alembic_version_patients", "patients")
ANALYTICS = Schema("analytics", "alembic_version_analytics", "events")


class SchemaBehind(RuntimeError):
    """The database is not at the newest revision: run `healthflow db upgrade`."""


def _config(schema: Schema, connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(schema.location))
    config.attributes["connection"] = connection
    config.attributes["version_table"] = schema.version_table
    return config


def head(schema: Schema) -> str:
    revision = ScriptDirectory(str(schema.location)).get_current_head()
    if revision is None:
        raise RuntimeError(f"no migrations for {schema.name}")
    return revision


def _current(schema: Schema, connection: Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": schema.version_table})
    return context.get_current_revision()


def _upgrade(connection: Connection, schema: Schema) -> None:
    config = _config(schema, connection)
    tables = set(inspect(connection).get_table_names())
    if schema.marker_table in tables and schema.version_table not in tables:
        # a data dir created before migrations existed holds the first revision's tables
        command.stamp(config, "0001")
    command.upgrade(config, "head")


async def upgrade(db: Database, schema: Schema) -> str:
    """Bring the schema to the newest revision; returns that revision."""
    async with db.writer.begin() as conn:
        await conn.run_sync(_upgrade, schema)
    return head(schema)


async def current(db: Database, schema: Schema) -> str | None:
    async with db.writer.connect() as conn:
        return await conn.run_sync(lambda c: _current(schema, c))


async def require_current(db: Database, schema: Schema) -> None:
    """Refuse to start on a schema that migrations have not brought up to date."""
    found, wanted = await current(db, schema), head(schema)
    if found != wanted:
        raise SchemaBehind(
            f"{schema.name} schema is at {found or 'nothing'}, code needs {wanted}: "
            "run `healthflow db upgrade`"
        )
