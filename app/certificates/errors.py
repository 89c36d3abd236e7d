"""Refusals about certificate material and use, each with its stable code."""

from __future__ import annotations

from app.kit import x509 as kx
from app.problems import AppError, Conflict, Forbidden, RuleViolation


class InvalidCertificate(RuleViolation):
    code, title = "invalid_certificate", "Not a readable certificate"


class InvalidKey(RuleViolation):
    code, title = "invalid_key", "Not a readable private key"


class KeyMismatch(RuleViolation):
    code, title = "key_mismatch", "The private key does not match the certificate"


class KeyPassphrase(RuleViolation):
    code, title = "key_passphrase", "Passphrase missing or wrong"


class InvalidChain(RuleViolation):
    code, title = "invalid_chain", "The chain does not link leaf to issuers in order"


class KeyTooSmall(RuleViolation):
    code, title = "key_too_small", "The key is too small"


class KeyTooLarge(RuleViolation):
    code, title = "key_too_large", "The key is too large"


class KeyTypeUnsupported(RuleViolation):
    code, title = "key_type_unsupported", "The key type is not accepted by TLS clients"


class CurveUnsupported(RuleViolation):
    code, title = "curve_unsupported", "The elliptic curve is not accepted by TLS clients"


class WeakSignature(RuleViolation):
    code, title = "weak_signature", "The certificate's signature algorithm is refused by clients"


class KeyIterationsTooHigh(RuleViolation):
    code, title = "key_iterations_too_high", "The key's password derivation asks for too much work"


class InvalidSan(RuleViolation):
    code, title = "invalid_san", "A subjectAltName holds a control character"


class CertificateInUse(Conflict):
    code, title = "certificate_in_use", "The certificate is bound"


class HostnameNotCovered(RuleViolation):
    code, title = "hostname_not_covered", "The certificate does not cover the host name"


class WildcardPublicSuffix(RuleViolation):
    code, title = "wildcard_public_suffix", "A wildcard on a public suffix covers nothing"


class CertificateNotPlatform(RuleViolation):
    code, title = "certificate_not_platform", "Only a platform certificate (no account) can be server-wide"


class CertificateServerWide(Forbidden):
    code, title = "certificate_server_wide", "A server-wide certificate is changed by administrators only"


class CertificateExpired(RuleViolation):
    code, title = "certificate_expired", "The certificate has expired"


class CertificateNotYetValid(RuleViolation):
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
