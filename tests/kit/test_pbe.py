"""Iteration caps read from keys that OpenSSL's own command wrote (RFC 8018, RFC 7914, RFC 7292)."""

from __future__ import annotations

import subprocess

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from app.kit import pbe


@pytest.fixture(scope="module")
def plain_key() -> bytes:
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _openssl_pkcs8(plain: bytes, *args: str) -> bytes:
    return subprocess.run(["openssl", "pkcs8", "-topk8", "-passout", "pass:pw", *args], input=plain,
                          capture_output=True, check=True).stdout


@pytest.mark.parametrize(
    ("args", "refused"),
    [
        ((), False),  # OpenSSL's default: PBES2, PBKDF2, 2,048 iterations
        (("-iter", "100000"), False),
        (("-iter", "100001"), True),
        (("-v1", "PBE-SHA1-3DES", "-iter", "200000"), True),  # PKCS#12 PBE (legacy)
        (("-scrypt",), False),  # N = 16384
        (("-scrypt", "-scrypt_p", "2"), False),  # twice the default work: the cap
        (("-scrypt", "-scrypt_p", "3"), True),
    ],
)
def test_caps_on_encrypted_pkcs8(plain_key, args, refused):
    pem = _openssl_pkcs8(plain_key, *args)
    if refused:
        with pytest.raises(pbe.TooManyIterations):
            pbe.check_pem(pem)
    else:
        pbe.check_pem(pem)


def test_garbage_is_left_to_the_parser():
    pbe.check_der(b"\x30\x82\xff\xff not der")
    pbe.check_pem(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\n!!!\n-----END ENCRYPTED PRIVATE KEY-----\n")
