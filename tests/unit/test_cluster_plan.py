"""`healthflow cluster` gives each role its port, the others' URLs and the parent's settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from unittest import mock

import pytest

from healthflow.app import build_app, cluster_plan
from healthflow.settings import Settings


def test_each_role_gets_its_port_and_every_service_url(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(port=9100, host="10.0.0.5", broker_url="amqp://h/")
    plan = dict(cluster_plan(settings))

    assert list(plan) == ["patients", "analytics", "worker", "gateway"]
    assert {r: e["HEALTHFLOW_PORT"] for r, e in plan.items()} == {
        "gateway": "9100",
        "patients": "9101",
        "analytics": "9102",
        "worker": "9103",
    }
    for role, env in plan.items():
        assert env["HEALTHFLOW_ROLE"] == role
        assert env["HEALTHFLOW_PATIENTS_SERVICE_URL"] == "http://10.0.0.5:9101"
        assert env["HEALTHFLOW_ANALYTICS_SERVICE_URL"] == "http://10.0.0.5:9102"


def test_only_the_worker_gets_the_mqtt_broker(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(broker_url="amqp://h/", mqtt_url="mqtts://broker:8883")
    plan = dict(cluster_plan(settings))

    assert {role: env["HEALTHFLOW_MQTT_URL"] for role, env in plan.items()} == {
        "patients": "",
        "analytics": "",
        "worker": "mqtts://broker:8883",
        "gateway": "",
    }
    with mock.patch.dict(os.environ, plan["worker"], clear=True):
        assert Settings().mqtt_url == "mqtts://broker:8883"  # type: ignore[call-arg]


def test_a_child_reads_back_exactly_the_parents_settings(
    make_settings: Callable[..., Settings],
) -> None:
    parent = make_settings(broker_url="amqp://h/", bus_retry_delays_s=(0.5, 2.0), worker_count=3)
    env = dict(cluster_plan(parent))["worker"]

    with mock.patch.dict(os.environ, env, clear=True):
        child = Settings()  # type: ignore[call-arg]

    assert child.role == "worker"
    assert child.bus_retry_delays_s == (0.5, 2.0)
    assert child.worker_count == 3
    assert child.database_url == parent.database_url
    assert child.data_dir == parent.data_dir


@pytest.mark.parametrize("role", ["gateway", "patients", "analytics", "worker"])
def test_a_separate_role_without_a_shared_broker_is_refused(
    role: str, make_settings: Callable[..., Settings]
) -> None:
    with pytest.raises(ValueError, match="needs a shared broker"):
        build_app(make_settings(role=role))


@pytest.mark.parametrize(
    ("field", "url"), [("broker_url", "kafka://x"), ("cache_url", "memcached://x")]
)
def test_an_unknown_backend_url_is_refused(
    field: str, url: str, make_settings: Callable[..., Settings]
) -> None:
    with pytest.raises(ValueError, match="unsupported"):
        build_app(make_settings(**{field: url}))
