"""Live push from real `healthflow serve` processes: one on its own, two sharing real Redis."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import eventually, patient_body
from tests.e2e.live import auth_for, serve_process, ws_client
from tests.integration.redis_support import REDIS_URL, needs_redis, redis_prefix

__all__ = ["redis_prefix"]
pytestmark = pytest.mark.e2e


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/ws"


async def test_a_registration_reaches_a_websocket_client_of_a_serve_process(
    tmp_path: Path,
) -> None:
    with serve_process(tmp_path / "data", HEALTHFLOW_HUB_METRICS_INTERVAL_S="0.2") as base:
        async with (
            ws_client(ws_url(base)) as client,
            httpx.AsyncClient(base_url=base, headers=auth_for(base)) as http,
        ):
            await client.subscribe("patients", "metrics")
            created = (await http.post("/api/patients", json=patient_body())).json()

            async def saw_processing_and_metrics() -> bool:
                await client.fence()
                types = {m["type"] for m in client.messages}
                return {"EventProcessed", "MetricsUpdated"} <= types

            await eventually(saw_processing_and_metrics)
            [registered] = [m for m in client.messages if m["type"] == "PatientCreated"]
            assert registered["topic"] == "patients"
            assert registered["data"]["patient_id"] == created["id"]
            assert "given_name" not in registered["data"]  # de-identified, like the events


@needs_redis
async def test_two_instances_share_one_stream_through_redis(
    tmp_path: Path, redis_prefix: str
) -> None:
    env = {
        "HEALTHFLOW_HUB_BACKPLANE_URL": REDIS_URL,
        "HEALTHFLOW_HUB_REDIS_PREFIX": redis_prefix,
        "HEALTHFLOW_HUB_METRICS_INTERVAL_S": "3600",
    }
    with (
        serve_process(tmp_path / "a", **env) as a,
        serve_process(tmp_path / "b", **env) as b,
    ):
        async with (
            httpx.AsyncClient(base_url=a, headers=auth_for(a)) as http_a,
            httpx.AsyncClient(base_url=b, headers=auth_for(b)) as http_b,
            ws_client(ws_url(a)) as on_a,
            ws_client(ws_url(b)) as on_b,
        ):
            await on_a.subscribe("patients")
            await on_b.subscribe("patients")
            ids = []
            for http in (http_a, http_b, http_a, http_b):
                ids.append((await http.post("/api/patients", json=patient_body())).json()["id"])

            async def both_saw_all_four() -> bool:
                return len(await on_a.fence()) >= 4 and len(await on_b.fence()) >= 4

            await eventually(both_saw_all_four)
            got_a, got_b = on_a.messages, on_b.messages
            assert got_a == got_b
            assert sorted(m["data"]["patient_id"] for m in got_a) == sorted(ids)
            seqs = [m["seq"] for m in got_a]
            assert seqs == sorted(set(seqs))
            # B's client drops; two more are registered on A; it resumes on A from its last seq
            on_b.ws.transport.abort()
            last_seen = got_b[-1]["seq"]
            for _ in range(2):
                ids.append((await http_a.post("/api/patients", json=patient_body())).json()["id"])

            async def a_published_both() -> bool:
                return len(await on_a.fence()) == 6

            await eventually(a_published_both)
        async with ws_client(ws_url(a)) as moved:
            await moved.send(op="resume", after=last_seen, topics=["patients"])
            resumed = await moved.next_control("Resumed")
            assert resumed["replayed"] == 2
            missed = await moved.fence()
        assert missed == got_a[4:6]
        assert sorted(m["data"]["patient_id"] for m in missed) == sorted(ids[4:])
