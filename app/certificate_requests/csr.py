"""Generating a key and its certificate signing request: pure functions, no I/O.

The CSR is PKCS#10 (RFC 2986): the subject is the first name as its commonName (RFC 5280's
``ub-common-name`` is 64 characters: a longer first name gives an empty subject, which CAs
accept when the names are in the subjectAltName), and every name is a dNSName of a
subjectAltName extension in the ``extensionRequest`` attribute (RFC 2985 section 5.4.2), since
CAs issue for the SANs only (CA/Browser Forum Baseline Requirements 7.1.4.2). It is signed with
SHA-256 (SHA-256 with ECDSA for EC keys).

Key types are the ones the upload rules accept (app/kit/keypolicy.py) and every CA sells:
ECDSA on P-256 or P-384, RSA of 2048, 3072 or 4096 bits (e = 65537, RFC 8017). RSA generation
is the costly part (a 4096-bit key takes about a second of CPU and holds the GIL), so the
service runs :func:`new_request` in the certificate readers' worker processes
(app/certificates/reading.py), never on the event loop.
"""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

from app.kit.x509 import private_key_pem

KEY_TYPES = ("ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096")
_CURVES = {"ecdsa-p256": ec.SECP256R1, "ecdsa-p384": ec.SECP384R1}
CN_MAX = 64  # RFC 5280 appendix A.1, ub-common-name


def generate_key(key_type: str):
    if key_type in _CURVES:
        return ec.generate_private_key(_CURVES[key_type]())
    if key_type.startswith("rsa-"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type.removeprefix("rsa-")))
    raise ValueError(f"unknown key type {key_type!r}")


def spki_sha256(public_key) -> str:
    """SHA-256 (hex) of the DER SubjectPublicKeyInfo: equal exactly when the public keys are."""
    return hashlib.sha256(public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest()


def build_csr(key, names: list[str]) -> x509.CertificateSigningRequest:
    """A PKCS#10 request for ``names`` (already normalised), signed by ``key``."""
    subject = [x509.NameAttribute(NameOID.COMMON_NAME, names[0])] if len(names[0]) <= CN_MAX else []
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )


def new_request(key_type: str, names: list[str]) -> tuple[bytes, str, str]:
    """(private key as PKCS#8 PEM, CSR PEM, SPKI SHA-256): what a certificate request stores.

    Module-level and picklable-in, picklable-out, so a worker process can run it."""
    key = generate_key(key_type)
    csr = build_csr(key, names)
    return private_key_pem(key), csr.public_bytes(Encoding.PEM).decode(), spki_sha256(key.public_key())
