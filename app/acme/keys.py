"""Keys and CSRs for issuance and ACME accounts: pure functions, no I/O.

Certificate keys are generated per order (never reused across renewals), so a leaked old key does
not outlive its certificate. The CSR carries every name in subjectAltName, which is what ACME CAs
read (RFC 8555 §7.4: the CSR's identifiers must match the order's); the CN is set to the first name
when it fits the 64-character limit of RFC 5280, for old clients that still display it.
"""

from __future__ import annotations

import josepy as jose
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-4096")
ACCOUNT_KEY_TYPES = ("ec-p256", "ec-p384", "rsa-2048", "rsa-4096")


class UnsupportedKeyType(ValueError):
    code = "unsupported_key_type"


def generate_private_key(key_type: str) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    """A fresh private key of `key_type` (one of ``KEY_TYPES``)."""
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if key_type == "rsa-4096":
        return rsa.generate_private_key(public_exponent=65537, key_size=4096)
    raise UnsupportedKeyType(
        f"unsupported key type {key_type!r}; use one of {', '.join(KEY_TYPES)}"
    )


def private_key_pem(key: PrivateKeyTypes) -> bytes:
    """Unencrypted PKCS#8 PEM; callers encrypt it at rest (app.kit.crypto)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def load_private_key(pem: bytes | str) -> PrivateKeyTypes:
    data = pem.encode() if isinstance(pem, str) else pem
    return serialization.load_pem_private_key(data, password=None)


def normalize_names(names: list[str] | tuple[str, ...]) -> list[str]:
    """Lower-case, no trailing dot, duplicates dropped, order kept (the first name becomes the CN)."""
    seen: dict[str, None] = {}
    for name in names:
        cleaned = name.strip().rstrip(".").lower()
        if not cleaned:
            raise ValueError("empty name")
        seen.setdefault(cleaned, None)
    if not seen:
        raise ValueError("no names to certify")
    return list(seen)


def make_csr(key: PrivateKeyTypes, names: list[str]) -> bytes:
    """A PEM CSR for `names` (already normalised IDNA A-labels), signed with `key`."""
    subject = []
    if len(names[0]) <= 64:
        subject.append(x509.NameAttribute(NameOID.COMMON_NAME, names[0]))
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name(subject))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


# -- account keys (JWK, RFC 7517; signing algorithms per RFC 8555 §6.2) ---------------------


def generate_account_key(key_type: str = "ec-p256") -> bytes:
    """PEM of a new account key. EC P-256 (ES256) by default: small JWS, supported by every CA."""
    if key_type not in ACCOUNT_KEY_TYPES:
        raise UnsupportedKeyType(f"unsupported account key type {key_type!r}")
    return private_key_pem(generate_private_key(key_type))


def account_jwk(pem: bytes | str) -> jose.JWK:
    key = load_private_key(pem)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return jose.JWKEC(key=key)
    if isinstance(key, rsa.RSAPrivateKey):
        return jose.JWKRSA(key=key)
    raise UnsupportedKeyType("account keys must be EC (P-256/P-384) or RSA")


def jws_algorithm(jwk: jose.JWK) -> jose.JWASignature:
    """The JWS `alg` for an account key: ES256/ES384 for EC, RS256 for RSA (RFC 7518 §3.1)."""
    if isinstance(jwk, jose.JWKEC):
        size = jwk.key.curve.key_size
        if size == 256:
            return jose.ES256
        if size == 384:
            return jose.ES384
        raise UnsupportedKeyType(f"unsupported EC curve size {size}")
    return jose.RS256
