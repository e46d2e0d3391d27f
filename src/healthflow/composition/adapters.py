"""Which adapter serves each port, chosen from Settings: the one place that branches on it."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import structlog

from healthflow.clock import SystemClock
from healthflow.messaging.dead_letters import SqlDeadLetterStore
from healthflow.messaging.memory import MemoryBus
from healthflow.messaging.outbox import OutboxRelay
from healthflow.messaging.rabbitmq import RabbitBus
from healthflow.patients import events as patient_events
from healthflow.ports import (
    Cache,
    Check,
    Clock,
    DeadLetter,
    EventBus,
    Outbox,
    RequestBudget,
)
from healthflow.realtime.fanout import Fanout
from healthflow.realtime.hub import LiveHub, MemoryHub
from healthflow.realtime.redis_backplane import RedisHub
from healthflow.security.api import OidcClient, SignInConfig
from healthflow.security.audit import SqlAuditTrail
from healthflow.security.crypto import FieldCipher, KeyRing, decode_key
from healthflow.security.ratelimit import RateLimiter
from healthflow.security.redis_ratelimit import RedisRateLimiter
from healthflow.security.tokens import (
    DevTokens,
    JwksTokens,
    RememberedTokens,
    TokenVerifier,
    load_or_create_secret,
)
from healthflow.service_calls import service_client
from healthflow.settings import Settings
from healthflow.storage import migrations
from healthflow.storage.cache import MemoryCache
from healthflow.storage.engine import Database, open_database
from healthflow.storage.redis_cache import RedisCache
from healthflow.vitals import events as vitals_events
from healthflow.vitals import intake_store
from healthflow.vitals.ingest_mqtt import Broker, MqttIngest
from healthflow.vitals.ports import DeviceMessages, Patients
from healthflow.vitals.service import DeviceService, TelemetryService

log = structlog.get_logger(__name__)


ANALYTICS_GROUP = "analytics"
VITALS_GROUP = "vitals"
# what each consumer group handles: the bus delivers (and the broker queues) only these
GROUP_TYPES: dict[str, frozenset[str]] = {
    ANALYTICS_GROUP: frozenset(patient_events.TYPES),
    VITALS_GROUP: frozenset({vitals_events.VITAL_SIGNS_RECORDED}),
}


def backends(settings: Settings) -> dict[str, str]:
    """Which adapter serves each port, for the start-up banner and the logs."""

    def scheme(url: str) -> str:
        return url.split(":", 1)[0].split("+", 1)[0]

    return {
        "patients": scheme(settings.database_url),
        "analytics": scheme(settings.analytics_url),
        "bus": scheme(settings.broker_url),
        "cache": scheme(settings.cache_url),
        "hub": "redis" if _hub_backplane_url(settings) else "memory",
        "role": settings.role,
    }


def _check_supported(settings: Settings) -> None:
    if not settings.broker_url.startswith(("memory://", "amqp://", "amqps://")):
        raise ValueError(f"unsupported broker_url {settings.broker_url!r}: memory:// or amqp://")
    if not settings.cache_url.startswith(("memory://", "redis://", "rediss://")):
        raise ValueError(f"unsupported cache_url {settings.cache_url!r}: memory:// or redis://")
    if settings.role != "all" and not settings.broker_url.startswith("amqp"):
        raise ValueError(
            f"role {settings.role!r} runs as its own process and needs a shared broker: "
            "set HEALTHFLOW_BROKER_URL=amqp://..."
        )


@dataclass(frozen=True)
class Security:
    """Token checks, the audit trail and PHI keys; `dev_tokens` is None when an issuer is set."""

    verifier: TokenVerifier
    dev_tokens: DevTokens | None
    audit: SqlAuditTrail
    keys: KeyRing
    cipher: FieldCipher


def dev_tokens(settings: Settings) -> DevTokens | None:
    """The development token minter, or None when an OIDC issuer (JWKS) is configured."""
    if settings.auth_jwks_url:
        return None
    secret = (
        settings.auth_secret.get_secret_value().encode()
        if settings.auth_secret
        else load_or_create_secret(settings.data_dir / "auth_secret")
    )
    return DevTokens(
        secret,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        roles_claim=settings.auth_roles_claim,
        leeway_s=settings.auth_leeway_s,
    )


def sign_in_config(settings: Settings) -> SignInConfig:
    """What the dashboard's sign-in page offers: the issuer when one is configured."""
    if not settings.auth_jwks_url:
        return SignInConfig(mode="development", oidc=None)
    client = OidcClient(
        issuer=settings.auth_issuer,
        client_id=settings.auth_client_id or None,
        scope=settings.auth_scope,
    )
    return SignInConfig(mode="oidc", oidc=client)


