"""CPU per request of the HTTP stack, in process: the real app (as `healthflow serve` builds it,
wrapped in uvicorn's proxy-headers middleware as uvicorn wraps it) driven through ASGI directly,
without sockets, so what is measured is the app's own cost and not the load generator's.

    .venv/bin/python benchmarks/http_stack.py MODE [N] [CONCURRENCY]
    PYTHONPATH=<other worktree>/src .venv/bin/python benchmarks/http_stack.py ...   # other code

Prints one JSON line: CPU microseconds per request of the whole process (`proc_us`, with the
SQLite thread) and of the event loop's thread (`loop_us`), and requests/s. `health` is the floor
(a public route answering from memory); `register` is `POST /api/patients`; `telemetry` posts
5 readings to `POST /api/devices/{id}/telemetry`; `read` is an audited `GET /api/patients/{id}`;
`ward` is a nurse's audited `GET /api/patients?ward=` of her ward's 20 patients (a ward board),
`news2` her audited `GET /api/news2?ward=` of their current scores (one reading each first),
`vitals` her audited `GET /api/patients/{id}/vitals` of one of them.
The background pipeline (outbox, workers, live push) runs as in the server and is included.
Compare code versions interleaved, several rounds each (BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uvloop
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from healthflow.app import build_app, dev_tokens
from healthflow.observability.logs import configure
from healthflow.settings import Settings

ENVIRONMENT = {
    "HEALTHFLOW_LOG_LEVEL": "warning",
    # one load generator is one subject from one address: lift the per-caller budgets, as the
    # bench does
    "HEALTHFLOW_RATE_LIMIT_SUBJECT_PER_MINUTE": str(10**9),
    "HEALTHFLOW_RATE_LIMIT_CLIENT_PER_MINUTE": str(10**9),
    "HEALTHFLOW_MQTT_URL": "",
}

PATIENT = (
    b'{"given_name":"Bench","family_name":"Mark","birth_date":"1970-01-01",'
    b'"sex":"unknown","ward":"BENCH"}'
)
READING = (
    '{{"ts":"{ts}","heart_rate":74,"resp_rate":14,"spo2":97,"systolic_bp":120,'
    '"temperature":36.8,"consciousness":"A"}}'
)
Request = tuple[str, str, list[tuple[bytes, bytes]], bytes]


async def fleet(http: httpx.AsyncClient, count: int) -> list[tuple[str, str, str]]:
    """(device key, device id, patient id) for `count` bound monitors."""
    found = []
    for i in range(count):
        patient = (await http.post("/api/patients", content=PATIENT)).json()
        device = await http.post(
            "/api/devices",
            json={"device_id": f"dev-{i}", "patient_id": patient["id"], "kind": "bedside-monitor"},
        )
        found.append((device.json()["key"], f"dev-{i}", patient["id"]))
    return found


async def scored_once(http: httpx.AsyncClient, devices: list[tuple[str, str, str]]) -> None:
    """One reading from each monitor, waited for until every patient has a NEWS2."""
    ts = datetime.now(UTC).isoformat(timespec="milliseconds")
    for key, device, _ in devices:
        await http.post(
            f"/api/devices/{device}/telemetry",
            content=READING.format(ts=ts),
            headers={"X-Device-Key": key},
        )
    for _ in range(100):
        if len((await http.get("/api/news2?ward=BENCH")).json()["items"]) == len(devices):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the readings were not scored within 10 s")


async def main(mode: str, n: int, concurrency: int) -> dict[str, Any]:
    os.environ.update(ENVIRONMENT)
    settings = Settings(data_dir=tempfile.mkdtemp(prefix="hf-http-stack-"))  # type: ignore[call-arg]
    configure(settings.log_level, settings.log_format)
    app = build_app(settings)
    outer = ProxyHeadersMiddleware(app, trusted_hosts=settings.forwarded_allow_ips)
    minter = dev_tokens(settings)
    assert minter is not None
    hour = timedelta(hours=1)
    token = minter.mint("bench", "admin", now=datetime.now(UTC), ttl=hour)
    auth = (b"authorization", b"Bearer " + token.encode())
    nurse = minter.mint("nurse", "nurse", now=datetime.now(UTC), ttl=hour, ward="BENCH")
    nurse_auth = (b"authorization", b"Bearer " + nurse.encode())
    json_type = (b"content-type", b"application/json")
    stamp = [int(time.time() * 1000) - 10**7]
    async with app.router.lifespan_context(app):
        devices: list[tuple[str, str, str]] = []
        if mode in ("telemetry", "read", "ward", "news2", "vitals"):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://bench",
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            ) as http:
                wide = mode in ("ward", "news2", "vitals")
                devices = await fleet(http, max(concurrency, 20) if wide else concurrency)
                if mode in ("news2", "vitals"):
                    await scored_once(http, devices)
        gc.freeze()  # as `healthflow serve` does
        statuses: dict[int, int] = {}

        def request(i: int) -> Request:
            if mode == "health":
                return "GET", "/health", [], b""
            if mode == "register":
                return "POST", "/api/patients", [auth, json_type], PATIENT
            if mode == "ward":
                return "GET", "/api/patients?ward=BENCH&limit=50", [nurse_auth], b""
            if mode == "news2":
                return "GET", "/api/news2?ward=BENCH", [nurse_auth], b""
            key, device, patient = devices[i % len(devices)]
            if mode == "vitals":
                return "GET", f"/api/patients/{patient}/vitals", [nurse_auth], b""
            if mode == "read":
                return "GET", f"/api/patients/{patient}", [auth], b""
            readings = []
            for _ in range(5):
                stamp[0] += 1
                ts = datetime.fromtimestamp(stamp[0] / 1000, UTC).isoformat(timespec="milliseconds")
                readings.append(READING.format(ts=ts))
            body = ('{"readings":[' + ",".join(readings) + "]}").encode()
            headers = [(b"x-device-key", key.encode()), json_type]
            return "POST", f"/api/devices/{device}/telemetry", headers, body

        async def one(i: int) -> None:
            method, target, headers, body = request(i)
            path, _, query = target.partition("?")
            scope = {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": "1.1",
                "server": ("127.0.0.1", 8000),
                "client": ("127.0.0.1", 40000 + i % 1000),
                "scheme": "http",
                "method": method,
                "root_path": "",
                "path": path,
                "raw_path": path.encode(),
                "query_string": query.encode(),
                "headers": [
                    (b"host", b"127.0.0.1:8000"),
                    (b"content-length", str(len(body)).encode()),
                    *headers,
                ],
                "state": {},
            }
            sent = False

            async def receive() -> dict[str, Any]:
                nonlocal sent
                if not sent:
                    sent = True
                    return {"type": "http.request", "body": body, "more_body": False}
                await asyncio.Event().wait()  # no disconnect while answering
                return {}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses[message["status"]] = statuses.get(message["status"], 0) + 1

            await outer(scope, receive, send)

        async def run(count: int, each: Callable[[int], Awaitable[None]]) -> None:
            numbers = iter(range(count))

            async def worker() -> None:
                for i in numbers:
                    await each(i)

            await asyncio.gather(*(worker() for _ in range(concurrency)))

        await run(min(500, n), one)  # warm up: caches, first-use imports
        statuses.clear()
        cpu, loop_cpu, wall = time.process_time(), time.thread_time(), time.perf_counter()
        await run(n, one)
        cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
        wall = time.perf_counter() - wall
    return {
        "mode": mode,
        "n": n,
        "statuses": statuses,
        "proc_us": round(cpu / n * 1e6, 1),
        "loop_us": round(loop_cpu / n * 1e6, 1),
        "per_s": round(n / wall, 1),
    }


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "register"
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    parallel = int(sys.argv[3]) if len(sys.argv) > 3 else 16
    modes = ("health", "register", "telemetry", "read", "ward", "news2", "vitals")
    if mode not in modes:
        raise SystemExit(f"unknown mode {mode!r}: one of {', '.join(modes)}")
    print(json.dumps(uvloop.run(main(mode, count, parallel))))
