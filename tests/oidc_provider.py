"""A small OpenID Connect provider for tests: the real identity provider is outside this machine.

It does what the dashboard's sign-in needs and checks what a real one checks: discovery, the
authorization endpoint (a sign-in form where the tester picks a user name, role and ward), the
token endpoint (authorization code grant with PKCE S256 only, each code once, for the client and
redirect URI it was issued to; with `--refresh-tokens`, the refresh token grant too, each refresh
token once) and the JWKS. Tokens are RS256, signed with an RSA key made by
`cryptography` at start, so HealthFlow verifies them through its real JWKS path.

Run it on its own for the browser tests:
    python -m tests.oidc_provider --port 9400 --client-id healthflow-dashboard \
        --audience healthflow --redirect-uri http://127.0.0.1:8000/auth/callback
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import html
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jwt
import orjson
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

ROLES = ("admin", "clinician", "nurse", "analyst")
CODE_TTL_S = 60
# Browsers call discovery and the token endpoint from the dashboard's origin (a public client).
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization",
}


@dataclass
class Grant:
    """An authorization code and what it was issued for."""

    client_id: str
    redirect_uri: str
    code_challenge: str
    nonce: str | None
    scope: str
    subject: str
    role: str
    ward: str | None
    expires_at: float


@dataclass
class LocalIssuer:
    """The provider's state: its signing key, registered client, and the codes in flight."""

    url: str
    client_id: str
    audience: str
    redirect_uris: tuple[str, ...]
    roles_claim: str = "roles"
    token_ttl_s: int = 3600
    key: rsa.RSAPrivateKey = field(
        default_factory=lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    kid: str = field(default_factory=lambda: secrets.token_hex(8))
    codes: dict[str, Grant] = field(default_factory=dict)
    tokens_issued: int = 0
    # refresh tokens handed out with the tokens, each good once (rotated on use); off: none
    refresh: bool = False
    refresh_tokens: dict[str, Grant] = field(default_factory=dict)

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "jwks_uri": f"{self.url}/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"]
            + (["refresh_token"] if self.refresh else []),
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["openid", "profile"],
        }

    def jwks(self) -> dict[str, Any]:
        public = orjson.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {"keys": [{**public, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    def tokens(self, grant: Grant) -> dict[str, Any]:
        now = int(time.time())
        common = {"iss": self.url, "sub": grant.subject, "iat": now, "nbf": now}
        expiry = now + self.token_ttl_s
        access: dict[str, Any] = {
            **common,
            "aud": self.audience,
            "exp": expiry,
            self.roles_claim: [grant.role],
            "scope": grant.scope,
        }
        if grant.ward:
            access["ward"] = grant.ward
        identity: dict[str, Any] = {
            **common,
            "aud": self.client_id,
            "exp": expiry,
            "name": grant.subject,
            "preferred_username": grant.subject,
        }
        if grant.nonce:
            identity["nonce"] = grant.nonce
        self.tokens_issued += 1
        issued: dict[str, Any] = {
            "access_token": self.sign(access),
            "id_token": self.sign(identity),
            "token_type": "Bearer",
            "expires_in": self.token_ttl_s,
            "scope": grant.scope,
        }
        if self.refresh:
            refresh_token = secrets.token_urlsafe(32)
            self.refresh_tokens[refresh_token] = grant
            issued["refresh_token"] = refresh_token
        return issued

    def refreshed(self, refresh_token: str, client_id: str) -> dict[str, Any] | None:
        """New tokens for a refresh token (which is used up), or None when it is not good."""
        grant = self.refresh_tokens.pop(refresh_token, None)
        if grant is None or grant.client_id != client_id:
            return None
        issued = self.tokens(grant)
        del issued["id_token"]  # optional on refresh; the client keeps the one it has
        return issued


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _json(body: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={**CORS, "Cache-Control": "no-store"})


async def _form(request: Request) -> dict[str, str]:
    # parsed by hand: the form parser of Starlette needs python-multipart, which we do not ship
    return dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))


_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Test identity
provider</title></head><body><main><h1>Test identity provider</h1>
<p>Signing in to <strong>{client}</strong>.</p>
<form method="post" action="/authorize">{hidden}
<p><label>User name <input name="username" value="dr-oidc" required></label></p>
<p><label>Role <select name="role">{roles}</select></label></p>
<p><label>Ward (optional) <input name="ward"></label></p>
<p><button type="submit">Sign in</button></p></form></main></body></html>"""

AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
)


def build_app(issuer: LocalIssuer) -> Starlette:
    """The provider's HTTP endpoints over one LocalIssuer."""

    def client_error(params: dict[str, str]) -> Response | None:
        # an unknown client or redirect URI is never redirected to: that is how codes leak
        if params.get("client_id") != issuer.client_id:
            return HTMLResponse("<h1>Unknown client</h1>", status_code=400)
        if params.get("redirect_uri") not in issuer.redirect_uris:
            return HTMLResponse("<h1>Redirect URI not registered</h1>", status_code=400)
        return None

    def redirect_error(params: dict[str, str], error: str) -> Response:
        query = urlencode({"error": error, "state": params.get("state", "")})
        return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=302)

    def request_error(params: dict[str, str]) -> str | None:
        if params.get("response_type") != "code":
            return "unsupported_response_type"
        if "openid" not in params.get("scope", "").split():
            return "invalid_scope"
        if not params.get("code_challenge") or params.get("code_challenge_method") != "S256":
            return "invalid_request"  # PKCE with S256 is required of public clients
        return None

    async def discovery(_: Request) -> Response:
        return _json(issuer.discovery())

    async def jwks(_: Request) -> Response:
        return _json(issuer.jwks())

    async def authorize_page(request: Request) -> Response:
        params = dict(request.query_params)
        refused = client_error(params)
        if refused is not None:
            return refused
        error = request_error(params)
        if error is not None:
            return redirect_error(params, error)
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(params[name])}">'
            for name in AUTHORIZE_PARAMS
            if name in params
        )
        roles = "".join(f'<option value="{r}">{r}</option>' for r in ROLES)
        page = _PAGE.format(client=html.escape(issuer.client_id), hidden=hidden, roles=roles)
        return HTMLResponse(page)

    async def authorize(request: Request) -> Response:
        params = await _form(request)
        refused = client_error(params)
        if refused is not None:
            return refused
        error = request_error(params)
        if error is None and (params.get("role") not in ROLES or not params.get("username")):
            error = "access_denied"
        if error is not None:
            return redirect_error(params, error)
        code = secrets.token_urlsafe(24)
        issuer.codes[code] = Grant(
            client_id=params["client_id"],
            redirect_uri=params["redirect_uri"],
            code_challenge=params["code_challenge"],
            nonce=params.get("nonce"),
            scope=params.get("scope", "openid"),
            subject=params["username"],
            role=params["role"],
            ward=params.get("ward") or None,
            expires_at=time.monotonic() + CODE_TTL_S,
        )
        query = urlencode({"code": code, "state": params.get("state", ""), "iss": issuer.url})
        return RedirectResponse(f"{params['redirect_uri']}?{query}", status_code=302)

    async def token(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=CORS)
        params = await _form(request)
        if params.get("grant_type") == "refresh_token" and issuer.refresh:
            refreshed = issuer.refreshed(
                params.get("refresh_token", ""), params.get("client_id", "")
            )
            return _json(refreshed) if refreshed else _json({"error": "invalid_grant"}, 400)
        if params.get("grant_type") != "authorization_code":
            return _json({"error": "unsupported_grant_type"}, 400)
        # a code works once: taken out before anything else is checked
        grant = issuer.codes.pop(params.get("code", ""), None)
        if (
            grant is None
            or grant.expires_at < time.monotonic()
            or params.get("client_id") != grant.client_id
            or params.get("redirect_uri") != grant.redirect_uri
            or _s256(params.get("code_verifier", "")) != grant.code_challenge
        ):
            return _json({"error": "invalid_grant"}, 400)
        return _json(issuer.tokens(grant))

    async def preflight(_: Request) -> Response:
        return Response(status_code=204, headers=CORS)

    async def no_icon(_: Request) -> Response:
        # browsers ask every page's origin for one; a 404 would be a console error in the tests
        return Response(status_code=204)

    return Starlette(
        routes=[
            Route("/.well-known/openid-configuration", discovery, methods=["GET"]),
            Route("/.well-known/openid-configuration", preflight, methods=["OPTIONS"]),
            Route("/jwks", jwks, methods=["GET"]),
            Route("/authorize", authorize_page, methods=["GET"]),
            Route("/authorize", authorize, methods=["POST"]),
            Route("/token", token, methods=["POST", "OPTIONS"]),
            Route("/favicon.ico", no_icon, methods=["GET"]),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--client-id", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--redirect-uri", action="append", required=True)
    parser.add_argument("--token-ttl", type=int, default=3600, help="Token lifetime in seconds.")
    parser.add_argument("--refresh-tokens", action="store_true", help="Hand out refresh tokens.")
    args = parser.parse_args()
    url = f"http://127.0.0.1:{args.port}"
    issuer = LocalIssuer(
        url=url,
        client_id=args.client_id,
        audience=args.audience,
        redirect_uris=tuple(args.redirect_uri),
        token_ttl_s=args.token_ttl,
        refresh=args.refresh_tokens,
    )
    uvicorn.run(build_app(issuer), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