def browser_connect_origins(settings: Settings) -> tuple[str, ...]:
    """Origins the dashboard's scripts may call besides its own: the OIDC issuer (discovery and
    the token request of the code flow both go there from the browser)."""
    if not settings.auth_jwks_url:
        return ()
    issuer = urlsplit(settings.auth_issuer)
    if issuer.scheme not in ("http", "https") or not issuer.netloc:
        return ()
    return (f"{issuer.scheme}://{issuer.netloc}",)


def build_verifier(settings: Settings) -> TokenVerifier:
    """Development tokens (HS256) unless an OIDC issuer's JWKS is configured; either way a
    token verified once is remembered for a while (RememberedTokens)."""
    inner = dev_tokens(settings) or JwksTokens(
        settings.auth_jwks_url,
        issuer=settings.auth_issuer,
        audience=settings.auth_audience,
        roles_claim=settings.auth_roles_claim,
        leeway_s=settings.auth_leeway_s,
        cache_s=settings.auth_jwks_cache_s,
        timeout_s=settings.auth_jwks_timeout_s,
    )
    return RememberedTokens(inner)


def build_security(settings: Settings, clock: Clock, patients_db: Database) -> Security:
    minter = dev_tokens(settings)
    verifier = build_verifier(settings)
    key = settings.encryption_key
    index_key = settings.blind_index_key
    keys = KeyRing(
        settings.encryption_key_file or settings.data_dir / "keys.json",
        env_key=decode_key(key.get_secret_value(), "HEALTHFLOW_ENCRYPTION_KEY") if key else None,
        env_index_key=(
            decode_key(index_key.get_secret_value(), "HEALTHFLOW_BLIND_INDEX_KEY")
            if index_key
            else None
        ),
    )
    return Security(verifier, minter, SqlAuditTrail(patients_db, clock), keys, FieldCipher(keys))


# --- live push (realtime/): which hub, and where MetricsUpdated takes its figures from ---


def _hub_backplane_url(settings: Settings) -> str:
    """The Redis URL the hub shares messages through, or "" for a hub local to this process."""
    if settings.hub_backplane_url:
        return settings.hub_backplane_url
    if settings.cache_url.startswith(("redis://", "rediss://")):
        return settings.cache_url
    return ""


def _build_hub(settings: Settings, *, serves_clients: bool = True) -> LiveHub:
    """The live hub; one that serves no clients (the patients and analytics roles behind a
    gateway) only publishes to the backplane and never tails it."""
    fanout = Fanout(
        replay_size=settings.hub_replay_size,
        send_queue_size=settings.hub_send_queue_size,
        max_clients=settings.hub_max_clients,
    )
    url = _hub_backplane_url(settings)
    if not url:
        return MemoryHub(
            fanout,
            vitals_min_interval_s=settings.hub_vitals_min_interval_s,
            heartbeat_s=settings.hub_heartbeat_s,
            idle_timeout_s=settings.hub_idle_timeout_s,
        )
    if not url.startswith(("redis://", "rediss://")):
        raise ValueError(f"unsupported hub_backplane_url {url!r}: redis:// or empty")
    return RedisHub(
        fanout,
        url=url,
        prefix=settings.hub_redis_prefix,
        replay_size=settings.hub_replay_size,
        publish_timeout_s=settings.hub_publish_timeout_s,
        publish_queue_size=settings.hub_publish_queue_size,
        vitals_min_interval_s=settings.hub_vitals_min_interval_s,
        heartbeat_s=settings.hub_heartbeat_s,
        idle_timeout_s=settings.hub_idle_timeout_s,
        tail=serves_clients,
    )


