"""Vitals throughput probe against a running server: readings/s accepted and stored-and-scored.

Registers P patients with one monitor each, then C concurrent posters send batches of B readings
(random device each time) for S seconds, and waits until every accepted reading was assessed
(or stored as late). Prints accepted/s, processed/s and the server's CPU per processed reading.

    python benchmarks/vitals_probe.py http://127.0.0.1:8000 TOKEN --patients 20 --batch 1000 \
        --posters 4 --seconds 10 --server-pid PID

Used by benchmarks/before_after.sh; `healthflow bench` is the full benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import psutil

PATIENT = {
    "given_name": "V",
    "family_name": "L",
    "birth_date": "1960-01-01",
    "sex": "unknown",
    "ward": "PROBE",
}
SCORED = ("healthflow_news2_assessments_total", "healthflow_telemetry_late_readings_total")


async def processed(http: httpx.AsyncClient) -> float:
    lines = (await http.get("/metrics")).text.splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(SCORED))


async def main(args: argparse.Namespace) -> None:
    headers = {"Authorization": f"Bearer {args.token}"}
    async with httpx.AsyncClient(base_url=args.url, headers=headers, timeout=60) as http:
        devices = []
        for _ in range(args.patients):
            patient_id = (await http.post("/api/patients", json=PATIENT)).json()["id"]
            body = {"device_id": f"mon-{patient_id[-12:]}", "patient_id": patient_id, "kind": "m"}
            device = (await http.post("/api/devices", json=body)).json()
            devices.append((device["device_id"], device["key"]))
        base = datetime.now(UTC) - timedelta(minutes=30)
        next_reading = dict.fromkeys((d for d, _ in devices), 0)
        server = psutil.Process(args.server_pid) if args.server_pid else None
        cpu_before = sum(server.cpu_times()[:2]) if server else 0.0
        done_before = await processed(http)
        accepted = refused = 0
        started = time.perf_counter()
        deadline = started + args.seconds

        async def poster() -> None:
            nonlocal accepted, refused
            while time.perf_counter() < deadline:
                device_id, key = random.choice(devices)
                first = next_reading[device_id]
                next_reading[device_id] += args.batch
                readings = [
                    {
                        "ts": (base + timedelta(milliseconds=10 * (first + j))).isoformat(),
                        "heart_rate": 70 + j % 20,
                        "resp_rate": 16,
                        "spo2": 97,
                        "systolic_bp": 120,
                        "temperature": 37.0,
                        "consciousness": "A",
                        "on_oxygen": False,
                    }
                    for j in range(args.batch)
                ]
                response = await http.post(
                    f"/api/devices/{device_id}/telemetry",
                    content=orjson.dumps({"readings": readings}),
                    headers={"X-Device-Key": key, "Content-Type": "application/json"},
                )
                if response.status_code == 202:
                    accepted += response.json()["accepted"]
                else:  # 503 + Retry-After: the intake pushes back
                    refused += 1
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(poster() for _ in range(args.posters)))
        ingest_s = time.perf_counter() - started
        while (done := await processed(http) - done_before) < accepted:
            if time.perf_counter() - started > args.seconds + 120:
                break
            await asyncio.sleep(0.2)
        total_s = time.perf_counter() - started
        cpu = sum(server.cpu_times()[:2]) - cpu_before if server else 0.0
        print(
            f"accepted={accepted} pushed_back={refused} ingest={accepted / ingest_s:.0f}/s "
            f"processed={done:.0f} end_to_end={done / total_s:.0f}/s "
            f"server_cpu_per_reading_us={cpu / max(done, 1) * 1e6:.0f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("token")
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--posters", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--server-pid", type=int, default=0)
    asyncio.run(main(parser.parse_args()))
