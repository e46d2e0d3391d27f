"""The benchmark keeps working: a few seconds of every phase, checked for shape and for counts
that add up (accepted == processed, delivered <= expected), never for a timing. A second short
run puts the split topology (every role its own process) on the real servers."""

from __future__ import annotations

import asyncio
import dataclasses
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from healthflow.bench import PHASES
from healthflow.bench.context import Params, RecordedProgress
from healthflow.bench.pipeline import run
from healthflow.bench.server import mosquitto_binary
from tests.integration.conftest import PG_HOST, PG_PORT, require_server

pytestmark = pytest.mark.e2e

TINY = Params(
    backend="embedded",
    duration_s=2.0,
    clients=10,
    rate=100.0,
    devices=10,
    wards=2,
    batch=10,
    latency_rate=50.0,
    latency_interval_s=1.0,
    client_procs=1,
    registration_concurrency=4,
    registration_rate=5.0,
    seed_events=1_000,
    dashboard_requests=10,
    baseline_s=0.5,
    drain_limit_s=120.0,
)


@pytest.fixture(scope="module")
def result() -> dict[str, Any]:
    """One short run for the whole module (synchronous: its loop is its own)."""
    progress = RecordedProgress()
    outcome = asyncio.run(run(TINY, progress, command="pytest bench smoke"))
    outcome["_progress"] = progress
    return outcome


