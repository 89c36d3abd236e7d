"""Which keys and signatures certpost accepts for a server certificate: pure functions.

A certificate is pushed to Postfix, Dovecot and nginx and judged by every mail client and
browser that connects, so the rule is what all of them accept, not what OpenSSL can parse:

* RSA of 2048 to 8192 bits. Below 2048 is refused by the CA/Browser Forum Baseline
  Requirements (section 6.1.5) and by OpenSSL's default security level 2 on Debian; above 8192
  no public CA issues, and loading such a key (its primes are checked) costs seconds of CPU
  for nothing a client can tell.
* ECDSA on P-256 or P-384 only: the curves of Mozilla's Root Store Policy (section 5.1) and the
  ones every TLS stack offers (RFC 8446 section 4.2.7, ``secp256r1``/``secp384r1``). P-521 is
  allowed by the Baseline Requirements but Chrome/BoringSSL and some mail clients do not
  accept ``ecdsa_secp521r1_sha512``, so a P-521 certificate fails for real users.
* No RSASSA-PSS public key (``id-RSASSA-PSS`` in the certificate, RFC 4055): it needs the
  ``rsa_pss_pss_*`` signature schemes, which Chrome/BoringSSL do not offer, so like P-521 it
  fails for real users. (An ordinary RSA key signing with PSS in TLS 1.3 is unaffected.)
* No DSA (dropped from TLS 1.3, RFC 8446 section 4.2.3), no Ed25519/Ed448: no public CA issues
  them and browsers and most mail clients cannot verify them (RFC 8410 keys are not in the Web
  PKI).
* The leaf must not be signed with MD5 or SHA-1 (RFC 6151, RFC 9155; Baseline Requirements
  section 7.1.3.2): clients refuse such signatures.

Every check here reads only public data (the certificate, the size of a PEM block), so it runs
before the private key is loaded: an oversized key is refused before it costs any CPU.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import PublicKeyAlgorithmOID

from app.kit.x509 import MaterialError

RSA_MIN_BITS = 2048
RSA_MAX_BITS = 8192
CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}
WEAK_HASHES = ("md5", "sha1")
MAX_KEY_DER_BYTES = 6144
"""A PKCS#8 RSA-8192 key is about 4,800 bytes of DER (encrypted: about 100 more); an RSA-16384
key about 9,400. Anything larger than this is refused by size before it is parsed."""


class KeyTooSmall(MaterialError):
    code = "key_too_small"


class KeyTooLarge(MaterialError):
    code = "key_too_large"


class KeyTypeUnsupported(MaterialError):
    code = "key_type_unsupported"


class CurveUnsupported(MaterialError):
    code = "curve_unsupported"


class WeakSignature(MaterialError):
    code = "weak_signature"


def check_public_key(public_key) -> None:
    """Raise the policy's refusal for a certificate's public key, or return None."""
    if isinstance(public_key, rsa.RSAPublicKey):
        bits = public_key.key_size
        if bits < RSA_MIN_BITS:
            raise KeyTooSmall(f"the RSA key has {bits} bits; at least {RSA_MIN_BITS} are required")
        if bits > RSA_MAX_BITS:
            raise KeyTooLarge(f"the RSA key has {bits} bits; at most {RSA_MAX_BITS} are accepted")
        return
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in CURVES:
            raise CurveUnsupported(
                f"the EC key is on {public_key.curve.name}; use P-256 or P-384, the curves every client accepts"
            )
        return
    if isinstance(public_key, dsa.DSAPublicKey):
        raise KeyTypeUnsupported("DSA keys are not accepted by TLS clients; use RSA (2048+) or ECDSA P-256/P-384")
    if isinstance(public_key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise KeyTypeUnsupported(
            "Ed25519/Ed448 certificates are not accepted by browsers and most mail clients; use RSA or ECDSA"
        )
    raise KeyTypeUnsupported("the key type is not accepted; use RSA (2048-8192 bits) or ECDSA P-256/P-384")


def check_signature(cert: x509.Certificate) -> None:
    """Refuse a leaf signed with MD5 or SHA-1 (or a hash this library does not know)."""
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        raise WeakSignature("the certificate's signature algorithm is not supported") from None
    if algorithm is not None and algorithm.name in WEAK_HASHES:
        raise WeakSignature(
            f"the certificate is signed with {algorithm.name.upper()}, which clients refuse; "
            "have it reissued with SHA-256 or better"
        )
    if algorithm is not None and not isinstance(algorithm, hashes.SHA256 | hashes.SHA384 | hashes.SHA512):
        raise WeakSignature(f"the certificate is signed with {algorithm.name}, which clients do not accept")


def check_certificate(cert: x509.Certificate) -> None:
    """The whole policy for a leaf certificate: its key, then its signature."""
    try:
        public_key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        raise KeyTypeUnsupported("the certificate's public key type is not supported") from None
    if cert.public_key_algorithm_oid == PublicKeyAlgorithmOID.RSASSA_PSS:
        raise KeyTypeUnsupported(
            "RSA-PSS (id-RSASSA-PSS) certificate keys are not accepted by Chrome and many mail clients; "
            "use an ordinary RSA key (rsaEncryption) or ECDSA P-256/P-384"
        )
    check_public_key(public_key)
    check_signature(cert)


_PEM_KEY = re.compile(rb"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----(.*?)-----END \1-----", re.DOTALL)


def check_private_key_size(pem: bytes) -> None:
    """Refuse a PEM private key whose DER is larger than any accepted key can be.

    Reads only the size of the base64 body, so a 16384-bit key is refused without parsing it.
    """
    for match in _PEM_KEY.finditer(pem):
        body = b"".join(line for line in match.group(2).splitlines() if b":" not in line)
        try:
            size = len(base64.b64decode(body, validate=False))
        except (binascii.Error, ValueError):
            continue  # the parser reports malformed keys
        if size > MAX_KEY_DER_BYTES:
            raise KeyTooLarge(
                f"the private key is {size} bytes of DER; keys above RSA-{RSA_MAX_BITS} are not accepted"
            )
