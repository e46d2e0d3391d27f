"""`GET /api/audit` (the audit trail, for admins) and the development sign-in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from healthflow.security.audit import AuditRecord, SqlAuditTrail
from healthflow.security.errors import Forbidden
from healthflow.security.rbac import Guard, permitted
from healthflow.security.tokens import DevTokens, Principal

DEV_SIGN_IN_TTL = timedelta(hours=8)

router = APIRouter(prefix="/api/audit", tags=["audit"])


class AuditPage(BaseModel):
    # the stored record's own dataclass is the response shape: one definition, no copy
    items: list[AuditRecord]
    next_after: int | None


@router.get("", response_model=AuditPage)
async def list_audit(
    request: Request,
    patient_id: UUID | None = None,
    subject: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
    since: AwareDatetime | None = None,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AuditPage:
    trail: SqlAuditTrail = request.app.state.audit
    records = await trail.search(
        resource_id=str(patient_id) if patient_id else None,
        subject=subject,
        since=since,
        after_seq=after,
        limit=limit,
    )
    next_after = records[-1].seq if len(records) == limit else None
    return AuditPage(items=records, next_after=next_after)


dev_router = APIRouter(prefix="/api/dev", tags=["development"])

LOOPBACK = ("127.", "::1", "localhost")
DEMO_ROLES = Literal["admin", "clinician", "nurse", "analyst"]


class SignInIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sub: Annotated[str, Field(min_length=1, max_length=100)] = "demo"
    role: DEMO_ROLES
    ward: Annotated[str, Field(min_length=1, max_length=50)] | None = None


class SignedIn(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the OAuth2 token type, no secret)
    expires_in: int


@dev_router.post("/sign-in", response_model=SignedIn)
async def sign_in(body: SignInIn, request: Request) -> SignedIn:
    """The dashboard's development sign-in: a token for a demo user, from this machine only."""
    minter: DevTokens | None = request.app.state.dev_tokens
    if minter is None:
        raise Forbidden("development sign-in is off: sign in with the identity provider")
    host = request.client.host if request.client else ""
    if not host.startswith(LOOPBACK):
        raise Forbidden("development sign-in is only offered to this machine")
    token = minter.mint(
        body.sub, body.role, now=datetime.now(UTC), ttl=DEV_SIGN_IN_TTL, ward=body.ward
    )
    return SignedIn(access_token=token, expires_in=int(DEV_SIGN_IN_TTL.total_seconds()))


auth_router = APIRouter(prefix="/api/auth", tags=["sign-in"])


class OidcClient(BaseModel):
    """What a browser needs for the authorization code flow with PKCE at the issuer."""

    issuer: str  # discovery at {issuer}/.well-known/openid-configuration
    client_id: str | None  # None: the issuer is set, the dashboard's client id is not
    scope: str


class SignInConfig(BaseModel):
    """How the dashboard signs people in: the development sign-in, or the OIDC issuer."""

    mode: Literal["development", "oidc"]
    oidc: OidcClient | None


@auth_router.get("/config", response_model=SignInConfig)
async def sign_in_config(request: Request) -> SignInConfig:
    """Public: the sign-in page needs it before anyone is signed in; it holds no secret."""
    config: SignInConfig = request.app.state.sign_in
    return config


class SessionOut(BaseModel):
    """Who the presented token says the caller is, as the server read and verified it."""

    subject: str
    roles: list[str]
    ward: str | None  # the ward claim: a nurse with one reaches only that ward
    # what the dashboard may offer: "METHOD /path" of every non-public route these roles may
    # call, from the permission table (rbac.PERMISSIONS), so the browser keeps no copy of it
    permissions: list[str]


@auth_router.get("/session", response_model=SessionOut)
async def session(request: Request) -> SessionOut:
    """Answers 401 once the token has expired or no longer verifies: how the dashboard finds out
    why its live socket was refused (a browser is not told the handshake's status)."""
    principal: Principal = request.state.principal
    gate: Guard = request.app.state.guard
    return SessionOut(
        subject=principal.subject,
        roles=sorted(principal.roles),
        ward=principal.ward,
        permissions=permitted(principal, gate.permissions),
    )
