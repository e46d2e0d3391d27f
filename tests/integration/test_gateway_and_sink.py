"""The gateway proxy, the services' HTTP transport and the worker's HTTP analytics client against
real sockets that misbehave: nothing listening, a server that never answers, a server that
answers garbage or hangs up, a 5xx service. The failing upstreams are reached through
`service_client`, the transport every role runs with."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from healthflow.analytics.client import AnalyticsRefused, AnalyticsUnavailable, HttpAnalyticsSink
from healthflow.circuit_breaker import CircuitBreaker, CircuitOpen
from healthflow.gateway import proxy
from healthflow.gateway.health import GatewayReadiness
from healthflow.http import install_error_handlers
from healthflow.ids import uuid7
from healthflow.messaging.events import CloudEvent
from healthflow.patients import events as patient_events
from healthflow.patients.domain import NewPatient, Patient, Sex
from healthflow.ports import Check
from healthflow.service_calls import service_client

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def client_of(base_url: str, *, timeout_s: float = 2.0) -> httpx.AsyncClient:
    return service_client(base_url, timeout_s=timeout_s, max_connections=4, keepalive_s=2.0)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def silent_server() -> AsyncIterator[str]:
    """Accepts connections and never answers."""
    held: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    for writer in held:
        writer.close()
    server.close()


@pytest.fixture
async def garbage_server() -> AsyncIterator[str]:
    """Answers every request with bytes that are not HTTP, then hangs up."""

    async def babble(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"\x00\x01 not http at all\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(babble, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.close()


def echo_service() -> FastAPI:
    """A stand-in service that reports what reached it."""
    service = FastAPI()

    @service.api_route("/api/patients/{rest:path}", methods=["GET", "POST", "PUT"])
    async def echo(request: Request, rest: str) -> JSONResponse:
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "query": request.url.query,
                "body": (await request.body()).decode(),
                "request_id": request.headers.get("x-request-id"),
                "forwarded_for": request.headers.get("x-forwarded-for"),
            },
            status_code=201 if request.method == "POST" else 200,
            headers={"location": "/api/patients/abc", "x-service": "echo"},
        )

    return service


def gateway_app(patients: httpx.AsyncClient, analytics: httpx.AsyncClient) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    to_patients = proxy.Upstream("patients", patients)
    to_analytics = proxy.Upstream("analytics", analytics)
    forwards = {
        ("GET", "/api/patients"): to_patients,
        ("GET", "/api/patients/{patient_id}"): to_patients,
        ("POST", "/api/patients/{patient_id}/status"): to_patients,
        ("GET", "/api/analytics/dashboard"): to_analytics,
    }
    app.include_router(proxy.router(forwards))
    return app


async def call(app: FastAPI, method: str, path: str, **kwargs: object) -> httpx.Response:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.request(method, path, **kwargs)  # type: ignore[arg-type]


async def test_the_gateway_forwards_method_path_query_body_and_headers() -> None:
    echo = httpx.AsyncClient(transport=httpx.ASGITransport(app=echo_service()), base_url="http://p")
    app = gateway_app(echo, httpx.AsyncClient(base_url=f"http://127.0.0.1:{closed_port()}"))

    answer = await call(
        app,
        "POST",
        "/api/patients/x/status?ward=ICU&ward=ED",
        content=b'{"status":"waiting"}',
        headers={"x-request-id": "req-1", "content-type": "application/json"},
    )

    assert answer.status_code == 201
    assert answer.headers["location"] == "/api/patients/abc"
    assert answer.headers["x-service"] == "echo"
    assert answer.json() == {
        "method": "POST",
        "path": "/api/patients/x/status",
        "query": "ward=ICU&ward=ED",
        "body": '{"status":"waiting"}',
        "request_id": "req-1",
        "forwarded_for": "127.0.0.1",
    }


async def test_a_service_nobody_listens_on_gives_503_problem() -> None:
    down = client_of(f"http://127.0.0.1:{closed_port()}")
    answer = await call(gateway_app(down, down), "GET", "/api/analytics/dashboard")

    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "5"
    assert answer.json()["type"] == "/problems/upstream-unavailable"
    assert "analytics" in answer.json()["detail"]


async def test_a_service_that_never_answers_gives_504_problem(silent_server: str) -> None:
    silent = client_of(silent_server, timeout_s=0.3)
    answer = await call(gateway_app(silent, silent), "GET", "/api/patients")

    assert answer.status_code == 504
    assert answer.json()["type"] == "/problems/upstream-timeout"


async def test_a_service_that_answers_garbage_gives_502_problem(garbage_server: str) -> None:
    broken = client_of(garbage_server)
    answer = await call(gateway_app(broken, broken), "GET", "/api/patients/1")

    assert answer.status_code == 502
    assert answer.json()["type"] == "/problems/bad-gateway"


@pytest.fixture
async def hang_up_server() -> AsyncIterator[str]:
    """Reads the request, then closes the connection without a word."""

    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.close()


async def test_a_service_that_hangs_up_gives_502_problem(hang_up_server: str) -> None:
    gone = client_of(hang_up_server)
    answer = await call(gateway_app(gone, gone), "GET", "/api/patients/1")

    assert answer.status_code == 502
    assert answer.json()["type"] == "/problems/bad-gateway"


@pytest.fixture
async def http_server() -> AsyncIterator[tuple[str, list[bytes], list[int]]]:
    """A keep-alive HTTP/1.1 server on a real socket: records each request it reads (head and
    body) and each connection it accepts, and answers 201 with a JSON body and a header."""
    requests: list[bytes] = []
    connections: list[int] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                requests.append(head + await reader.readexactly(length))
                body = b'{"id":"abc"}'
                writer.write(
                    b"HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n"
                    b"x-service: echo\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except asyncio.IncompleteReadError:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}", requests, connections
    server.close()


async def test_the_service_transport_sends_and_answers_over_one_kept_connection(
    http_server: tuple[str, list[bytes], list[int]],
) -> None:
    url, requests, connections = http_server
    async with client_of(url) as client:
        answers = [
            await client.post(
                "/api/patients",
                params={"ward": "ICU"},
                content=b'{"n":%d}' % n,
                headers={"x-request-id": f"req-{n}", "content-type": "application/json"},
            )
            for n in range(3)
        ]

    assert [(a.status_code, a.json(), a.headers["x-service"]) for a in answers] == [
        (201, {"id": "abc"}, "echo")
    ] * 3
    assert [r.split(b"\r\n", 1)[0] for r in requests] == [
        b"POST /api/patients?ward=ICU HTTP/1.1"
    ] * 3
    assert [r.rsplit(b"\r\n\r\n", 1)[1] for r in requests] == [b'{"n":0}', b'{"n":1}', b'{"n":2}']
    assert all(b"x-request-id: req-" in r.lower() for r in requests)
    assert len(connections) == 1  # kept alive and reused


@pytest.mark.parametrize(
    ("server", "error"),
    [
        (None, httpx.ConnectError),
        ("silent_server", httpx.ReadTimeout),
        ("garbage_server", httpx.RemoteProtocolError),
        ("hang_up_server", httpx.RemoteProtocolError),
    ],
)
async def test_the_service_transport_fails_with_the_httpx_error_for_what_went_wrong(
    silent_server: str,
    garbage_server: str,
    hang_up_server: str,
    server: str | None,
    error: type[httpx.HTTPError],
) -> None:
    urls = {
        "silent_server": silent_server,
        "garbage_server": garbage_server,
        "hang_up_server": hang_up_server,
        None: f"http://127.0.0.1:{closed_port()}",
    }
    url = urls[server]
    async with client_of(url, timeout_s=0.3) as client:
        with pytest.raises(error):
            await client.get("/api/patients")


async def test_gateway_readiness_is_the_worst_of_its_services(silent_server: str) -> None:
    healthy_app = FastAPI()

    @healthy_app.get("/health/ready")
    async def ready() -> dict[str, object]:
        return {"status": "degraded", "checks": {"outbox": {"pending": 9}}}

    degraded = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=healthy_app), base_url="http://a"
    )
    silent = client_of(silent_server, timeout_s=0.3)

    async def bus_up() -> Check:
        return Check(True, {"backend": "rabbitmq"})

    only_degraded = GatewayReadiness([proxy.Upstream("analytics", degraded)], local={"bus": bus_up})
    with_silent = GatewayReadiness(
        [proxy.Upstream("analytics", degraded), proxy.Upstream("patients", silent)]
    )

    status, checks = await only_degraded.report()
    assert status == "degraded"
    assert checks["analytics"]["checks"] == {"outbox": {"pending": 9}}
    status, checks = await with_silent.report()
    assert status == "unhealthy"
    assert checks["patients"]["status"] == "down"


def registration() -> CloudEvent:
    new = NewPatient("Ada", "Lovelace", date(1980, 1, 1), Sex.FEMALE, "ICU")
    return patient_events.created(Patient.register(new, patient_id=uuid7(T0), mrn="M1", at=T0))


def analytics_stub(answers: list[int]) -> tuple[FastAPI, list[str]]:
    """An analytics stand-in that answers the given status codes in turn, then 200."""
    app = FastAPI()
    seen: list[str] = []

    @app.post("/api/analytics/events")
    async def record(request: Request) -> JSONResponse:
        body = await request.json()
        seen.append(body["id"])
        status = answers.pop(0) if answers else 200
        return JSONResponse({"event_id": body["id"], "duplicate": len(seen) > 1}, status)

    return app, seen


def sink_for(app: FastAPI, breaker: CircuitBreaker, attempts: int = 3) -> HttpAnalyticsSink:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a")
    return HttpAnalyticsSink(client, breaker, attempts=attempts, max_wait_s=0.01)


async def test_the_sink_retries_a_5xx_and_then_delivers() -> None:
    app, seen = analytics_stub([503, 500])
    breaker = CircuitBreaker("analytics", failures=5, reset_s=60)

    first = await sink_for(app, breaker).record(registration())

    assert len(seen) == 3
    assert first is False  # the stub counts earlier attempts as deliveries: a duplicate
    assert breaker.state == "closed"


async def test_the_sink_retries_a_rate_limited_call_without_opening_the_circuit() -> None:
    app, seen = analytics_stub([429, 429])
    breaker = CircuitBreaker("analytics", failures=2, reset_s=60)

    await sink_for(app, breaker).record(registration())

    assert len(seen) == 3
    assert breaker.state == "closed"  # the service answered: it is up, only busy


async def test_the_sink_does_not_retry_a_4xx() -> None:
    app, seen = analytics_stub([422])
    with pytest.raises(AnalyticsRefused):
        await sink_for(app, CircuitBreaker("analytics", failures=5, reset_s=60)).record(
            registration()
        )
    assert len(seen) == 1


async def test_the_sink_gives_up_after_its_attempts() -> None:
    app, seen = analytics_stub([500] * 10)
    with pytest.raises(AnalyticsUnavailable):
        await sink_for(app, CircuitBreaker("analytics", failures=50, reset_s=60)).record(
            registration()
        )
    assert len(seen) == 3


async def test_an_open_circuit_refuses_calls_without_reaching_the_service() -> None:
    app, seen = analytics_stub([500] * 10)
    breaker = CircuitBreaker("analytics", failures=2, reset_s=60)
    sink = sink_for(app, breaker, attempts=2)
    with pytest.raises(AnalyticsUnavailable):
        await sink.record(registration())

    with pytest.raises(CircuitOpen):
        await sink.record(registration())

    assert len(seen) == 2
    assert breaker.state == "open"


class ManualClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_circuit_lets_one_probe_through_after_its_reset_time() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("analytics", failures=1, reset_s=10, clock=clock)
    breaker.failed()
    with pytest.raises(CircuitOpen):
        breaker.before_call()

    clock.now = 10.0
    breaker.before_call()  # the probe
    with pytest.raises(CircuitOpen):
        breaker.before_call()  # a second caller while the probe is out
    breaker.succeeded()

    assert breaker.state == "closed"
    breaker.before_call()


def test_a_failed_probe_opens_the_circuit_again() -> None:
    clock = ManualClock()
    breaker = CircuitBreaker("analytics", failures=3, reset_s=10, clock=clock)
    for _ in range(3):
        breaker.failed()
    clock.now = 10.0
    breaker.before_call()
    breaker.failed()

    assert breaker.state == "open"
    with pytest.raises(CircuitOpen):
        breaker.before_call()
