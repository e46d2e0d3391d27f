"""Token verification: every way a token can be wrong is refused, dev (HS256) and OIDC (JWKS)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from healthflow.security.tokens import (
    DevTokens,
    IdentityProviderUnavailable,
    InvalidToken,
    JwksTokens,
    Principal,
    RememberedTokens,
    parse_ttl,
    principal_from_claims,
)

# Fixed at import, so every time below is hours away from it: the checks hold however late in a
# long suite these tests run, and whatever leeway the verifier allows.
NOW = datetime.now(UTC)
ISSUER = "https://login.example.test/tenant/v2.0"
AUDIENCE = "api://healthflow"


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "dr-who",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": NOW,
        "nbf": NOW - timedelta(seconds=5),
        "exp": NOW + timedelta(days=1),
        "roles": ["clinician"],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


# --- development tokens (HS256) -------------------------------------------------------------

SECRET = b"s" * 43
dev = DevTokens(SECRET, issuer=ISSUER, audience=AUDIENCE, leeway_s=0)


async def test_a_minted_dev_token_verifies_to_its_principal() -> None:
    token = dev.mint("nina", "nurse", now=NOW, ttl=timedelta(hours=1), ward="A")
    principal = await dev.verify(token)
    assert (principal.subject, principal.roles, principal.ward) == ("nina", {"nurse"}, "A")


@pytest.mark.parametrize(
    ("name", "token"),
    [
        ("expired", jwt.encode(claims(exp=NOW - timedelta(hours=1)), SECRET, "HS256")),
        ("not yet valid", jwt.encode(claims(nbf=NOW + timedelta(days=1)), SECRET, "HS256")),
        ("wrong issuer", jwt.encode(claims(iss="https://evil.test"), SECRET, "HS256")),
        ("wrong audience", jwt.encode(claims(aud="someone-else"), SECRET, "HS256")),
        ("no expiry", jwt.encode(claims(exp=None), SECRET, "HS256")),
        ("no subject", jwt.encode(claims(sub=None), SECRET, "HS256")),
        ("wrong key", jwt.encode(claims(), b"x" * 43, "HS256")),
        ("alg none", jwt.encode(claims(), None, "none")),
        ("garbage", "not.a.token"),
    ],
)
async def test_dev_tokens_refuse(name: str, token: str) -> None:
    with pytest.raises(InvalidToken):
        await dev.verify(token)


async def test_a_tampered_dev_token_is_refused() -> None:
    token = dev.mint("nina", "nurse", now=NOW, ttl=timedelta(hours=1))
    header, _payload, signature = token.split(".")
    forged = jwt.utils.base64url_encode(
        json.dumps(
            {**jwt.decode(token, options={"verify_signature": False}), "roles": ["admin"]}
        ).encode()
    ).decode()
    with pytest.raises(InvalidToken):
        await dev.verify(f"{header}.{forged}.{signature}")


def test_roles_are_read_from_a_dotted_claim_path_as_keycloak_nests_them() -> None:
    principal = principal_from_claims(
        {"sub": "k", "realm_access": {"roles": ["nurse", 7]}}, "realm_access.roles"
    )
    assert principal.roles == {"nurse"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [("90s", timedelta(seconds=90)), ("30m", timedelta(minutes=30)), ("8h", timedelta(hours=8))],
)
def test_ttl_parses(text: str, expected: timedelta) -> None:
    assert parse_ttl(text) == expected


@pytest.mark.parametrize("text", ["", "8", "0h", "8x", "-1h", "h"])
def test_ttl_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="ttl"):
        parse_ttl(text)


# --- OIDC tokens against a JWKS served over real HTTP on this machine ------------------------


class JwksServer:
    """A tiny issuer: serves whatever key set it currently holds at /keys, counts fetches."""

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.fetches = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                body = json.dumps({"keys": server.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/keys"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, key: Any, kid: str) -> None:
        jwk = json.loads(
            jwt.algorithms.get_default_algorithms()[_alg(key)].to_jwk(key.public_key())
        )
        self.keys.append({**jwk, "kid": kid, "use": "sig"})

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _alg(key: Any) -> str:
    return "ES256" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS256"


def sign(key: Any, kid: str, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), key, algorithm=_alg(key), headers={"kid": kid})


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def issuer() -> Iterator[JwksServer]:
    server = JwksServer()
    server.publish(RSA_KEY, "rsa-1")
    server.publish(EC_KEY, "ec-1")
    yield server
    server.close()


@pytest.fixture
def oidc(issuer: JwksServer) -> JwksTokens:
    return JwksTokens(issuer.url, issuer=ISSUER, audience=AUDIENCE, leeway_s=0, cache_s=300)


@pytest.mark.parametrize(("key", "kid"), [(RSA_KEY, "rsa-1"), (EC_KEY, "ec-1")])
async def test_rs256_and_es256_tokens_from_the_issuer_verify(
    oidc: JwksTokens, key: Any, kid: str
) -> None:
    principal = await oidc.verify(sign(key, kid, ward="ICU"))
    assert (principal.subject, principal.roles, principal.ward) == ("dr-who", {"clinician"}, "ICU")


@pytest.mark.parametrize(
    ("name", "overrides"),
    [
        ("expired", {"exp": NOW - timedelta(hours=1)}),
        ("not yet valid", {"nbf": NOW + timedelta(days=1)}),
        ("wrong issuer", {"iss": "https://evil.test"}),
        ("wrong audience", {"aud": "api://other"}),
    ],
)
async def test_oidc_tokens_with_bad_claims_are_refused(
    oidc: JwksTokens, name: str, overrides: dict[str, Any]
) -> None:
    with pytest.raises(InvalidToken):
        await oidc.verify(sign(RSA_KEY, "rsa-1", **overrides))


async def test_a_token_signed_by_a_key_the_issuer_does_not_publish_is_refused(
    oidc: JwksTokens,
) -> None:
    with pytest.raises(InvalidToken):
        await oidc.verify(sign(OTHER_RSA, "rsa-1"))


async def test_a_tampered_oidc_token_is_refused(oidc: JwksTokens) -> None:
    header, _, signature = sign(RSA_KEY, "rsa-1").split(".")
    payload = jwt.utils.base64url_encode(json.dumps(claims(roles=["admin"]), default=str).encode())
    with pytest.raises(InvalidToken):
        await oidc.verify(f"{header}.{payload.decode()}.{signature}")


async def test_alg_none_and_hmac_with_the_public_key_are_refused(oidc: JwksTokens) -> None:
    unsigned = jwt.encode(claims(), None, algorithm="none", headers={"kid": "rsa-1"})
    with pytest.raises(InvalidToken):
        await oidc.verify(unsigned)
    hmac_token = jwt.encode(
        claims(), b"public-key-used-as-an-hmac-secret!!", "HS256", headers={"kid": "rsa-1"}
    )
    with pytest.raises(InvalidToken):
        await oidc.verify(hmac_token)


async def test_keys_are_cached_and_a_new_key_id_is_fetched_without_a_restart(
    issuer: JwksServer,
) -> None:
    oidc = JwksTokens(issuer.url, issuer=ISSUER, audience=AUDIENCE, refetch_cooldown_s=0)
    await oidc.verify(sign(RSA_KEY, "rsa-1"))
    await oidc.verify(sign(EC_KEY, "ec-1"))
    assert issuer.fetches == 1
    issuer.publish(OTHER_RSA, "rsa-2")  # the issuer rolls a new key
    principal = await oidc.verify(sign(OTHER_RSA, "rsa-2"))
    assert principal.subject == "dr-who"
    assert issuer.fetches == 2


async def test_made_up_key_ids_do_not_trigger_a_fetch_each(
    issuer: JwksServer, oidc: JwksTokens
) -> None:
    await oidc.verify(sign(RSA_KEY, "rsa-1"))
    for n in range(5):
        with pytest.raises(InvalidToken):
            await oidc.verify(sign(OTHER_RSA, f"made-up-{n}"))
    assert issuer.fetches <= 2


async def test_an_unreachable_issuer_is_unavailable_not_an_invalid_token(
    issuer: JwksServer,
) -> None:
    url = issuer.url
    issuer.close()
    oidc = JwksTokens(url, issuer=ISSUER, audience=AUDIENCE, timeout_s=1)
    with pytest.raises(IdentityProviderUnavailable):
        await oidc.verify(sign(RSA_KEY, "rsa-1"))


def test_service_credentials_sign_each_call_with_a_service_token() -> None:
    import httpx

    from healthflow.security.tokens import ServiceCredentials

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"].removeprefix("Bearer "))
        return httpx.Response(200)

    auth = ServiceCredentials(dev, subject="healthflow-worker")
    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as http:
        http.get("http://analytics/api/analytics/events")
        http.get("http://analytics/api/analytics/events")
    assert seen[0] == seen[1]  # reused until close to expiry
    claims = jwt.decode(seen[0], SECRET, algorithms=["HS256"], audience=AUDIENCE)
    assert (claims["sub"], claims["roles"]) == ("healthflow-worker", ["service"])


# --- remembered tokens ------------------------------------------------------------------------


class CountingVerifier:
    """Accepts tokens named "good-<exp>" (exp in Unix seconds) and counts every check."""

    def __init__(self) -> None:
        self.checks = 0

    async def verify(self, token: str) -> Principal:
        self.checks += 1
        if not token.startswith("good-"):
            raise InvalidToken("bad")
        return Principal("nina", frozenset({"nurse"}), None, float(token.removeprefix("good-")))


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


async def test_a_remembered_token_is_checked_once_while_it_is_valid() -> None:
    inner, clock = CountingVerifier(), Clock(1000.0)
    tokens = RememberedTokens(inner, remember_s=60, now=clock)
    first = await tokens.verify("good-5000")
    clock.at = 1059.0
    again = await tokens.verify("good-5000")
    assert (first, again, inner.checks) == (again, first, 1)


async def test_a_remembered_token_is_checked_again_after_remember_s_and_after_its_exp() -> None:
    inner, clock = CountingVerifier(), Clock(1000.0)
    tokens = RememberedTokens(inner, remember_s=60, now=clock)
    await tokens.verify("good-5000")
    clock.at = 1060.0
    await tokens.verify("good-5000")
    assert inner.checks == 2
    await tokens.verify("good-1070")  # expires before remember_s runs out
    clock.at = 1070.0
    await tokens.verify("good-1070")
    assert inner.checks == 4


async def test_a_refused_token_is_never_remembered() -> None:
    inner = CountingVerifier()
    tokens = RememberedTokens(inner, now=Clock(1000.0))
    for _ in range(2):
        with pytest.raises(InvalidToken):
            await tokens.verify("forged")
    assert inner.checks == 2


async def test_remembered_tokens_keep_at_most_capacity_dropping_the_least_recently_used() -> None:
    inner = CountingVerifier()
    tokens = RememberedTokens(inner, capacity=2, now=Clock(1000.0))
    for token in ("good-5000", "good-5001", "good-5000", "good-5002"):
        await tokens.verify(token)
    assert inner.checks == 3
    await tokens.verify("good-5000")  # still remembered: used more recently than 5001
    assert inner.checks == 3
    await tokens.verify("good-5001")  # was dropped
    assert inner.checks == 4


async def test_a_dev_token_carries_its_exp_to_be_remembered_by() -> None:
    expires = NOW + timedelta(hours=1)
    principal = await dev.verify(dev.mint("nina", "nurse", now=NOW, ttl=timedelta(hours=1)))
    assert principal.expires_at == int(expires.timestamp())
