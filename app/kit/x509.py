"""Parsing and inspecting X.509 material, with no I/O.

Everything here is a pure function over bytes and ``cryptography`` objects so that the upload
rules, the agent's bundle checks and the tests share one reading of a certificate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPublicKeyTypes,
    PrivateKeyTypes,
)

MAX_CHAIN = 10
"""Longest chain (leaf included) accepted on upload; real chains are 2-4 certificates."""

_PEM_BEGIN_CERT = b"-----BEGIN CERTIFICATE-----"


class MaterialError(ValueError):
    """Base for every problem found in submitted certificate or key material.

    ``code`` is the stable slug the API reports (see ``app/certificates/errors.py``).
    """

    code = "invalid_certificate"


class InvalidCertificate(MaterialError):
    code = "invalid_certificate"


class InvalidKey(MaterialError):
    code = "invalid_key"


class KeyPassphrase(MaterialError):
    code = "key_passphrase"


class KeyMismatch(MaterialError):
    code = "key_mismatch"


class InvalidChain(MaterialError):
    code = "invalid_chain"


def _as_bytes(text: str | bytes) -> bytes:
    return text.encode() if isinstance(text, str) else text


def load_pem_certificates(text: str | bytes) -> list[x509.Certificate]:
    """All certificates in a PEM text, in order; raises InvalidCertificate when there are none.

    Other PEM blocks (a key pasted into the same box) are ignored here; keys are read separately.
    """
    data = _as_bytes(text)
    if _PEM_BEGIN_CERT not in data:
        raise InvalidCertificate("no PEM certificate (-----BEGIN CERTIFICATE-----) was found")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        raise InvalidCertificate("a PEM certificate block could not be parsed") from exc


def load_private_key(text: str | bytes, passphrase: str | bytes | None = None) -> PrivateKeyTypes:
    """Parse a PEM private key (PKCS#8, PKCS#1 or SEC1), decrypting it when it is encrypted.

    Raises KeyPassphrase when a passphrase is needed, not needed, or wrong; InvalidKey otherwise.
    The exception text never contains the key.
    """
    data = _as_bytes(text)
    if b"PRIVATE KEY-----" not in data:
        raise InvalidKey("no PEM private key (-----BEGIN ... PRIVATE KEY-----) was found")
    pw = _as_bytes(passphrase) if passphrase else None
    try:
        return serialization.load_pem_private_key(data, password=pw)
    except TypeError as exc:
        if pw is None:
            raise KeyPassphrase("the private key is encrypted: a key_passphrase is required") from None
        raise KeyPassphrase("a key_passphrase was given but the private key is not encrypted") from exc
    except ValueError:
        if pw is not None and b"ENCRYPTED" in data:
            raise KeyPassphrase("the key_passphrase does not decrypt the private key") from None
        raise InvalidKey("the private key could not be parsed") from None
    except Exception:  # noqa: BLE001 (unsupported algorithms raise UnsupportedAlgorithm)
        raise InvalidKey("the private key uses an unsupported algorithm") from None


def private_key_pem(key: PrivateKeyTypes) -> bytes:
    """Unencrypted PKCS#8 PEM, the one form certpost stores (encrypted at rest) and deploys."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def certificate_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _public_der(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_matches(cert: x509.Certificate, key: PrivateKeyTypes) -> bool:
    """True when ``key`` is the private half of the certificate's public key."""
    return _public_der(cert.public_key()) == _public_der(key.public_key())


def fingerprint_sha256(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the certificate's DER encoding (what clients display)."""
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when ``issuer``'s name and key produced ``cert``'s signature (RFC 5280 section 6.1.3)."""
    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
    except Exception:  # noqa: BLE001 (InvalidSignature, TypeError for a mismatched key type, ValueError)
        return False
    return True


def check_chain(leaf: x509.Certificate, chain: list[x509.Certificate]) -> None:
    """Every supplied issuer must belong to a path from the leaf; the order is free.

    RFC 8446 section 4.4.2: the leaf comes first, and clients "SHOULD be prepared to handle
    potentially extraneous certificates and arbitrary orderings" of the rest, so a chain with
    the root and the intermediate swapped, or with a cross-signed alternate, is kept as given
    and the verifier builds the path (``app.kit.trust``). A certificate that issued nothing in
    the set is a mistake (a wrong file pasted) and is refused. Raises InvalidChain.
    """
    if len(chain) + 1 > MAX_CHAIN:
        raise InvalidChain(f"the chain has {len(chain) + 1} certificates; at most {MAX_CHAIN} are accepted")
    unreached = set(range(len(chain)))
    frontier = [leaf]
    while frontier and unreached:
        current = frontier.pop()
        for index in sorted(unreached):
            if chain[index] != current and signed_by(current, chain[index]):
                unreached.discard(index)
                frontier.append(chain[index])
    if unreached:
        position = min(unreached) + 2
        raise InvalidChain(
            f"certificate {position} in the chain is unrelated: the leaf is not issued by it, nor is any "
            "other certificate given; give the leaf first, then its issuers"
        )


def check_chain_order(chain: list[x509.Certificate]) -> None:
    """``check_chain`` for a leaf-first list (the agent checks bundles this way)."""
    check_chain(chain[0], chain[1:])


def is_self_signed(cert: x509.Certificate) -> bool:
    return signed_by(cert, cert)


@dataclass(frozen=True)
class KeyInfo:
    key_type: str  # "rsa", "ec", "ed25519", "ed448"
    key_bits: int
    curve: str | None = None


def key_info(public_key: CertificateIssuerPublicKeyTypes) -> KeyInfo:
    if isinstance(public_key, rsa.RSAPublicKey):
        return KeyInfo("rsa", public_key.key_size)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return KeyInfo("ec", public_key.curve.key_size, public_key.curve.name)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return KeyInfo("ed25519", 256)
    if isinstance(public_key, ed448.Ed448PublicKey):
        return KeyInfo("ed448", 456)
    return KeyInfo(type(public_key).__name__.lower(), 0)


_CURVES = {"secp256r1": "p256", "secp384r1": "p384", "secp521r1": "p521"}


def key_type_label(info: KeyInfo) -> str:
    """``rsa``, ``ec-p256``, ``ec-p384``, ``ec-p521``, ``ed25519``: the names ACME orders use too."""
    if info.key_type == "ec":
        return f"ec-{_CURVES.get(info.curve or '', info.curve)}"
    return info.key_type


def dns_names(cert: x509.Certificate) -> list[str]:
    """The DNS names a certificate is for: its SAN dNSNames, and only those.

    The subject CN is not a fallback: RFC 9525 (which obsoletes RFC 6125 and drops the CN-ID of
    its section 6.4.4) and the CA/Browser Forum profile make the SAN the only place clients
    look, and Chrome (since 58) never reads the CN. A certificate without a SAN covers no name.
    Names are returned as written (normalise with ``app.kit.names``). Extensions are parsed
    only when first read: a malformed or duplicated extension is InvalidCertificate here, not
    a bare ValueError from the library (x509-limbo's malformed-SAN cases).
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except (ValueError, x509.DuplicateExtension) as exc:
        raise InvalidCertificate("the certificate's extensions could not be parsed") from exc
    return list(san.get_values_for_type(x509.DNSName))


def not_before(cert: x509.Certificate) -> datetime:
    return cert.not_valid_before_utc


def not_after(cert: x509.Certificate) -> datetime:
    return cert.not_valid_after_utc




__all__ = [
    "MAX_CHAIN",
    "InvalidCertificate",
    "InvalidChain",
    "InvalidKey",
    "KeyInfo",
    "KeyMismatch",
    "KeyPassphrase",
    "MaterialError",
    "certificate_pem",
    "check_chain",
    "check_chain_order",
    "dns_names",
    "fingerprint_sha256",
    "is_self_signed",
    "key_info",
    "key_matches",
    "key_type_label",
    "load_pem_certificates",
    "load_private_key",
    "not_after",
    "not_before",
    "private_key_pem",
    "signed_by",
]
