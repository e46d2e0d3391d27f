"""Device keys: 256 random bits shown once at registration, stored only as a salted HMAC.

A slow password KDF (scrypt, Argon2) exists to stretch guessable human passwords. A device key
is 32 bytes from the OS's CSPRNG, so guessing it is already infeasible and a slow hash would only
slow every telemetry message down; HMAC-SHA256 with a per-device random salt is the fitting
one-way function (the same choice as API-token stores), compared in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

KEY_BYTES = 32
SALT_BYTES = 16
SCHEME = "hmac-sha256"
# Verified against when the device is unknown, so both failures take the same time.
_DUMMY = f"{SCHEME}${'A' * 22}${'A' * 43}"


def new_key() -> str:
    """A fresh device key (URL-safe text, 43 characters)."""
    return secrets.token_urlsafe(KEY_BYTES)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_key(key: str, *, salt: bytes | None = None) -> str:
    """`hmac-sha256$<salt>$<digest>`: what the device table stores instead of the key."""
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hmac.new(salt, key.encode(), hashlib.sha256).digest()
    return f"{SCHEME}${_b64(salt)}${_b64(digest)}"


def verify_key(key: str, stored: str | None) -> bool:
    """True when `key` is the one `stored` was made from; constant time for a given length."""
    scheme, _, rest = (stored or _DUMMY).partition("$")
    salt_text, _, digest_text = rest.partition("$")
    try:
        salt, digest = _unb64(salt_text), _unb64(digest_text)
    except ValueError:
        return False
    expected = hmac.new(salt, key.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(expected, digest) and scheme == SCHEME and stored is not None
