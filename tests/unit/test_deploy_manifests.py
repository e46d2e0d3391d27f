"""Offline checks of Dockerfile, compose and the kustomize base against the code they deploy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from healthflow.app import ANALYTICS_GROUP
from healthflow.composition.adapters import VITALS_GROUP
from healthflow.messaging.rabbitmq import RabbitBus
from healthflow.settings import Settings
from healthflow.vitals.ingest_mqtt import Broker
from tests.conftest import SteppingClock

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
ROLES = ["gateway", "patients", "analytics", "worker"]


def documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def k8s_objects() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return [doc for name in kustomization["resources"] for doc in documents(K8S / name)]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in k8s_objects() if o["kind"] == kind}


def settings_variables() -> set[str]:
    return {f"HEALTHFLOW_{name.upper()}" for name in Settings.model_fields}


def test_every_kustomize_resource_exists_and_parses() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    for name in kustomization["resources"]:
        assert (K8S / name).is_file(), name
    assert all("kind" in o and "metadata" in o for o in k8s_objects())


@pytest.mark.parametrize("role", ROLES)
def test_each_role_has_a_deployment_with_probes_and_a_service(role: str) -> None:
    deployment = of_kind("Deployment")[f"healthflow-{role}"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}

    assert env["HEALTHFLOW_ROLE"] == role
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert f"healthflow-{role}" in of_kind("Service")
    assert role in Settings.model_fields["role"].annotation.__args__  # type: ignore[union-attr]


def test_the_config_map_only_sets_settings_the_code_knows() -> None:
    config = of_kind("ConfigMap")["healthflow-config"]["data"]
    assert set(config) <= settings_variables()
    Settings(**{k.removeprefix("HEALTHFLOW_").lower(): v for k, v in config.items()})


def test_keda_scales_the_worker_on_the_queue_the_bus_declares() -> None:
    config = of_kind("ConfigMap")["healthflow-config"]["data"]
    bus = RabbitBus(
        "amqp://unused",
        clock=SteppingClock(),
        exchange=config["HEALTHFLOW_BROKER_EXCHANGE"],
        retry_delays_s=(1.0,),
        prefetch=1,
    )
    scaled = of_kind("ScaledObject")["healthflow-worker"]
    triggers = scaled["spec"]["triggers"]

    assert scaled["spec"]["scaleTargetRef"]["name"] in of_kind("Deployment")
    assert {t["metadata"]["queueName"] for t in triggers} == {
        bus.queue_names(ANALYTICS_GROUP)[0],
        bus.queue_names(VITALS_GROUP)[0],
    }
    for trigger in triggers:
        assert trigger["type"] == "rabbitmq"
        assert trigger["authenticationRef"]["name"] in of_kind("TriggerAuthentication")


def container_env(deployment: dict[str, Any]) -> dict[str, str]:
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"]}


def test_exactly_one_worker_pod_subscribes_to_mqtt() -> None:
    # one MQTT client id may be connected once: the broker drops the older of two, so the
    # subscriber runs in a single, never-overlapping pod and the scaled workers leave it alone
    deployments = of_kind("Deployment")
    subscriber = deployments["healthflow-worker-mqtt"]
    workers = {
        n: d for n, d in deployments.items() if container_env(d)["HEALTHFLOW_ROLE"] == "worker"
    }

    assert set(workers) == {"healthflow-worker", "healthflow-worker-mqtt"}
    assert subscriber["spec"]["replicas"] == 1
    assert subscriber["spec"]["strategy"]["type"] == "Recreate"
    assert "HEALTHFLOW_MQTT_URL" not in container_env(subscriber)  # from the Secret
    assert container_env(deployments["healthflow-worker"])["HEALTHFLOW_MQTT_URL"] == ""
    scaled = of_kind("ScaledObject")["healthflow-worker"]
    assert scaled["spec"]["scaleTargetRef"]["name"] == "healthflow-worker"


def test_compose_runs_every_role_after_the_migration() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]

    assert services["migrate"]["command"] == ["healthflow", "db", "upgrade"]
    for role in ROLES:
        service = services[role]
        assert service["environment"]["HEALTHFLOW_ROLE"] == role
        assert set(service["environment"]) <= settings_variables()
        assert service["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["gateway"]["ports"] == ["8000:8000"]
    assert not any("ports" in services[r] for r in ROLES if r != "gateway")


def test_compose_gives_the_mqtt_broker_to_the_worker_only() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    url = services["worker"]["environment"]["HEALTHFLOW_MQTT_URL"]

    assert Broker.from_url(url).hostname in services
    assert services["worker"]["depends_on"]["mosquitto"]["condition"] == "service_started"
    assert not any(
        "HEALTHFLOW_MQTT_URL" in services[r]["environment"] for r in ROLES if r != "worker"
    )
    [config] = [v for v in services["mosquitto"]["volumes"] if v.endswith("mosquitto.conf:ro")]
    lines = (ROOT / "deploy" / config.split(":")[0]).read_text().splitlines()
    assert f"listener {Broker.from_url(url).port}" in lines


def test_the_image_serves_healthflow_as_a_non_root_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["healthflow", "serve"]' in dockerfile
    assert "USER healthflow" in dockerfile
