"""The ways access fails; http.py maps them to 401, 403 and 503 problems."""

from __future__ import annotations


class Unauthenticated(Exception):
    """No token, or a token that does not verify (expired, wrong issuer, audience or key...)."""


class Forbidden(Exception):
    """A verified caller whose role (or ward, or device) does not allow this request."""