# --- issue 3: adapters chosen by URL, migrations, and the roles of the multi-process topology ---


def database(settings: Settings, url: str, *, read_url: str | None = None) -> Database:
    """A database at `url`, tuned as the settings say when it is SQLite."""
    return open_database(
        url,
        read_url=read_url,
        sqlite_synchronous=settings.sqlite_synchronous,
        sqlite_checkpoint_pages=settings.sqlite_checkpoint_pages,
    )


def _patients_database(settings: Settings) -> Database:
    return database(settings, settings.database_url, read_url=settings.database_read_url or None)


def _event_bus(
    settings: Settings,
    clock: Clock,
    dead_letter_db: Database | None,
    *,
    # a publisher declares every consumer group's queue, so events published before a worker
    # ever started wait for it instead of being routed to no queue (readings included)
    declare_groups: tuple[str, ...] = (ANALYTICS_GROUP, VITALS_GROUP),
    live_groups: tuple[str, ...] = (),
) -> EventBus:
    if settings.broker_url.startswith("amqp"):
        return RabbitBus(
            settings.broker_url,
            clock=clock,
            exchange=settings.broker_exchange,
            retry_delays_s=settings.bus_retry_delays_s,
            prefetch=settings.broker_prefetch,
            batch_events=settings.broker_batch_events,
            declare_groups=declare_groups,
            group_types=GROUP_TYPES,
            live_groups=live_groups,
            connection_name=f"healthflow-{settings.role}-{os.getpid()}",
        )
    if dead_letter_db is None:
        raise ValueError("the in-process bus keeps dead letters in the patients database")
    return MemoryBus(
        dead_letters=SqlDeadLetterStore(dead_letter_db),
        clock=clock,
        retry_delays_s=settings.bus_retry_delays_s,
    )


def request_budgets(settings: Settings) -> tuple[RequestBudget, RequestBudget]:
    """The (per client address, per token subject) budgets: shared through Redis when the cache
    is Redis, else this process's own.

    Shared budgets are per role: a request through the gateway is checked there and again by the
    service behind it, and one bucket for both would spend the caller's budget twice.
    """

    def budget(per_minute: int) -> RequestBudget:
        if settings.cache_url.startswith("redis"):
            return RedisRateLimiter(
                settings.cache_url,
                per_minute,
                prefix=f"{settings.rate_limit_prefix}{settings.role}:",
                timeout_s=settings.rate_limit_timeout_s,
            )
        return RateLimiter(per_minute)

    return (
        budget(settings.rate_limit_client_per_minute),
        budget(settings.rate_limit_subject_per_minute),
    )


def _cache(settings: Settings) -> Cache:
    if settings.cache_url.startswith("redis"):
        return RedisCache(settings.cache_url, prefix=settings.cache_prefix)
    return MemoryCache(max_entries=settings.cache_max_entries)


async def _close_cache(cache: Cache | None) -> None:
    if isinstance(cache, RedisCache):
        await cache.close()


def _critical_checks(cache: Cache) -> dict[str, Callable[[], Awaitable[Check]]]:
    return {"cache": cache.check} if isinstance(cache, RedisCache) else {}


async def _migrate(db: Database, schema: migrations.Schema) -> None:
    # embedded default: migrate on start; a server database is migrated by `healthflow db
    # upgrade` (a deploy step), and a process refuses to start on a schema that is behind
    if db.backend == "sqlite":
        await migrations.upgrade(db, schema)
    else:
        await migrations.require_current(db, schema)


async def migrate_databases(settings: Settings) -> dict[str, str]:
    """`healthflow db upgrade`: bring both schemas to their newest revision."""
    done: dict[str, str] = {}
    for name, url, schema in (
        ("patients", settings.database_url, migrations.PATIENTS),
        ("analytics", settings.analytics_url, migrations.ANALYTICS),
    ):
        db = database(settings, url)
        try:
            done[name] = await migrations.upgrade(db, schema)
        finally:
            await db.dispose()
    return done


