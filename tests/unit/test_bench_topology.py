"""`healthflow bench --topology`: which processes a run starts and with what settings (no servers;
tests/e2e/test_bench_smoke.py runs both topologies for real)."""

from __future__ import annotations

from pathlib import Path

import uvicorn
from typer.testing import CliRunner

from healthflow.bench.server import DEPLOY_MOSQUITTO_CONF, Backend, ServerProcess, mosquitto_conf
from healthflow.cli import app as cli
from healthflow.composition.adapters import _service_client
from healthflow.settings import Settings

runner = CliRunner()
NAMESPACE = {
    "HEALTHFLOW_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/hf_bench_x",
    "HEALTHFLOW_ANALYTICS_URL": "postgresql+asyncpg://postgres@127.0.0.1:5432/hf_bench_x_analytics",
    "HEALTHFLOW_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/",
    "HEALTHFLOW_BROKER_EXCHANGE": "hf_bench_x",
    "HEALTHFLOW_CACHE_URL": "redis://127.0.0.1:6379/0",
    "HEALTHFLOW_CACHE_PREFIX": "hf_bench_x:",
    "HEALTHFLOW_HUB_REDIS_PREFIX": "hf_bench_x:hub",
    "HEALTHFLOW_MQTT_URL": "mqtt://127.0.0.1:1883",
    "HEALTHFLOW_MQTT_TOPIC_PREFIX": "hf_bench_x/",
    "HEALTHFLOW_MQTT_CLIENT_ID": "hf_bench_x",
}


def server(tmp_path: Path, topology: str) -> ServerProcess:
    env = {"HEALTHFLOW_DATA_DIR": str(tmp_path), **NAMESPACE}
    backend = Backend("server", "hf_bench_x", tmp_path, env)
    return ServerProcess(backend, topology=topology)  # type: ignore[arg-type]


def test_split_needs_the_server_backend() -> None:
    result = runner.invoke(cli, ["bench", "--topology", "split", "--phases", "vitals-http"])

    assert result.exit_code == 2
    assert "--topology split needs --backend server" in result.output


def test_all_is_one_process_with_the_run_namespace(tmp_path: Path) -> None:
    plan = server(tmp_path, "all").plan()

    assert [role for role, _ in plan] == ["all"]
    env = plan[0][1]
    assert env["HEALTHFLOW_ROLE"] == "all"
    assert {k: env[k] for k in NAMESPACE} == NAMESPACE


def test_split_is_every_role_with_the_run_namespace_the_gateway_last(tmp_path: Path) -> None:
    plan = server(tmp_path, "split").plan()

    assert [role for role, _ in plan] == ["patients", "analytics", "worker", "gateway"]
    ports = {role: int(env["HEALTHFLOW_PORT"]) for role, env in plan}
    assert len(set(ports.values())) == 4
    for role, env in plan:
        assert env["HEALTHFLOW_ROLE"] == role
        # every role in the run's own databases, exchange, Redis and MQTT names
        shared = {k: v for k, v in NAMESPACE.items() if k != "HEALTHFLOW_MQTT_URL"}
        assert {k: env[k] for k in shared} == shared
        # the load generator is one caller: its budgets are lifted in every role
        assert int(env["HEALTHFLOW_RATE_LIMIT_CLIENT_PER_MINUTE"]) >= 10**9
    # one MQTT subscriber: the worker's
    assert {role: env["HEALTHFLOW_MQTT_URL"] for role, env in plan} == {
        "patients": "",
        "analytics": "",
        "worker": NAMESPACE["HEALTHFLOW_MQTT_URL"],
        "gateway": "",
    }


def test_service_clients_drop_idle_connections_before_the_service_closes_them(
    settings: Settings,
) -> None:
    client = _service_client("http://127.0.0.1:1", settings)
    # a request on a connection the service's uvicorn is closing fails and cannot be retried
    expiry = client._transport.limits.keepalive_expiry  # type: ignore[attr-defined]

    assert expiry < uvicorn.Config(app=None).timeout_keep_alive


def test_the_runs_own_broker_is_deploy_mosquitto_conf_on_its_own_port_and_folder(
    tmp_path: Path,
) -> None:
    template = DEPLOY_MOSQUITTO_CONF.read_text()
    conf = mosquitto_conf(template, 18999, tmp_path)
    assert "listener 18999 127.0.0.1" in conf.splitlines()
    assert f"persistence_location {tmp_path}/" in conf.splitlines()
    # everything else as deployments get it: the queue by size, the in-flight window
    kept = [line for line in template.splitlines() if not line.startswith(("listener ", "persis"))]
    assert all(line in conf.splitlines() for line in kept)
    assert "max_queued_messages 0" in kept and "max_inflight_messages 1000" in kept
