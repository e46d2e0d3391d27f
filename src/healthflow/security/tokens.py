"""Bearer tokens (PyJWT): HS256 development tokens, or RS256/ES256 from an OIDC issuer's JWKS."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt

DEV_ALGORITHM = "HS256"
# Asymmetric only: an issuer's public key must never be usable as an HMAC secret.
OIDC_ALGORITHMS = ("RS256", "ES256")
_REQUIRED_CLAIMS = ["exp", "sub", "iss", "aud"]


class InvalidToken(Exception):
    """No usable token: missing, malformed, expired, not yet valid, wrong issuer/audience/key."""


class IdentityProviderUnavailable(Exception):
    """The issuer's keys could not be fetched, so no token can be checked right now."""


@dataclass(frozen=True)
class Principal:
    """Who is calling, as the verified token says: subject, roles and the optional ward claim."""

    subject: str
    roles: frozenset[str]
    ward: str | None = None
    # the token's exp (Unix seconds): how long a verified token may be remembered
    expires_at: float | None = field(default=None, compare=False)


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> Principal:
        """The principal the token names; raises InvalidToken for any token not to be trusted."""
        ...


def principal_from_claims(claims: Mapping[str, Any], roles_claim: str) -> Principal:
    """Read subject, roles (a string or a list, at a dotted claim path) and ward from claims."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidToken("token has no subject")
    found: Any = claims
    for part in roles_claim.split("."):
        found = found.get(part) if isinstance(found, Mapping) else None
    if isinstance(found, str):
        roles = frozenset({found})
    elif isinstance(found, list):
        roles = frozenset(r for r in found if isinstance(r, str))
    else:
        roles = frozenset()
    ward = claims.get("ward")
    expires = claims.get("exp")
    return Principal(
        subject,
        roles,
        ward if isinstance(ward, str) and ward else None,
        float(expires) if isinstance(expires, int | float) else None,
    )


class RememberedTokens:
    """A TokenVerifier that remembers the tokens `inner` accepted, for a repeat to cost a lookup.

    A dashboard or device sends the same token with every request; checking its signature each
    time (and, for an issuer's keys, a thread hop) is most of what authenticating costs. An
    entry lasts `remember_s` at most and never past the token's exp, so a key the issuer
    withdrew stops working within that time; refused tokens are never remembered. The least
    recently used entries go first beyond `capacity`.
    """

    def __init__(
        self,
        inner: TokenVerifier,
        *,
        remember_s: float = 60.0,
        capacity: int = 10_000,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._inner = inner
        self._remember_s = remember_s
        self._capacity = capacity
        self._now = now
        self._known: OrderedDict[str, tuple[Principal, float]] = OrderedDict()

    async def verify(self, token: str) -> Principal:
        now = self._now()
        known = self._known.get(token)
        if known is not None:
            principal, until = known
            if now < until:
                self._known.move_to_end(token)
                return principal
            del self._known[token]
        principal = await self._inner.verify(token)
        until = now + self._remember_s
        if principal.expires_at is not None:
            until = min(until, principal.expires_at)
        self._known[token] = (principal, until)
        if len(self._known) > self._capacity:
            self._known.popitem(last=False)
        return principal


class DevTokens:
    """HS256 tokens signed with a local secret: for development and the embedded default."""

    def __init__(
        self,
        secret: bytes,
        *,
        issuer: str,
        audience: str,
        roles_claim: str = "roles",
        leeway_s: float = 30.0,
    ) -> None:
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._roles_claim = roles_claim
        self._leeway_s = leeway_s

    def mint(
        self, subject: str, role: str, *, now: datetime, ttl: timedelta, ward: str | None = None
    ) -> str:
        claims: dict[str, Any] = {
            "sub": subject,
            "iss": self._issuer,
            "aud": self._audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            self._roles_claim: [role],
        }
        if ward:
            claims["ward"] = ward
        return jwt.encode(claims, self._secret, algorithm=DEV_ALGORITHM)

    async def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[DEV_ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from exc
        return principal_from_claims(claims, self._roles_claim)


class JwksTokens:
    """Tokens from an OIDC issuer (Entra ID, Keycloak), checked against its published keys.

    PyJWKClient caches the key set for `cache_s` and refetches when a token names a key id it
    has not seen, which is how an issuer's key rollover reaches us without a restart.
    """

    def __init__(
        self,
        jwks_url: str,
        *,
        issuer: str,
        audience: str,
        roles_claim: str = "roles",
        leeway_s: float = 30.0,
        cache_s: int = 300,
        timeout_s: float = 5.0,
        refetch_cooldown_s: float = 30.0,
    ) -> None:
        # the cooldown stops tokens with made-up key ids from turning into a fetch each
        self._client = jwt.PyJWKClient(
            jwks_url,
            cache_keys=True,
            lifespan=cache_s,
            timeout=int(max(timeout_s, 1)),
            cooldown_duration=refetch_cooldown_s,
        )
        self._issuer = issuer
        self._audience = audience
        self._roles_claim = roles_claim
        self._leeway_s = leeway_s
        self._timeout_s = timeout_s

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from exc
        if header.get("alg") not in OIDC_ALGORITHMS:
            raise InvalidToken("algorithm not accepted")
        try:
            # PyJWKClient fetches with urllib (blocking): keep it off the event loop
            async with asyncio.timeout(self._timeout_s + 1):
                key = await asyncio.to_thread(self._client.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError as exc:
            raise IdentityProviderUnavailable(str(exc)) from exc
        except TimeoutError as exc:
            raise IdentityProviderUnavailable("timed out fetching the JWKS") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from exc
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=list(OIDC_ALGORITHMS),
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(type(exc).__name__) from exc
        return principal_from_claims(claims, self._roles_claim)


class ServiceCredentials(httpx.Auth):
    """httpx auth for calls between HealthFlow services: a short-lived `service` token, minted
    again shortly before it expires (development tokens; an issuer needs client credentials)."""

    def __init__(self, minter: DevTokens, *, subject: str, ttl_s: float = 300.0) -> None:
        self._minter = minter
        self._subject = subject
        self._ttl = timedelta(seconds=ttl_s)
        self._token = ""
        self._renew_at: datetime | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        now = datetime.now(UTC)
        if self._renew_at is None or now >= self._renew_at:
            self._token = self._minter.mint(self._subject, "service", now=now, ttl=self._ttl)
            self._renew_at = now + self._ttl * 0.8
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


def load_or_create_secret(path: Path) -> bytes:
    """The development signing secret, generated (256 random bits, mode 0600) on first start."""
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
    return secret


_TTL = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_ttl(text: str) -> timedelta:
    """`90s`, `30m`, `8h`, `7d` as a timedelta; raises ValueError for anything else."""
    match = _TTL.match(text)
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"ttl {text!r} is not like 30m, 8h or 7d")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
