"""Field encryption and the key ring."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from healthflow.security.crypto import (
    FieldCipher,
    KeyRing,
    KeyRingError,
    UndecryptableValue,
    UnknownKey,
    decode_key,
    env_key_id,
)


@pytest.fixture
def ring(tmp_path: Path) -> KeyRing:
    return KeyRing(tmp_path / "keys.json")


def test_a_generated_key_file_is_private_to_its_owner(ring: KeyRing) -> None:
    mode = stat.S_IMODE(ring.path.stat().st_mode)
    assert mode == 0o600


def test_values_round_trip_and_differ_each_time(ring: KeyRing) -> None:
    cipher = FieldCipher(ring)
    one = cipher.encrypt("Ada", context="patients.given_name:1")
    two = cipher.encrypt("Ada", context="patients.given_name:1")
    assert one != two
    assert cipher.decrypt(one, context="patients.given_name:1") == "Ada"


def test_a_value_moved_to_another_row_or_column_does_not_decrypt(ring: KeyRing) -> None:
    cipher = FieldCipher(ring)
    sealed = cipher.encrypt("Ada", context="patients.given_name:1")
    with pytest.raises(UndecryptableValue):
        cipher.decrypt(sealed, context="patients.given_name:2")
    with pytest.raises(UndecryptableValue):
        cipher.decrypt(sealed, context="patients.family_name:1")


def test_a_tampered_value_does_not_decrypt(ring: KeyRing) -> None:
    cipher = FieldCipher(ring)
    kid, _, body = cipher.encrypt("Ada", context="c").partition(":")
    raw = bytearray(base64.urlsafe_b64decode(body))
    raw[-1] ^= 1
    with pytest.raises(UndecryptableValue):
        cipher.decrypt(f"{kid}:{base64.urlsafe_b64encode(bytes(raw)).decode()}", context="c")


def test_a_value_under_an_unknown_key_is_refused(ring: KeyRing) -> None:
    with pytest.raises(UnknownKey):
        FieldCipher(ring).decrypt("nokey:AAAA", context="c")


def test_old_values_stay_readable_after_rotation_and_new_ones_use_the_new_key(
    ring: KeyRing,
) -> None:
    cipher = FieldCipher(ring)
    old = cipher.encrypt("Ada", context="c")
    kid = ring.rotate()
    assert cipher.active_key_id == kid
    assert cipher.key_id(cipher.encrypt("Ada", context="c")) == kid
    assert cipher.decrypt(old, context="c") == "Ada"


def test_a_second_process_sees_a_rotation_by_another(tmp_path: Path) -> None:
    server = KeyRing(tmp_path / "keys.json")
    cli = KeyRing(tmp_path / "keys.json")
    kid = cli.rotate()
    sealed = FieldCipher(cli).encrypt("Ada", context="c")
    assert FieldCipher(server).decrypt(sealed, context="c") == "Ada"
    assert FieldCipher(server).active_key_id == kid


def test_a_value_under_a_known_key_opens_without_reading_the_key_file(
    ring: KeyRing, monkeypatch: pytest.MonkeyPatch
) -> None:
    cipher = FieldCipher(ring)
    sealed = cipher.encrypt("Ada", context="c")
    looked_at: list[object] = []
    real_stat = os.stat
    monkeypatch.setattr(os, "stat", lambda p, *a, **kw: looked_at.append(p) or real_stat(p))

    assert cipher.decrypt(sealed, context="c") == "Ada"  # every read of PHI does this
    assert looked_at == []  # a key id names one key for good: memory is enough
    cipher.encrypt("Ada", context="c")
    assert looked_at == [ring.path]  # sealing checks for a rotation by another process


def test_the_blind_index_is_stable_keyed_and_purpose_bound(tmp_path: Path) -> None:
    one = FieldCipher(KeyRing(tmp_path / "a.json"))
    other = FieldCipher(KeyRing(tmp_path / "b.json"))
    assert one.blind_index("M1", purpose="mrn") == one.blind_index("M1", purpose="mrn")
    assert one.blind_index("M1", purpose="mrn") != one.blind_index("M2", purpose="mrn")
    assert one.blind_index("M1", purpose="mrn") != one.blind_index("M1", purpose="x")
    assert one.blind_index("M1", purpose="mrn") != other.blind_index("M1", purpose="mrn")


def test_environment_keys_need_no_file_and_refuse_file_rotation(tmp_path: Path) -> None:
    key, index = os.urandom(32), os.urandom(32)
    ring = KeyRing(tmp_path / "keys.json", env_key=key, env_index_key=index)
    assert not ring.path.exists()
    assert ring.active()[0] == env_key_id(key)
    with pytest.raises(KeyRingError, match="HEALTHFLOW_ENCRYPTION_KEY"):
        ring.rotate()


@pytest.mark.parametrize("text", ["not base64!", base64.b64encode(b"short").decode()])
def test_malformed_keys_are_refused(text: str) -> None:
    with pytest.raises(KeyRingError):
        decode_key(text, "HEALTHFLOW_ENCRYPTION_KEY")


def test_a_corrupt_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("[1, 2]")
    with pytest.raises(KeyRingError):
        KeyRing(path)