@pytest.fixture(scope="module")
def phases(result: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = result["phases"]
    return found


def accepted_all_processed(phase: dict[str, Any]) -> None:
    assert phase["accepted"] > 0
    assert phase["processed"] == phase["accepted"]
    assert phase["all_accepted_processed"] is True


def test_every_phase_ran_and_the_result_says_how(result: dict[str, Any]) -> None:
    assert set(result["phases"]) == set(PHASES) - {"baselines"}
    assert {k: v["error"] for k, v in result["phases"].items() if "error" in v} == {}
    assert result["command"] == "pytest bench smoke"
    assert result["parameters"]["duration_s"] == TINY.duration_s
    assert result["machine"]["cpus"] > 0
    assert result["versions"]["healthflow"]
    assert result["_progress"].phases[0] == "registrations"
    for phase in result["phases"].values():
        assert "load_average_1m" in phase


def test_registrations_are_all_pushed_and_counted(phases: dict[str, Any]) -> None:
    reg = phases["registrations"]
    assert reg["count"] > 0
    assert reg["statuses"] == {"201": reg["count"]}
    assert reg["push_missing"] == 0
    assert reg["push_after_return_ms"]["n"] == reg["count"]
    assert reg["analytics_counted"] == reg["count"]


def test_http_readings_accepted_are_the_readings_processed(phases: dict[str, Any]) -> None:
    http = phases["vitals-http"]
    accepted_all_processed(http)
    assert http["accepted_by_client"] == http["accepted"]
    assert http["readings_per_s"] > 0
    assert http["per_second_while_busy"]["seconds"] >= 1
    batch = http["mean_batch"]
    assert batch["mqtt"] is None  # no MQTT in this phase
    assert batch["intake"] >= 1 and batch["worker"] >= 1


def test_mqtt_readings_acknowledged_are_the_readings_processed(
    phases: dict[str, Any],
) -> None:
    mqtt = phases["vitals-mqtt"]
    if "skipped" in mqtt:
        pytest.skip(mqtt["skipped"])
    accepted_all_processed(mqtt)
    assert mqtt["offered"]["readings_accepted"] == mqtt["processed"]
    assert mqtt["mean_batch"]["mqtt"] >= 1
    if mosquitto_binary() is not None:  # the run's own broker, configured as deployments are
        assert mqtt["broker"] == "own, deploy/mosquitto.conf"


def test_overload_counts_pushback_and_loses_nothing_accepted(
    phases: dict[str, Any],
) -> None:
    over = phases["overload"]
    accepted_all_processed(over)
    assert over["offered_per_s"] == pytest.approx(2 * over["sustainable_per_s"], rel=0.01)
    pushback = over["pushback"]
    assert pushback["with_retry_after"] == pushback["requests"]
    offered = over["offered"]
    answered = sum(offered["statuses"].values()) + offered["transport_errors"]
    assert answered == offered["requests"]


def test_latency_deliveries_do_not_exceed_what_was_sent(phases: dict[str, Any]) -> None:
    lat = phases["latency"]
    assert lat["clients"]["connected"] == TINY.clients
    assert lat["clients"]["out_of_order"] == 0
    for one in (lat, lat.get("half_sustainable")):
        if one is None:  # only when vitals-http measured less than the latency rate
            continue
        accepted_all_processed(one)
        d = one["deliveries"]
        assert 0 < d["vitals_updated"] <= d["vitals_updated_ceiling"]
        assert d["alert_raised"] <= d["alert_raised_expected"]
        assert d["patient_created"] <= d["patient_created_expected"]
        assert d["unmatched"] == 0
        assert one["vitals_every_update_ms"]["n"] == d["vitals_updated"]
        # the steady state is a part of the pass: the requests after every monitor's first
        whole, steady = one["vitals_first_shown_ms"], one["vitals_first_shown_after_first_round_ms"]
        assert 0 < steady["n"] < whole["n"]
        # small requests over HTTP: the intake and the workers each stored at least one batch
        assert one["mean_batch"]["mqtt"] is None
        assert one["mean_batch"]["intake"] >= 1 and one["mean_batch"]["worker"] >= 1


def test_the_dashboard_counts_every_seeded_event(phases: dict[str, Any]) -> None:
    dash = phases["dashboard"]
    assert dash["seeded"]["events"] == TINY.seed_events
    assert dash["counted_seeded_events"] == TINY.seed_events
    assert dash["uncached_ms"]["n"] == 89
    assert dash["steady_ms"]["n"] == TINY.dashboard_requests


def test_stored_rows_match_the_processed_counter(result: dict[str, Any]) -> None:
    assert result["consistency"]["equal"] is True
    assert result["consistency"]["vitals_rows"] > 0


def test_baselines_ran_beside_and_ratios_follow(result: dict[str, Any]) -> None:
    bare = result["baselines"]
    assert bare["sqlite"]["batched_rows_per_s"] > 0
    ws = bare["websocket"]
    assert 0 < ws["deliveries"] <= ws["deliveries_expected"]
    assert "bare_db_batched_rows_per_s_over_http_readings_per_s" in result["ratios"]


# --- the split topology on the server backend: the same counts, summed over the roles ---

SPLIT = dataclasses.replace(
    TINY,
    backend="server",
    topology="split",
    phases=("registrations", "vitals-http", "vitals-mqtt", "overload", "latency", "dashboard"),
)
ROLES = {"gateway", "patients", "analytics", "worker"}


@pytest.fixture(scope="module")
def split() -> dict[str, Any]:
    for name, host, port in (
        ("PostgreSQL", PG_HOST, PG_PORT),
        ("RabbitMQ", "127.0.0.1", 5672),
        ("Redis", "127.0.0.1", 6379),
    ):
        require_server(name, host, port)
    outcome: dict[str, Any] = asyncio.run(
        run(SPLIT, RecordedProgress(), command="pytest bench smoke split")
    )
    return outcome


@pytest.mark.integration
def test_split_runs_every_phase_against_four_processes(split: dict[str, Any]) -> None:
    assert {k: v["error"] for k, v in split["phases"].items() if "error" in v} == {}
    assert set(split["phases"]) == set(SPLIT.phases)
    assert split["backend"]["topology"] == "split"
    assert split["server"]["topology"] == "split"
    roles = split["server"]["roles"]
    assert set(roles) == ROLES
    assert split["server"]["cpu_s"] == pytest.approx(
        sum(r["cpu_s"] for r in roles.values()), abs=0.3
    )


@pytest.mark.integration
def test_split_phase_cpu_is_the_sum_of_its_roles(split: dict[str, Any]) -> None:
    server = split["phases"]["vitals-http"]["server"]
    assert set(server["roles"]) == ROLES
    assert server["cpu_s"] == pytest.approx(
        sum(r["cpu_s"] for r in server["roles"].values()), abs=0.05
    )


@pytest.mark.integration
def test_split_readings_accepted_on_patients_are_processed_on_analytics(
    split: dict[str, Any],
) -> None:
    phases = split["phases"]
    accepted_all_processed(phases["vitals-http"])
    assert phases["vitals-http"]["accepted_by_client"] == phases["vitals-http"]["accepted"]
    accepted_all_processed(phases["overload"])
    mqtt = phases["vitals-mqtt"]
    if "skipped" not in mqtt:
        accepted_all_processed(mqtt)
        assert mqtt["offered"]["readings_accepted"] == mqtt["processed"]
    assert split["consistency"]["equal"] is True
    assert split["consistency"]["vitals_rows"] > 0


@pytest.mark.integration
def test_split_registrations_are_pushed_through_the_gateway_and_counted_by_the_worker(
    split: dict[str, Any],
) -> None:
    reg = split["phases"]["registrations"]
    assert reg["count"] > 0
    assert reg["statuses"] == {"201": reg["count"]}
    assert reg["push_missing"] == 0
    assert reg["analytics_counted"] == reg["count"]


@pytest.mark.integration
def test_split_latency_and_dashboard_add_up(split: dict[str, Any]) -> None:
    lat = split["phases"]["latency"]
    assert lat["clients"]["connected"] == SPLIT.clients
    accepted_all_processed(lat)
    d = lat["deliveries"]
    assert 0 < d["vitals_updated"] <= d["vitals_updated_ceiling"]
    assert d["unmatched"] == 0
    dash = split["phases"]["dashboard"]
    assert dash["counted_seeded_events"] == SPLIT.seed_events


@pytest.mark.parametrize("after_s", [0.0, 6.0])  # while its server starts; in a phase
def test_a_terminated_bench_stops_the_servers_it_started(tmp_path: Path, after_s: float) -> None:
    """`timeout` or a cancelled job sends SIGTERM: the run unwinds and stops its `serve`."""
    bench = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "healthflow",
            "bench",
            "--phases",
            "vitals-http",
            "--duration",
            "60",
        ],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        started = time.monotonic()
        servers: list[psutil.Process] = []
        while not servers and time.monotonic() - started < 60:
            servers = [
                p
                for p in psutil.Process(bench.pid).children(recursive=True)
                if "serve" in p.cmdline()
            ]
            time.sleep(0.2)
        assert servers, "the bench never started its server"
        time.sleep(after_s)

        bench.send_signal(signal.SIGTERM)
        bench.wait(timeout=150)  # a start under way is finished, then stopped

        gone, alive = psutil.wait_procs(servers, timeout=30)
        assert alive == []
        assert len(gone) == len(servers)
    finally:
        if bench.poll() is None:
            bench.kill()
