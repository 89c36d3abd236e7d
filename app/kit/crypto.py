"""Envelope encryption of private keys at rest (AES-256-GCM, NIST SP 800-38D).

Each row gets its own random 256-bit data key. The secret is sealed with the data key, and the
data key is sealed with the master key. Both seals bind the row's id as associated data, so a
ciphertext copied onto another row fails to open, and the master key's id is stored with the row
so that a rotated master key can be told apart.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE = 12


class MasterKeyError(RuntimeError):
    """The master key file is missing, malformed or readable by others."""


class DecryptionError(RuntimeError):
    """A sealed secret did not open: wrong row, wrong master key, or tampering."""


@dataclass(frozen=True)
class Sealed:
    ciphertext: bytes  # nonce || AES-GCM(data key, secret)
    wrapped_key: bytes  # nonce || AES-GCM(master key, data key)
    master_key_id: str


class MasterKey:
    def __init__(self, key: bytes):
        if len(key) != 32:
            raise MasterKeyError("the master key must be 32 bytes")
        self._aead = AESGCM(key)
        self.id = hashlib.sha256(b"certpost-master-key-id" + key).hexdigest()[:16]

    def seal(self, secret: bytes, row_id: str) -> Sealed:
        data_key = AESGCM.generate_key(bit_length=256)
        aad = row_id.encode()
        nonce = os.urandom(_NONCE)
        ciphertext = nonce + AESGCM(data_key).encrypt(nonce, secret, aad)
        wrap_nonce = os.urandom(_NONCE)
        wrapped = wrap_nonce + self._aead.encrypt(wrap_nonce, data_key, aad + self.id.encode())
        return Sealed(ciphertext, wrapped, self.id)

    def open(self, sealed: Sealed, row_id: str) -> bytes:
        if sealed.master_key_id != self.id:
            raise DecryptionError("sealed under another master key")
        aad = row_id.encode()
        try:
            data_key = self._aead.decrypt(
                sealed.wrapped_key[:_NONCE], sealed.wrapped_key[_NONCE:], aad + self.id.encode()
            )
            return AESGCM(data_key).decrypt(sealed.ciphertext[:_NONCE], sealed.ciphertext[_NONCE:], aad)
        except InvalidTag:
            raise DecryptionError("the sealed secret does not belong to this row") from None


def load_master_key(path: Path, *, create: bool) -> MasterKey:
    """Read the master key file (hex), creating it with mode 0600 when ``create`` and missing.

    Refuses a file that group or others can read: the key protects every private key stored.
    """
    if not path.exists():
        if not create:
            raise MasterKeyError(f"master key file {path} does not exist")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(os.urandom(32).hex() + "\n")
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise MasterKeyError(
            f"master key file {path} is accessible by group or others (mode {oct(mode & 0o777)}); "
            "run: chmod 600 " + str(path)
        )
    try:
        return MasterKey(bytes.fromhex(path.read_text().strip()))
    except ValueError:
        raise MasterKeyError(f"master key file {path} must hold 64 hex characters") from None
