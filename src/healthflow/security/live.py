"""Which live-push topics a caller may see, by role: the security side of realtime/access.py."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from healthflow.realtime.access import LiveAccessDenied
from healthflow.realtime.fanout import TopicFilter, allow_all
from healthflow.realtime.topics import ward_topic
from healthflow.security.rbac import Role
from healthflow.security.tokens import Principal

# Aggregates only: counts, queue depth, events/s. No patient data travels on it.
METRICS = "metrics"


def _none(_: str) -> bool:
    return False


def topics_for(principal: Principal) -> TopicFilter:
    """Staff with a ward see that ward only, analysts see aggregates only, devices see nothing."""
    roles = principal.roles
    if roles & {Role.ADMIN, Role.CLINICIAN, Role.SERVICE}:
        return allow_all
    if Role.NURSE in roles:
        if principal.ward is None:
            return allow_all
        ward = ward_topic(principal.ward)
        mine = {ward, METRICS} if ward is not None else {METRICS}
        return mine.__contains__
    if Role.ANALYST in roles:
        return METRICS.__eq__
    return _none


async def live_access(connection: HTTPConnection) -> TopicFilter:
    """The `app.state.live_access` hook: the guard already verified the caller and kept them."""
    principal: Principal | None = getattr(connection.state, "principal", None)
    if principal is None:
        raise LiveAccessDenied("no verified caller on this connection")
    return topics_for(principal)