SERVICE_KEEPALIVE_S = 2.0


def _service_client(
    base_url: str, settings: Settings, auth: httpx.Auth | None = None
) -> httpx.AsyncClient:
    # idle connections go before the service's uvicorn closes them (its keep-alive is 5 s): a
    # request sent on a connection as it is being closed fails, and a proxied POST cannot be
    # retried
    return service_client(
        base_url,
        timeout_s=settings.service_timeout_s,
        max_connections=settings.service_max_connections,
        keepalive_s=SERVICE_KEEPALIVE_S,
        auth=auth,
    )


async def dead_letters(settings: Settings, *, group: str | None, limit: int) -> list[DeadLetter]:
    """`healthflow dlq`: read the configured bus's dead letters without consuming them."""
    db = _patients_database(settings)
    bus = _event_bus(settings, SystemClock(), db, declare_groups=())
    try:
        if isinstance(bus, MemoryBus):  # the embedded bus keeps them in the patients database
            await _migrate(db, migrations.PATIENTS)
        await bus.start()
        return await bus.dead_letters(group=group, limit=limit)
    finally:
        await bus.close()
        await db.dispose()


def outbox_relay(
    settings: Settings,
    outbox: Outbox,
    bus: EventBus,
    clock: Clock,
    db: Database,
    *,
    max_in_flight: int | None = None,
) -> OutboxRelay:
    """An outbox's relay (patient events, telemetry), the same in `--role all` and `--role
    patients`; its store's `on_commit` is the relay's `committed`."""
    return OutboxRelay(
        outbox,
        bus,
        clock,
        batch_size=settings.outbox_batch_size,
        poll_interval_s=settings.outbox_poll_interval_s,
        max_in_flight=max_in_flight or settings.outbox_max_in_flight,
        publish_timeout_s=settings.outbox_publish_timeout_s,
        # SQLite has one writer: its rows commit in sequence order, none appears behind the
        # cursor, and an idle relay goes on from it (and from the store's copy of its commits)
        rescan_when_idle=db.backend != "sqlite",
    )


# --- device telemetry (issue 4): one intake and one MQTT subscriber for every role running them ---


def telemetry_intake(
    settings: Settings, clock: Clock, patients_db: Database, bus: EventBus, patients: Patients
) -> tuple[DeviceService, TelemetryService, OutboxRelay]:
    """Devices, the durable intake and its outbox relay: `--role all` and `--role patients`."""
    # A broker's batches wait for its confirmation one at a time: one that failed and went out
    # again after the next would put a patient's readings out of order. The in-process bus hands
    # concurrent batches to the workers in the order they were published, and its publish
    # returns once they were handled: several in flight keep the workers busy between batches.
    relay = outbox_relay(
        settings,
        intake_store.SqlTelemetryOutbox(patients_db),
        bus,
        clock,
        patients_db,
        max_in_flight=None if isinstance(bus, MemoryBus) else 1,
    )
    devices = DeviceService(intake_store.SqlDeviceRegistry(patients_db), patients, clock)
    intake = TelemetryService(
        devices,
        intake_store.SqlTelemetryIntake(
            patients_db, on_commit=relay.committed, backlog_limit=settings.telemetry_backlog_limit
        ),
        clock,
        backlog_limit=settings.telemetry_backlog_limit,
        waiting_on_bus=lambda: bus.waiting(VITALS_GROUP),
    )
    return devices, intake, relay


def mqtt_ingest(settings: Settings, messages: DeviceMessages) -> MqttIngest | None:
    """The MQTT subscriber when `HEALTHFLOW_MQTT_URL` is set: `--role all` and `--role worker`."""
    if not settings.mqtt_url:
        return None
    return MqttIngest(
        messages,
        Broker.from_url(settings.mqtt_url),
        client_id=settings.mqtt_client_id,
        topic_prefix=settings.mqtt_topic_prefix,
        max_message_bytes=settings.max_body_bytes,
        queue_size=settings.worker_queue_size,
    )
