"""All configuration, read once from HEALTHFLOW_* environment variables (or a .env file)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
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
    sqlite_checkpoint_pages: int = Field(
        16_384,
        ge=100,
        le=1_000_000,
        description="SQLite WAL pages (4 KiB) written before a checkpoint copies them back.",
    )
    worker_count: int = Field(4, ge=1, le=256, description="Parallel background workers.")
    vitals_worker_count: int = Field(
        0,
        ge=0,
        le=256,
        description="Workers scoring readings beside the analytics store (role all); 0: on "
        "SQLite (one writer, one batch at a time) one worker taking up to "
        "HEALTHFLOW_WORKER_BATCH_SIZE times HEALTHFLOW_WORKER_COUNT readings a batch, else "
        "HEALTHFLOW_WORKER_COUNT.",
    )
    worker_queue_size: int = Field(
        1000, ge=1, le=1_000_000, description="Capacity of the worker queues, all workers together."
    )
    worker_batch_size: int = Field(
        200,
        ge=1,
        le=10_000,
        description="Most events a worker stores in one transaction (the one vitals worker on "
        "SQLite: this times HEALTHFLOW_WORKER_COUNT).",
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
    outbox_publish_timeout_s: float = Field(
        120.0, gt=0, description="How long a batch may wait for bus confirmation before resending."
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
    # --- security (issue 6) ---
    auth_secret: SecretStr | None = Field(
        None,
        description="HS256 secret for development tokens; unset means generated into the data dir.",
    )
    auth_jwks_url: str = Field(
        "",
        description="OIDC issuer's JWKS URL; when set only its RS256/ES256 tokens are accepted.",
    )
    auth_issuer: str = Field(
        "healthflow-dev", description="Expected `iss` claim (the OIDC issuer URL in production)."
    )
    auth_audience: str = Field("healthflow", description="Expected `aud` claim.")
    auth_roles_claim: str = Field(
        "roles", description="Claim holding the roles; dotted for nested (`realm_access.roles`)."
    )
    auth_leeway_s: float = Field(
        30.0, ge=0, le=300, description="Clock skew tolerated on `exp` and `nbf`."
    )
    auth_jwks_cache_s: int = Field(
        300, ge=1, description="How long fetched JWKS keys are reused before a refresh."
    )
    auth_jwks_timeout_s: float = Field(
        5.0, gt=0, description="Timeout for fetching the JWKS from the issuer."
    )
    auth_client_id: str = Field(
        "",
        description="OIDC client id the dashboard signs in with (public client, code + PKCE).",
    )
    auth_scope: str = Field(
        "openid profile",
        description="Scopes the dashboard asks the issuer for (add the API's own scope if needed).",
    )
    encryption_key: SecretStr | None = Field(
        None,
        description="Base64 AES-256 key for PHI at rest; unset means the key file's active key.",
    )
    blind_index_key: SecretStr | None = Field(
        None, description="Base64 HMAC key for the MRN blind index; unset means the key file's."
    )
    encryption_key_file: Path | None = Field(
        None, description="PHI key ring file; unset means `keys.json` in the data dir."
    )
    cors_allow_origins: tuple[str, ...] = Field(
        (), description="Browser origins allowed to call the API cross-site; empty means none."
    )
    rate_limit_subject_per_minute: int = Field(
        6000, ge=1, description="Requests per minute one token subject may make (429 beyond)."
    )
    rate_limit_client_per_minute: int = Field(
        12000, ge=1, description="Requests per minute one client address may make (429 beyond)."
    )
    forwarded_allow_ips: str = Field(
        "127.0.0.1",
        description=(
            "Proxies whose X-Forwarded-For is believed (comma-separated addresses or networks, "
            "'*' for any): the gateway's, so a service sees each caller's own address."
        ),
    )
    rate_limit_prefix: str = Field(
        "healthflow:ratelimit:",
        min_length=1,
        description="Prefix of the request budgets' Redis keys (shared when cache_url is redis://).",
    )
    rate_limit_timeout_s: float = Field(
        0.1,
        gt=0,
        le=5,
        description="How long a shared budget check may wait for Redis before deciding in-process.",
    )
    request_timeout_s: float = Field(
        30.0, gt=0, description="Longest wait for a response to start before 504 (not streams)."
    )
    # --- device telemetry (issue 4) ---
    mqtt_url: str = Field(
        "",
        description="MQTT broker for device telemetry (mqtt:// or mqtts://), subscribed in roles "
        "all and worker; empty keeps the subscriber off.",
    )
    mqtt_topic_prefix: str = Field(
        "",
        description="Text before `devices/{id}/messages/events/` in telemetry topics.",
    )
    mqtt_client_id: str = Field(
        "healthflow-ingest",
        min_length=1,
        max_length=64,
        description="MQTT client id of the subscriber; its persistent session survives restarts.",
    )
    telemetry_backlog_limit: int = Field(
        10_000,
        ge=1,
        description="Accepted readings not yet handed to workers at which intake answers 503.",
    )
    web_dir: Path | None = Field(
        None,
        description="Built dashboard served at `/`; unset means `web/dist` of the source checkout.",
    )

    # --- issue 3: production backends and the multi-process topology ---
    database_read_url: str = Field(
        "", description="Read replica for patient queries; empty means reads use database_url."
    )
    broker_exchange: str = Field(
        "healthflow.events",
        description="RabbitMQ topic exchange; also the prefix of every queue the bus declares.",
    )
    broker_prefetch: int = Field(
        64, ge=1, le=10_000, description="RabbitMQ deliveries a consumer holds unacked at once."
    )
    broker_batch_events: int = Field(
        100,
        ge=1,
        le=1_000,
        description="Most events of one type published together that travel as one RabbitMQ "
        "message (CloudEvents batch format); 1 sends each event alone.",
    )
    cache_prefix: str = Field(
        "healthflow:", description="Prefix of every Redis key the cache writes."
    )
    role: Literal["all", "gateway", "patients", "analytics", "worker"] = Field(
        "all",
        description="What `healthflow serve` runs: all, gateway, patients, analytics, worker.",
    )
    patients_service_url: str = Field(
        "http://127.0.0.1:8001",
        description="Base URL of the patients service (gateway and worker roles).",
    )
    analytics_service_url: str = Field(
        "http://127.0.0.1:8002",
        description="Base URL of the analytics service (gateway and worker roles).",
    )
    worker_service_url: str = Field(
        "http://127.0.0.1:8003",
        description="Base URL of the worker's health endpoint; empty leaves it out of readiness.",
    )
    service_timeout_s: float = Field(
        5.0, gt=0, description="Timeout of one service-to-service HTTP request."
    )
    service_max_connections: int = Field(
        100, ge=1, description="Pooled HTTP connections per downstream service."
    )
    service_retries: int = Field(
        3,
        ge=1,
        le=20,
        description="Attempts of one worker call to another service before it fails.",
    )
    breaker_failures: int = Field(
        5, ge=1, description="Consecutive failed calls that open the circuit to a service."
    )
    breaker_reset_s: float = Field(
        10.0, gt=0, description="How long an open circuit refuses calls before one probe."
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
