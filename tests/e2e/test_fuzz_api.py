"""Schemathesis fuzzes a real `healthflow serve` from its own OpenAPI schema, as admin: no 5xx,
and every documented response matches its schema. Bounded: a fixed number of examples."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.e2e.test_secure_serve import Served

pytestmark = pytest.mark.e2e
MAX_EXAMPLES = 30


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    served = Served(
        tmp,
        HEALTHFLOW_LOG_LEVEL="warning",
        HEALTHFLOW_RATE_LIMIT_SUBJECT_PER_MINUTE="1000000",
        HEALTHFLOW_RATE_LIMIT_CLIENT_PER_MINUTE="1000000",
    )
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()


@pytest.fixture(scope="module")
def admin_token(server: Served) -> str:
    match = re.search(r"admin token \(8h, development only\): (\S+)", server.out.read_text())
    assert match
    return match.group(1)


@pytest.fixture(scope="module")
def api_schema(server: Served) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json")


# Driven through Hypothesis directly: schemathesis' pytest fixture integration does not work
# with the pytest this project uses.
def test_no_server_errors_and_responses_match_the_schema(
    api_schema: schemathesis.BaseSchema, admin_token: str
) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 8
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call(headers={"Authorization": f"Bearer {admin_token}"}, timeout=30)
            assert response.status_code < 500, (case.method, case.path, response.text)
            case.validate_response(response, checks=[response_schema_conformance])

        fuzz()
