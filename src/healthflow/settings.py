"""All configuration, read once from HEALTHFLOW_* environment variables (or a .env file)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """HealthFlow settings; README's settings table is checked against these fields by a test."""

    model_config = SettingsConfigDict(
        env_prefix="HEALTHFLOW_", env_file=".env", extra="ignore", frozen=True
    )

    data_dir: Path = Field(
        Path(".healthflow"), description="Folder for the embedded databases and generated secrets."
    )
    host: str = Field("127.0.0.1", description="Interface `healthflow serve` listens on.")
    port: int = Field(8000, ge=1, le=65535, description="TCP port `healthflow serve` listens on.")
    database_url: str = Field(
        "",
        description="Patient store URL; empty means SQLite `patients.db` in the data dir.",
    )
    analytics_url: str = Field(
        "",
        description="Analytics store URL; empty means SQLite `analytics.db` in the data dir.",
    )
    broker_url: str = Field("memory://", description="Event bus: `memory://` (in-process).")
    cache_url: str = Field("memory://", description="Cache: `memory://` (in-process LRU).")
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = Field(
        "FULL",
        description="SQLite durability: FULL survives power loss, NORMAL only process crashes.",
    )
    worker_count: int = Field(4, ge=1, le=256, description="Parallel background workers.")
    worker_queue_size: int = Field(
        1000, ge=1, le=1_000_000, description="Capacity of the worker queues, all workers together."
    )
    worker_shutdown_grace_s: float = Field(
        10.0, ge=0, description="On shutdown, how long queued work may take to finish."
    )
    bus_retry_delays_s: tuple[float, ...] = Field(
        (1.0, 5.0, 30.0),
        description="Delays before each retry of a failed delivery; then it is dead-lettered.",
    )
    outbox_batch_size: int = Field(500, ge=1, le=10_000, description="Outbox rows per publish.")
    outbox_poll_interval_s: float = Field(
        0.5, gt=0, description="How often the relay looks for rows it was not woken for."
    )
    outbox_max_in_flight: int = Field(
        4, ge=1, le=64, description="Outbox batches awaiting bus confirmation at once."
    )
    outbox_degraded_after_s: float = Field(
        30.0, gt=0, description="Oldest unpublished event age at which readiness says degraded."
    )
    hub_send_queue_size: int = Field(
        1000, ge=1, description="Messages buffered per live-push client before it is dropped."
    )
    cache_max_entries: int = Field(10_000, ge=1, description="Entries kept by the memory cache.")
    dashboard_cache_ttl_s: float = Field(
        5.0, ge=0, description="How long a dashboard summary may be served from cache."
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1024, description="Largest request body accepted (larger gets 413)."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Lowest log level written."
    )
    log_format: Literal["json", "console"] = Field(
        "json", description="Log lines as JSON (production) or for people (console)."
    )

    # Live push (realtime/, docs/realtime.md)
    hub_replay_size: int = Field(
        10_000, ge=1, le=1_000_000, description="Recent live messages kept for `resume`."
    )
    hub_max_clients: int = Field(
        10_000, ge=1, description="Live connections per process; more are refused (1013 / 503)."
    )
    hub_heartbeat_s: float = Field(
        15.0, gt=0, description="How often the server pings each live connection."
    )
    hub_idle_timeout_s: float = Field(
        45.0, gt=0, description="A WebSocket silent this long (no op, no pong) is closed (4010)."
    )
    hub_vitals_min_interval_s: float = Field(
        0.25, ge=0, description="Least time between two VitalsUpdated of one patient (0: off)."
    )
    hub_metrics_interval_s: float = Field(
        1.0, gt=0, description="How often MetricsUpdated is published on the `metrics` topic."
    )
    hub_backplane_url: str = Field(
        "",
        description="Hub backplane `redis://...`; empty: a redis:// cache_url, else in-process.",
    )
    hub_redis_prefix: str = Field(
        "healthflow:hub", min_length=1, description="Key prefix of the hub's Redis stream."
    )
    hub_publish_timeout_s: float = Field(
        2.0, gt=0, description="How long a publish to the backplane may take before it fails."
    )
    hub_publish_queue_size: int = Field(
        10_000, ge=1, description="Messages waiting for the backplane; more are dropped."
    )

    @model_validator(mode="after")
    def _default_urls(self) -> Settings:
        # frozen: fill derived defaults through object.__setattr__ once, at construction
        if not self.database_url:
            object.__setattr__(self, "database_url", _sqlite(self.data_dir / "patients.db"))
        if not self.analytics_url:
            object.__setattr__(self, "analytics_url", _sqlite(self.data_dir / "analytics.db"))
        return self


def _sqlite(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"
