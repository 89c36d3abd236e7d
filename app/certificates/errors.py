"""Refusals about certificate material and use, each with its stable code."""

from __future__ import annotations

from app.kit import x509 as kx
from app.problems import AppError, Conflict, Forbidden, RuleViolation


class InvalidCertificate(RuleViolation):
    """The certificate is not PEM (or PKCS#12) that parses as X.509, or neither the PEM pair nor a PKCS#12 archive was sent."""

    code, title = "invalid_certificate", "Not a readable certificate"


class InvalidKey(RuleViolation):
    """The private key is not a PEM (PKCS#8, PKCS#1 or SEC1) key certpost can read."""

    code, title = "invalid_key", "Not a readable private key"


class KeyMismatch(RuleViolation):
    """The private key is not the key of the certificate's public key."""

    code, title = "key_mismatch", "The private key does not match the certificate"


class KeyPassphrase(RuleViolation):
    """The private key is encrypted and the passphrase (`key_passphrase`, or the PKCS#12 password) is missing or wrong."""

    code, title = "key_passphrase", "Passphrase missing or wrong"


class InvalidChain(RuleViolation):
    """The chain does not link: each certificate must be signed by the next one, leaf first (RFC 8446 section 4.4.2)."""

    code, title = "invalid_chain", "The chain does not link leaf to issuers in order"


class KeyTooSmall(RuleViolation):
    """An RSA key under 2048 bits: browsers and mail clients refuse it."""

    code, title = "key_too_small", "The key is too small"


class KeyTooLarge(RuleViolation):
    """An RSA key over 8192 bits: too slow to be served."""

    code, title = "key_too_large", "The key is too large"


class KeyTypeUnsupported(RuleViolation):
    """A key type TLS clients do not accept for server certificates: DSA, Ed25519, Ed448."""

    code, title = "key_type_unsupported", "The key type is not accepted by TLS clients"


class CurveUnsupported(RuleViolation):
    """An elliptic curve other than P-256 or P-384 (the curves of Mozilla's Root Store Policy, section 5.1)."""

    code, title = "curve_unsupported", "The elliptic curve is not accepted by TLS clients"


class WeakSignature(RuleViolation):
    """The certificate is signed with MD5 or SHA-1, which clients refuse."""

    code, title = "weak_signature", "The certificate's signature algorithm is refused by clients"


class KeyIterationsTooHigh(RuleViolation):
    """The encrypted key's PBKDF2/scrypt parameters ask for more work than certpost spends on one request."""

    code, title = "key_iterations_too_high", "The key's password derivation asks for too much work"


class InvalidSan(RuleViolation):
    """A subjectAltName DNS name holds a control character or a space."""

    code, title = "invalid_san", "A subjectAltName holds a control character"


class CertificateInUse(Conflict):
    """The certificate is bound to a domain's service or is a server-wide certificate; `bindings` says how many uses to remove first."""

    code, title = "certificate_in_use", "The certificate is bound"
    extensions = ("bindings",)


class HostnameNotCovered(RuleViolation):
    """The certificate's names do not cover the host name it would serve (`hostname`), so clients would refuse it."""

    code, title = "hostname_not_covered", "The certificate does not cover the host name"
    extensions = ("hostname",)


class WildcardPublicSuffix(RuleViolation):
    """The only name that would cover `hostname` is a wildcard on a public suffix (`*.co.uk`), which clients refuse."""

    code, title = "wildcard_public_suffix", "A wildcard on a public suffix covers nothing"
    extensions = ("hostname",)


class CertificateNotPlatform(RuleViolation):
    """A server-wide certificate must belong to the platform (uploaded without an account)."""

    code, title = "certificate_not_platform", "Only a platform certificate (no account) can be server-wide"


class CertificateServerWide(Forbidden):
    """The certificate is a server's server-wide certificate: only an administrator replaces it."""

    code, title = "certificate_server_wide", "A server-wide certificate is changed by administrators only"


class CertificateExpired(RuleViolation):
    """The certificate's notAfter has passed: it cannot be bound or served."""

    code, title = "certificate_expired", "The certificate has expired"


class CertificateNotYetValid(RuleViolation):
    """The certificate's notBefore is in the future: it cannot be bound or served yet."""

    code, title = "certificate_not_yet_valid", "The certificate is not valid yet"


MATERIAL_ERRORS: tuple[type[AppError], ...] = (
    InvalidCertificate, InvalidKey, KeyMismatch, KeyPassphrase, InvalidChain, KeyTooSmall, KeyTooLarge,
    KeyTypeUnsupported, CurveUnsupported, WeakSignature, KeyIterationsTooHigh, InvalidSan,
)
"""Every refusal reading material can give, matched to ``kit`` errors by their shared ``code``."""

_BY_CODE: dict[str, type[AppError]] = {err.code: err for err in MATERIAL_ERRORS}


def from_material_error(exc: kx.MaterialError) -> AppError:
    return _BY_CODE.get(exc.code, InvalidCertificate)(str(exc))


class CertificateExists(Conflict):
    """PUT of material another certificate of the same owner holds (one row per material)."""

    code, title = "certificate_exists", "The owner already has a certificate with this material"
    extensions = ("certificate_id",)
