"""The benchmark's reading of the server's /metrics: counts, and what each stage's batches held."""

from __future__ import annotations

from healthflow.bench import counters


def scrape(readings: int, intake: tuple[int, int], vitals: tuple[int, int]) -> str:
    """A /metrics text: `readings` accepted and scored, the intake's and the vitals workers'
    batches as (items, batches), beside other stores' and pools' that must not count."""
    return f"""
healthflow_telemetry_readings_total{{outcome="accepted",transport="http"}} {readings}.0
healthflow_news2_assessments_total{{risk="low"}} {readings}.0
healthflow_mqtt_batch_messages_sum 0.0
healthflow_mqtt_batch_messages_count 0.0
healthflow_group_commit_size_sum{{store="telemetry.intake"}} {intake[0]}.0
healthflow_group_commit_size_count{{store="telemetry.intake"}} {intake[1]}.0
healthflow_group_commit_size_sum{{store="patients"}} {readings * 5}.0
healthflow_group_commit_size_count{{store="patients"}} {readings}.0
healthflow_worker_batch_size_sum{{pool="vitals"}} {vitals[0]}.0
healthflow_worker_batch_size_count{{pool="vitals"}} {vitals[1]}.0
healthflow_worker_batch_size_sum{{pool="analytics"}} {readings * 7}.0
healthflow_worker_batch_size_count{{pool="analytics"}} {readings}.0
"""


def test_a_phase_is_told_what_each_stage_handled_at_once() -> None:
    before = counters.parse(scrape(100, intake=(10, 10), vitals=(100, 4)))
    after = counters.parse(scrape(1100, intake=(30, 15), vitals=(1100, 12)))

    phase = after.minus(before)

    assert phase.accepted == {"http": 1000.0}
    assert phase.processed == 1000.0
    # the intake's and the vitals workers' own batches only; MQTT stored nothing here
    assert phase.mean_batches() == {"mqtt": None, "intake": 4.0, "worker": 125.0}
