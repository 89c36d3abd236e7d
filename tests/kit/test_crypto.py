"""Envelope encryption: per-row data keys, row id bound in, master key file permissions."""

import os

import pytest

from app.kit.crypto import DecryptionError, MasterKey, MasterKeyError, Sealed, load_master_key


def test_round_trip_and_row_binding():
    key = MasterKey(os.urandom(32))
    sealed = key.seal(b"secret key material", "row-1")
    assert key.open(sealed, "row-1") == b"secret key material"
    assert b"secret" not in sealed.ciphertext + sealed.wrapped_key
    with pytest.raises(DecryptionError):
        key.open(sealed, "row-2")  # copied onto another row


def test_each_seal_uses_a_fresh_data_key():
    key = MasterKey(os.urandom(32))
    a, b = key.seal(b"x", "r"), key.seal(b"x", "r")
    assert a.ciphertext != b.ciphertext and a.wrapped_key != b.wrapped_key


def test_other_master_key_refused():
    sealed = MasterKey(os.urandom(32)).seal(b"x", "r")
    other = MasterKey(os.urandom(32))
    with pytest.raises(DecryptionError):
        other.open(sealed, "r")
    with pytest.raises(DecryptionError):
        other.open(Sealed(sealed.ciphertext, sealed.wrapped_key, other.id), "r")


def test_master_key_file_created_0600_and_reused(tmp_path):
    path = tmp_path / "master.key"
    first = load_master_key(path, create=True)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_master_key(path, create=False).id == first.id


def test_master_key_file_readable_by_others_refused(tmp_path):
    path = tmp_path / "master.key"
    load_master_key(path, create=True)
    path.chmod(0o640)
    with pytest.raises(MasterKeyError, match="chmod 600"):
        load_master_key(path, create=False)


def test_missing_explicit_master_key_refused(tmp_path):
    with pytest.raises(MasterKeyError):
        load_master_key(tmp_path / "nope", create=False)
