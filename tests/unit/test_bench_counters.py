"""The benchmark's reading of the server's /metrics: counts, and what each stage's batches held."""

from __future__ import annotations

from healthflow.bench import counters

BEFORE = """
healthflow_telemetry_readings_total{outcome="accepted",transport="http"} 100.0
healthflow_news2_assessments_total{risk="low"} 90.0
healthflow_mqtt_batch_messages_sum 0.0
healthflow_mqtt_batch_messages_count 0.0
healthflow_group_commit_size_sum{store="telemetry.intake"} 10.0
healthflow_group_commit_size_count{store="telemetry.intake"} 10.0
healthflow_group_commit_size_sum{store="patients"} 500.0
healthflow_group_commit_size_count{store="patients"} 5.0
healthflow_worker_batch_size_sum{pool="vitals"} 100.0
healthflow_worker_batch_size_count{pool="vitals"} 4.0
healthflow_worker_batch_size_sum{pool="analytics"} 1000.0
healthflow_worker_batch_size_count{pool="analytics"} 2.0
"""

AFTER = """
healthflow_telemetry_readings_total{outcome="accepted",transport="http"} 1100.0
healthflow_news2_assessments_total{risk="low"} 1090.0
healthflow_mqtt_batch_messages_sum 0.0
healthflow_mqtt_batch_messages_count 0.0
healthflow_group_commit_size_sum{store="telemetry.intake"} 30.0
healthflow_group_commit_size_count{store="telemetry.intake"} 15.0
healthflow_group_commit_size_sum{store="patients"} 900.0
healthflow_group_commit_size_count{store="patients"} 6.0
healthflow_worker_batch_size_sum{pool="vitals"} 1100.0
healthflow_worker_batch_size_count{pool="vitals"} 12.0
healthflow_worker_batch_size_sum{pool="analytics"} 1000.0
healthflow_worker_batch_size_count{pool="analytics"} 2.0
"""


def test_a_phase_is_told_what_each_stage_handled_at_once() -> None:
    phase = counters.parse(AFTER).minus(counters.parse(BEFORE))

    assert phase.accepted == {"http": 1000.0}
    assert phase.processed == 1000.0
    # the intake's and the vitals workers' own batches only; MQTT stored nothing here
    assert phase.mean_batches() == {"mqtt": None, "intake": 4.0, "worker": 125.0}
