"""The benchmark keeps working: a few seconds of it, checked for shape and sanity, never timing."""

from __future__ import annotations

import pytest

from healthflow.bench.pipeline import run

pytestmark = pytest.mark.e2e


async def test_benchmark_smoke_run_measures_every_phase() -> None:
    steps: list[str] = []
    result = await run(
        duration_s=1.0, concurrency=4, dashboard_requests=20, env={}, progress=steps.append
    )
    reg = result["registrations"]
    assert reg["count"] > 0 and reg["errors"] == 0
    assert reg["push_latency_ms"]["n"] == reg["count"]  # every registration was pushed live
    assert result["pipeline"]["counted"] == reg["count"]  # and processed by the workers
    assert result["dashboard"]["latency_ms"]["n"] == 20
    assert result["server"]["peak_rss_mb"] > 0
    assert result["baseline"]["sqlite"]["transactions_per_second"] > 0
    assert len(steps) == 4
