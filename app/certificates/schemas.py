from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from app.paging import Page
from app.schemas import PemText, Strict, WarningOut

PEM_MAX = 256 * 1024


class CertificateMaterialIn(Strict):
    certificate_pem: PemText = Field(max_length=PEM_MAX, description="The leaf, optionally followed by its issuers, in order.")
    chain_pem: PemText | None = Field(None, max_length=PEM_MAX, description="Issuers, leaf's issuer first.")
    private_key_pem: PemText = Field(max_length=PEM_MAX, description="Write-only; stored encrypted, never returned.")
    key_passphrase: str | None = Field(None, max_length=1024, description="For an encrypted private key.")
    name: str | None = Field(None, max_length=200)


class CertificateUpload(CertificateMaterialIn):
    account_id: str | None = Field(None, description="Admins only: the owning account (default: none).")


class SelfSignedCreate(Strict):
    names: list[str] = Field(min_length=1, max_length=100)
    name: str | None = Field(None, max_length=200)
    days: int = Field(365, ge=1, le=825)
    account_id: str | None = None


class UsageOut(BaseModel):
    kind: Literal["domain", "server-mail", "server-webmail", "server-default"]
    service: Literal["webmail", "mail"]
    hostname: str
    domain: str | None = None
    server_id: str | None = None


TrustReason = Literal[
    "self_signed", "unknown_issuer", "name_constraints", "issuer_expired", "no_subject_alt_name",
    "invalid_chain", "expired", "not_yet_valid",
]


class TrustOut(BaseModel):
    trusted: bool = Field(
        description="A client would accept the certificate now: the chain builds to a root of the current trust "
        "store (Mozilla's and CERTPOST_TRUST_BUNDLE) for the certificate's own names, and it is in date.",
        examples=[False],
    )
    reason: TrustReason | None = Field(
        description="Why not (null when trusted): self_signed; unknown_issuer (an intermediate missing, or a root "
        "the trust store does not hold); name_constraints (an issuer's nameConstraints exclude its names); "
        "issuer_expired; no_subject_alt_name; invalid_chain (another refusal of the path validation); "
        "expired; not_yet_valid. Chain reasons come before time ones.",
        examples=["unknown_issuer"],
    )
    detail: str | None = Field(
        description="The reason in words, for people.",
        examples=[("no path to a trusted root from issuer CN=Example Issuing CA: an intermediate is missing, "
                   "or the root is not in the trust store")],
    )


class CertificateOut(BaseModel):
    id: str
    name: str | None
    account_id: str | None
    subject: str
    issuer: str
    serial: str
    sans: list[str]
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    key_type: str = Field(description="rsa, ec-p256, ec-p384, ec-p521 or ed25519")
    key_bits: int
    self_signed: bool
    trusted: bool = Field(
        description="Same as `trust.trusted`: judged against the current trust store when read, not frozen at upload.",
        examples=[True],
    )
    trust: TrustOut = Field(description="Whether a client would trust the certificate now, and why not.")
    chain_length: int = Field(description="Certificates stored, leaf included.")
    source: Literal["upload", "self-signed", "acme"]
    revision: int
    bindings: list[UsageOut]
    renewal_at: datetime | None = Field(description="ACME: when the worker renews it (ARI window or 2/3 of lifetime).")
    renewal_status: Literal["scheduled", "renewing", "failed"] | None
    renewal_error: dict | None = Field(description="ACME: why the last renewal failed (`step`, `code`, `detail`, `problem`).")
    created_at: datetime
    updated_at: datetime


class CertificateUploadOut(CertificateOut):
    already_existed: bool = Field(
        description="True when the owner already had this certificate (same SHA-256 fingerprint): the existing "
        "one is returned with 200 and nothing is stored; false with 201 for a new certificate.",
        examples=[False],
    )
    warnings: list[WarningOut] = Field(
        description="What clients would warn about, with the codes binding uses: self_signed, "
        "certificate_untrusted, certificate_expired, certificate_not_yet_valid, certificate_expiring (under "
        "CERTPOST_EXPIRING_DAYS); and chain_differs when an identical certificate was returned that is stored "
        "with another chain.",
        examples=[[{"code": "certificate_expiring", "message": "The certificate expires in 12 days (2026-12-13)."}]],
    )


class CertificatePage(Page[CertificateOut]):
    """A page of certificates, oldest first."""
