"""Refusals about certificate material and use, each with its stable code."""

from app.kit import x509 as kx
from app.problems import AppError, Conflict, RuleViolation


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


class CertificateInUse(Conflict):
    code, title = "certificate_in_use", "The certificate is bound"


class HostnameNotCovered(RuleViolation):
    code, title = "hostname_not_covered", "The certificate does not cover the host name"


class CertificateExpired(RuleViolation):
    code, title = "certificate_expired", "The certificate has expired"


class CertificateNotYetValid(RuleViolation):
    code, title = "certificate_not_yet_valid", "The certificate is not valid yet"


_BY_MATERIAL: dict[type[kx.MaterialError], type[AppError]] = {
    kx.InvalidCertificate: InvalidCertificate,
    kx.InvalidKey: InvalidKey,
    kx.KeyMismatch: KeyMismatch,
    kx.KeyPassphrase: KeyPassphrase,
    kx.InvalidChain: InvalidChain,
}


def from_material_error(exc: kx.MaterialError) -> AppError:
    return _BY_MATERIAL.get(type(exc), InvalidCertificate)(str(exc))
