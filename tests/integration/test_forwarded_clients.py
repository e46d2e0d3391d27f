"""Behind the gateway, each caller keeps its own address: a real `healthflow serve` believes the
X-Forwarded-For of the proxies in HEALTHFLOW_FORWARDED_ALLOW_IPS, and no one else's."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from tests.e2e.live import serve_process


def serving(tmp_path: Path, forwarded_allow_ips: str) -> AbstractContextManager[str]:
    """A real `healthflow serve` (uvicorn's proxy-header handling is the point), two requests
    a minute per client address."""
    return serve_process(
        tmp_path / forwarded_allow_ips.replace("*", "any").replace("/", "-"),
        HEALTHFLOW_RATE_LIMIT_CLIENT_PER_MINUTE="2",
        HEALTHFLOW_FORWARDED_ALLOW_IPS=forwarded_allow_ips,
        HEALTHFLOW_MQTT_URL="",
    )


def statuses(url: str, forwarded_for: str, count: int) -> list[int]:
    headers = {"X-Forwarded-For": forwarded_for}
    return [httpx.get(f"{url}/api/patients", headers=headers).status_code for _ in range(count)]


@pytest.mark.parametrize("trusted", ["127.0.0.1", "127.0.0.0/8"])
def test_a_trusted_proxys_callers_each_have_their_own_budget(tmp_path: Path, trusted: str) -> None:
    with serving(tmp_path, trusted) as url:
        # two callers behind one proxy (the test plays the gateway, from 127.0.0.1)
        assert statuses(url, "10.1.0.7", 3) == [401, 401, 429]
        assert statuses(url, "10.1.0.8", 2) == [401, 401]
        # a caller cannot escape its budget by sending its own X-Forwarded-For first:
        # the address the proxy added (the rightmost untrusted one) is the caller's
        assert statuses(url, "203.0.113.9, 10.1.0.7", 1) == [429]


def test_an_untrusted_senders_forwarded_for_is_ignored(tmp_path: Path) -> None:
    with serving(tmp_path, "192.0.2.1") as url:
        # not from a trusted proxy: every request is the sender's own, whatever it claims
        assert statuses(url, "10.1.0.7", 2) == [401, 401]
        assert statuses(url, "10.1.0.8", 1) == [429]
