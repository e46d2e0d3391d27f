"""PHI at rest: AES-256-GCM field encryption with key ids (rotation) and an HMAC blind index.

A value is stored as `<key id>:<base64url(nonce || ciphertext+tag)>`. The associated data binds
each ciphertext to its column and row, so a ciphertext copied into another row or column fails
to decrypt instead of silently showing another patient's data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from healthflow import randomness

KEY_BYTES = 32
NONCE_BYTES = 12


class KeyRingError(Exception):
    """A key is missing, malformed or cannot decrypt a value."""


class UnknownKey(KeyRingError):
    def __init__(self, kid: str) -> None:
        super().__init__(f"no key with id {kid!r} in the key ring")
        self.kid = kid


class UndecryptableValue(KeyRingError):
    """A stored value that its key does not open: tampered, moved, or the wrong key."""


def decode_key(text: str, what: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyRingError(f"{what} is not base64") from exc
    if len(key) != KEY_BYTES:
        raise KeyRingError(f"{what} must be {KEY_BYTES} bytes (base64 of 32 random bytes)")
    return key


def _encode_key(key: bytes) -> str:
    return base64.b64encode(key).decode()


def env_key_id(key: bytes) -> str:
    """A stable id for a key given by environment: derived from the key, revealing nothing."""
    return "env" + hashlib.sha256(b"healthflow-kid\n" + key).hexdigest()[:8]


@dataclass(frozen=True)
class _Ring:
    active: str
    keys: dict[str, bytes]
    index_key: bytes


class KeyRing:
    """Encryption keys by id, one active, plus the blind-index key.

    Keys come from a JSON key file (generated with mode 0600 on first start) and, optionally,
    from the environment (`HEALTHFLOW_ENCRYPTION_KEY` becomes the active key). The file is
    re-read when it changes on disk, so `healthflow keys rotate` reaches a running server:
    it starts encrypting with the new key and can open rows re-encrypted under it.
    """

    def __init__(
        self, path: Path, *, env_key: bytes | None = None, env_index_key: bytes | None = None
    ) -> None:
        self._path = path
        self._env_key = env_key
        self._env_index_key = env_index_key
        self._lock = threading.RLock()
        self._mtime: float | None = None
        self._ring = self._load()

    @property
    def path(self) -> Path:
        return self._path

    @property
    def env_managed(self) -> bool:
        """The active key comes from the environment (rotate it there, e.g. in Key Vault)."""
        return self._env_key is not None

    def active(self) -> tuple[str, bytes]:
        ring = self._fresh()
        return ring.active, ring.keys[ring.active]

    def key(self, kid: str) -> bytes:
        # a key id names one key for good (ids are random, a rotation adds a new one): what is
        # in memory opens what it names, and only an id not seen yet makes the file be read
        ring = self._ring
        if kid not in ring.keys:
            ring = self._reload()  # a rotation may have written the file since the last check
        if kid not in ring.keys:
            raise UnknownKey(kid)
        return ring.keys[kid]

    @property
    def index_key(self) -> bytes:
        return self._ring.index_key

    def rotate(self) -> str:
        """Add a new random key to the key file and make it the active one; returns its id."""
        if self.env_managed:
            raise KeyRingError(
                "the active key comes from HEALTHFLOW_ENCRYPTION_KEY: rotate it there and keep "
                "the previous key in the key file until `healthflow keys rotate` has finished"
            )
        with self._lock:
            stored = self._read_file() or {}
            keys = dict(stored.get("keys", {}))
            kid = secrets.token_hex(4)
            while kid in keys:
                kid = secrets.token_hex(4)
            keys[kid] = _encode_key(secrets.token_bytes(KEY_BYTES))
            stored.update({"active": kid, "keys": keys})
            self._write_file(stored)
        self._reload()
        return kid

    def _fresh(self) -> _Ring:
        try:
            # os.stat, not Path.stat: this runs for every field encrypted (six a registration),
            # and pathlib's wrapping costs more than the system call
            mtime = os.stat(self._path).st_mtime
        except FileNotFoundError:
            return self._ring
        if mtime != self._mtime:
            return self._reload()
        return self._ring

    def _reload(self) -> _Ring:
        self._ring = self._load()
        return self._ring

    def _load(self) -> _Ring:
        with self._lock:
            stored = self._read_file()
            if stored is None and not (self._env_key and self._env_index_key):
                stored = {
                    "active": secrets.token_hex(4),
                    "index_key": _encode_key(secrets.token_bytes(KEY_BYTES)),
                }
                stored["keys"] = {stored["active"]: _encode_key(secrets.token_bytes(KEY_BYTES))}
                self._write_file(stored, create=True)
                stored = self._read_file()
            stored = stored or {}
            keys = {
                kid: decode_key(text, f"key {kid} in {self._path}")
                for kid, text in stored.get("keys", {}).items()
            }
            active = stored.get("active")
            if self._env_key is not None:
                active = env_key_id(self._env_key)
                keys[active] = self._env_key
            if not active or active not in keys:
                raise KeyRingError(f"the key ring {self._path} names no usable active key")
            if self._env_index_key is not None:
                index_key = self._env_index_key
            elif "index_key" in stored:
                index_key = decode_key(stored["index_key"], f"index_key in {self._path}")
            else:
                raise KeyRingError(
                    f"no blind index key: set HEALTHFLOW_BLIND_INDEX_KEY or add it to {self._path}"
                )
            return _Ring(active, keys, index_key)

    def _read_file(self) -> dict[str, Any] | None:
        try:
            self._mtime = self._path.stat().st_mtime
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise KeyRingError(f"cannot read the key ring {self._path}: {exc}") from exc
        if not isinstance(data, dict):
            raise KeyRingError(f"the key ring {self._path} is not a JSON object")
        return data

    def _write_file(self, data: dict[str, Any], *, create: bool = False) -> None:
        # write a sibling then rename: a reader sees the old ring or the new one, never half
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f".{self._path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2)
            out.flush()
            os.fsync(out.fileno())
        if create:
            try:
                os.link(tmp, self._path)  # never replace a ring another process just created
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        else:
            tmp.replace(self._path)


class FieldCipher:
    """Encrypts and decrypts single PHI values; computes the MRN blind index."""

    def __init__(self, keys: KeyRing) -> None:
        self._keys = keys
        # one AES-GCM context per key id (a page of patients opens over a hundred values)
        self._aeads: dict[str, AESGCM] = {}

    @property
    def active_key_id(self) -> str:
        return self._keys.active()[0]

    def _aead(self, kid: str, key: bytes | None = None) -> AESGCM:
        """The context of key `kid` (`key`, if the caller has it; else from the ring)."""
        aead = self._aeads.get(kid)
        if aead is None:
            aead = self._aeads[kid] = AESGCM(key if key is not None else self._keys.key(kid))
        return aead

    def encrypt(self, value: str, *, context: str) -> str:
        kid, key = self._keys.active()
        nonce = randomness.token_bytes(NONCE_BYTES)
        sealed = self._aead(kid, key).encrypt(nonce, value.encode(), context.encode())
        return f"{kid}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, stored: str, *, context: str) -> str:
        kid, _, body = stored.partition(":")
        if not body:
            raise UndecryptableValue("stored value has no key id")
        try:
            raw = base64.urlsafe_b64decode(body)
            plain = self._aead(kid).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise UndecryptableValue(f"value under key {kid} does not decrypt") from exc
        return plain.decode()

    @staticmethod
    def key_id(stored: str) -> str:
        return stored.partition(":")[0]

    def blind_index(self, value: str, *, purpose: str) -> str:
        """Keyed HMAC-SHA256: equal values match, and without the key nothing can be guessed."""
        message = purpose.encode() + b"\n" + value.encode()
        return hmac.new(self._keys.index_key, message, hashlib.sha256).hexdigest()
