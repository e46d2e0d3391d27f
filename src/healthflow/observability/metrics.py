"""Prometheus metrics, one registry for the process; names follow Prometheus conventions."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

# label sets a `Children` keeps; past this many, children are looked up each time (a client
# can make up HTTP methods, so a key space is not always bounded by the code)
MAX_LABEL_SETS = 4096


class Children:
    """A metric's children by label values, for labels set per request or per message:
    `.labels()` hashes and locks on every call (2-5 µs), a dict lookup does not."""

    def __init__(self, metric: Counter | Histogram) -> None:
        self._metric = metric
        self._known: dict[tuple[str, ...], Any] = {}

    def get(self, *values: str) -> Any:
        child = self._known.get(values)
        if child is None:
            child = self._metric.labels(*values)
            if len(self._known) < MAX_LABEL_SETS:
                self._known[values] = child
        return child


HTTP_REQUESTS = Counter(
    "healthflow_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "healthflow_http_request_seconds", "HTTP request duration", ["method", "route"]
)
EVENTS_PUBLISHED = Counter(
    "healthflow_events_published_total", "Events confirmed by the bus", ["bus"]
)
EVENTS_PROCESSED = Counter(
    "healthflow_events_processed_total", "Events handled and acked by workers", ["pool", "type"]
)
EVENTS_FAILED = Counter(
    "healthflow_events_failed_total", "Event handling attempts that failed", ["pool", "type"]
)
EVENTS_RETRIED = Counter(
    "healthflow_events_retried_total", "Deliveries scheduled for another attempt", ["group"]
)
EVENTS_DEAD_LETTERED = Counter(
    "healthflow_events_dead_lettered_total", "Events moved to the dead-letter store", ["group"]
)
EVENTS_DUPLICATE = Counter(
    "healthflow_events_duplicate_total", "Deliveries skipped as already recorded", ["consumer"]
)
SETTLE_FAILURES = Counter(
    "healthflow_settle_failures_total", "Acks or rejects that failed (redelivered later)", ["pool"]
)
HANDLE_SECONDS = Histogram("healthflow_event_handle_seconds", "Time to handle one event", ["pool"])
WORKER_QUEUE_DEPTH = Gauge(
    "healthflow_worker_queue_depth", "Deliveries waiting in a worker pool", ["pool"]
)
WORKER_BATCH_SIZE = Histogram(
    "healthflow_worker_batch_size",
    "Deliveries a worker took from its queue and handled together",
    ["pool"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
)
GROUP_COMMIT_SIZE = Histogram(
    "healthflow_group_commit_size",
    "Writes committed together in one transaction",
    ["store"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
)
OUTBOX_RELAYED = Counter("healthflow_outbox_relayed_total", "Outbox rows confirmed and marked")
OUTBOX_FAILURES = Counter("healthflow_outbox_failures_total", "Outbox batches that failed")
BUS_QUERY_FAILURES = Counter(
    "healthflow_bus_query_failures_total",
    "Queue depths the broker could not be asked for (the last known depth was used)",
)
HUB_CLIENTS = Gauge("healthflow_hub_clients", "Connected live-push clients")
HUB_MESSAGES = Counter("healthflow_hub_messages_total", "Live-push messages broadcast", ["type"])
HUB_DROPPED_CLIENTS = Counter(
    "healthflow_hub_slow_clients_dropped_total", "Clients disconnected for falling behind"
)
HUB_FAILURES = Counter("healthflow_hub_failures_total", "Live pushes that failed after commit")

# Live push (realtime/): resumes, coalescing, backplane
HUB_RESUMES = Counter(
    "healthflow_hub_resumes_total", "Resume requests, by outcome (replayed or resync)", ["outcome"]
)
HUB_COALESCED = Counter(
    "healthflow_hub_vitals_coalesced_total", "VitalsUpdated messages superseded by a newer one"
)
METRICS_FEED_SOURCE_FAILURES = Counter(
    "healthflow_metrics_feed_source_failures_total",
    "Figures of the live metrics feed published as null, by source and reason (timeout, error)",
    ["source", "reason"],
)
HUB_BACKPLANE_ERRORS = Counter(
    "healthflow_hub_backplane_errors_total", "Backplane reads or publishes that failed", ["op"]
)

# Request budgets (security/redis_ratelimit.py)
RATE_LIMIT_FALLBACKS = Counter(
    "healthflow_rate_limit_fallbacks_total",
    "Request budget checks this process decided alone because Redis did not answer in time",
    ["reason"],
)
