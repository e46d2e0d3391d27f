"""Telemetry metrics, in the process's one Prometheus registry."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

READINGS = Counter(
    "healthflow_telemetry_readings_total",
    "Readings received, by transport and outcome (accepted, duplicate, quarantined)",
    ["transport", "outcome"],
)
QUARANTINED = Counter(
    "healthflow_telemetry_quarantined_total", "Readings kept in quarantine, by reason", ["reason"]
)
REFUSED = Counter(
    "healthflow_telemetry_refused_total",
    "Telemetry messages refused before any reading was looked at, by transport and reason",
    ["transport", "reason"],
)
ASSESSMENTS = Counter(
    "healthflow_news2_assessments_total", "NEWS2 assessments made, by risk", ["risk"]
)
LATE_READINGS = Counter(
    "healthflow_telemetry_late_readings_total", "Readings older than the last assessment"
)
ALERT_CHANGES = Counter(
    "healthflow_alert_changes_total",
    "Alert lifecycle steps, by severity and change",
    ["severity", "change"],
)
ACK_RETRIES = Counter(
    "healthflow_alert_ack_retries_total",
    "Acknowledgements tried again because a reading changed the alert meanwhile",
)
CRITICAL_REFUSED = Counter(
    "healthflow_alert_critical_refused_total",
    "Critical alerts whose patient could not be moved to critical (e.g. discharged)",
)
BATCHES_REWRITTEN = Counter(
    "healthflow_vitals_batches_rewritten_total",
    "Vitals batches undone and written again because a reading in them was stored before "
    "(a redelivery)",
)
MQTT_RECONNECTS = Counter("healthflow_mqtt_reconnects_total", "MQTT subscriber reconnect attempts")
MQTT_STORE_FAILURES = Counter(
    "healthflow_mqtt_store_failures_total",
    "MQTT messages the intake could not take yet (held unacknowledged, tried again)",
)
MQTT_BATCH = Histogram(
    "healthflow_mqtt_batch_messages",
    "MQTT messages the subscriber stored together (what arrived before the last batch was acked)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
