"""One permission table: it covers exactly the app's routes, and README prints it as it is."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from healthflow.security.rbac import PERMISSIONS, Role, declared_routes, permission_table_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_route_has_an_entry_and_every_entry_a_route(app: FastAPI) -> None:
    served = set(declared_routes(app))
    assert served - set(PERMISSIONS) == set(), "routes without a permission entry"
    assert set(PERMISSIONS) - served == set(), "permission entries for routes that do not exist"


def test_every_operation_in_the_openapi_schema_has_an_entry(app: FastAPI) -> None:
    schema = app.openapi()
    operations = {
        (method.upper(), path)
        for path, ops in schema["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    }
    assert operations
    assert operations - set(PERMISSIONS) == set()


def test_openapi_documents_the_bearer_scheme_and_roles(app: FastAPI) -> None:
    schema = app.openapi()
    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    operation = schema["paths"]["/api/audit"]["get"]
    assert operation["security"] == [{"bearer": []}]
    assert operation["x-roles"] == ["admin"]
    assert "security" not in schema["paths"]["/health"]["get"]


def test_admin_may_call_every_protected_route() -> None:
    for key, rule in PERMISSIONS.items():
        assert rule.public or Role.ADMIN in rule.roles, key


def test_the_analyst_reaches_no_route_that_returns_patient_identifiers() -> None:
    for (method, path), rule in PERMISSIONS.items():
        if Role.ANALYST in rule.roles:
            assert rule.resource != "patient", (method, path)
            assert "{patient_id}" not in path, (method, path)


def test_readme_prints_the_table_from_the_code() -> None:
    assert permission_table_markdown() in README.read_text()
