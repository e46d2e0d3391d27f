"""A structlog processor that keeps PHI and credentials out of log lines, whatever a caller binds.

Code is written never to log PHI; this is the net under it. Keys that name identifiers or secrets
are masked at any depth, URLs lose their query strings (a WebSocket `access_token` travels
there), and anything shaped like a JWT or a bearer credential is masked wherever it appears.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any

MASK = "[redacted]"
PHI_KEYS = frozenset(
    {
        "given_name",
        "family_name",
        "name",
        "first_name",
        "last_name",
        "full_name",
        "patient_name",
        "birth_date",
        "date_of_birth",
        "dob",
        "mrn",
        "phone",
        "address",
        "email",
        "ssn",
        "reason",
    }
)
SECRET_KEYS = frozenset(
    {"token", "access_token", "authorization", "password", "secret", "api_key", "cookie"}
)
URL_KEYS = frozenset({"path", "url", "raw_path", "target", "query", "query_string"})
_JWT = re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*")
_BEARER = re.compile(r"(?i)bearer\s+[\w.~+/=-]+")
_QUERY = re.compile(r"\?\S*")
_MAX_DEPTH = 6


def _scrub_text(text: str) -> str:
    return _BEARER.sub("Bearer " + MASK, _JWT.sub(MASK, text))


def _scrub(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        return MASK
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, dict):
        return {k: _scrub_field(str(k), v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v, depth + 1) for v in value]
    return value


def _scrub_field(key: str, value: Any, depth: int) -> Any:
    lowered = key.lower()
    if lowered in PHI_KEYS or lowered in SECRET_KEYS:
        return MASK
    if lowered in URL_KEYS and isinstance(value, str | bytes):
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        return MASK if lowered in ("query", "query_string") else _QUERY.sub("?" + MASK, text)
    return _scrub(value, depth)


def redact_phi(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask PHI-named and secret-named keys, query strings and tokens."""
    for key in list(event_dict):
        event_dict[key] = _scrub_field(str(key), event_dict[key], 0)
    return event_dict
