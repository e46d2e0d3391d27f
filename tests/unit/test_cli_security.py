"""`healthflow token` and `healthflow permissions`."""

from __future__ import annotations

from pathlib import Path

import jwt
import pytest
from typer.testing import CliRunner

from healthflow.cli import app as cli
from healthflow.security.rbac import permission_table_markdown

runner = CliRunner()


def test_token_prints_a_dev_token_signed_with_the_data_dir_secret(tmp_path: Path) -> None:
    result = runner.invoke(
        cli,
        [
            "token",
            "--sub",
            "nina",
            "--role",
            "nurse",
            "--ward",
            "A",
            "--ttl",
            "30m",
            "--data-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code == 0, result.output
    secret = (tmp_path / "auth_secret").read_bytes().strip()
    claims = jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"], audience="healthflow")
    assert (claims["sub"], claims["roles"], claims["ward"]) == ("nina", ["nurse"], "A")
    assert claims["exp"] - claims["iat"] == 30 * 60


@pytest.mark.parametrize(
    "args",
    [
        ["--role", "superuser"],
        ["--role", "admin", "--ttl", "forever"],
        ["--role", "admin", "--ttl", "0h"],
    ],
)
def test_token_refuses_bad_options(tmp_path: Path, args: list[str]) -> None:
    result = runner.invoke(cli, ["token", "--sub", "x", *args, "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "eyJ" not in result.output


def test_token_is_refused_when_an_issuer_is_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HEALTHFLOW_AUTH_JWKS_URL", "https://login.example.test/keys")
    result = runner.invoke(
        cli, ["token", "--sub", "x", "--role", "admin", "--data-dir", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "refused" in result.output


def test_permissions_prints_the_table() -> None:
    result = runner.invoke(cli, ["permissions"])
    assert result.exit_code == 0
    assert result.stdout.strip() == permission_table_markdown()
