"""A real `healthflow serve`: the printed admin token works, anonymous calls and sockets do not,
and nothing it logs during a full run contains the planted patient's name or the token."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from tests.conftest import patient_body

pytestmark = pytest.mark.e2e
HEALTHFLOW = Path(sys.executable).parent / "healthflow"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    def __init__(self, tmp_path: Path, **env: str) -> None:
        self.port = _free_port()
        self.out = tmp_path / "stdout.log"
        self.err = tmp_path / "stderr.log"
        self.proc = subprocess.Popen(
            [str(HEALTHFLOW), "serve", "--port", str(self.port), "--data-dir", str(tmp_path / "d")],
            stdout=self.out.open("wb"),
            stderr=self.err.open("wb"),
            env={**os.environ, "HEALTHFLOW_LOG_LEVEL": "debug", **env},
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.err.read_text()
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("serve did not become ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(tmp_path)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()


async def test_the_printed_admin_token_works_and_nothing_is_open_without_one(
    served: Served,
) -> None:
    match = re.search(r"admin token \(8h, development only\): (\S+)", served.out.read_text())
    assert match, served.output()
    token = match.group(1)
    name = "Ottoline"
    async with httpx.AsyncClient(base_url=served.url) as http:
        assert (await http.get("/api/patients")).status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        created = await http.post("/api/patients", json=patient_body(given_name=name), headers=auth)
        assert created.status_code == 201
        shown = await http.get(f"/api/patients/{created.json()['id']}", headers=auth)
        assert shown.json()["given_name"] == name
        assert (await http.get("/metrics")).status_code == 200

    ws_url = served.url.replace("http", "ws") + "/ws"
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with connect(ws_url):
            pass
    assert refused.value.response.status_code == 401
    async with connect(f"{ws_url}?access_token={token}") as ws:
        assert ws.state.name == "OPEN"

    served.stop()
    logs = served.output()
    assert "healthflow_started" in logs
    assert name not in logs
    assert logs.count(token) == 1  # printed once at start-up, on purpose, never logged


def test_no_development_token_when_an_issuer_is_configured(tmp_path: Path) -> None:
    server = Served(tmp_path, HEALTHFLOW_AUTH_JWKS_URL="http://127.0.0.1:9/keys")
    try:
        server.wait_ready()
    finally:
        server.stop()
    assert "admin token" not in server.output()
    minted = subprocess.run(
        [str(HEALTHFLOW), "token", "--sub", "x", "--role", "admin", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "HEALTHFLOW_AUTH_JWKS_URL": "http://127.0.0.1:9/keys"},
        check=False,
    )
    assert minted.returncode == 2
    assert "refused" in minted.stderr
    assert minted.stdout == ""
