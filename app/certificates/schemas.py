from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app import examples as ex
from app.paging import Page
from app.schemas import Condition, PemText, Strict, WarningOut

PEM_MAX = 256 * 1024

MATERIAL_EXAMPLE = {"certificate_pem": ex.CERTIFICATE_PEM, "private_key_pem": ex.PRIVATE_KEY_PEM,
                    "name": "example.com 2026"}


class CertificateMaterialIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [MATERIAL_EXAMPLE]})

    certificate_pem: PemText = Field(max_length=PEM_MAX, description="The leaf, optionally followed by its issuers, in order.",
                                     examples=[ex.CERTIFICATE_PEM])
    chain_pem: PemText | None = Field(None, max_length=PEM_MAX, description="Issuers, leaf's issuer first.",
                                      examples=[None])
    private_key_pem: PemText = Field(max_length=PEM_MAX, description="Write-only; stored encrypted, never returned.",
                                     examples=[ex.PRIVATE_KEY_PEM])
    key_passphrase: str | None = Field(None, max_length=1024, description="For an encrypted private key.",
                                       examples=[None])
    name: str | None = Field(None, max_length=200, description="A label for people (not a host name).",
                             examples=["example.com 2026"])


class CertificateUpload(CertificateMaterialIn):
    model_config = ConfigDict(json_schema_extra={"examples": [{**MATERIAL_EXAMPLE, "account_id": ex.ACCOUNT_ID}]})

    account_id: str | None = Field(None, description="Admins only: the owning account (default: none, a platform "
                                   "certificate). A customer's certificates are always its account's.",
                                   examples=[ex.ACCOUNT_ID])


class SelfSignedCreate(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"names": ["webmail.example.com", "mail.example.com"],
                                                               "name": "example.com (self-signed)", "days": 365}]})

    names: list[str] = Field(min_length=1, max_length=100, description="Host names (wildcards allowed) it covers; "
                             "the first is the subject's CN.", examples=[["webmail.example.com", "mail.example.com"]])
    name: str | None = Field(None, max_length=200, description="A label for people.",
                             examples=["example.com (self-signed)"])
    days: int = Field(365, ge=1, le=825, description="Validity in days, from now.", examples=[365])
    account_id: str | None = Field(None, description="Admins only: the owning account (default: the platform).",
                                   examples=[None])


class UsageOut(BaseModel):
    kind: Literal["domain", "server-mail", "server-webmail", "server-default"] = Field(
        description="`domain`: bound to a domain's service; `server-mail`: a server's server-wide mail "
        "certificate; `server-webmail`: a server's webmail default; `server-default`: a server's default "
        "certificate.", examples=["domain"])
    service: Literal["webmail", "mail"] = Field(description="The service it serves.", examples=["mail"])
    hostname: str = Field(description="The name it serves.", examples=["mail.example.com"])
    domain: str | None = Field(None, description="With `domain`: the domain.", examples=[ex.DOMAIN])
    server_id: str | None = Field(None, description="With `server-*`: the server.", examples=[None])


CERTIFICATE_EXAMPLE = {
    "id": ex.CERTIFICATE_ID, "name": "example.com 2026", "account_id": ex.ACCOUNT_ID, "subject": ex.SUBJECT,
    "issuer": ex.SUBJECT, "serial": ex.SERIAL, "sans": ex.SANS, "not_before": ex.NOT_BEFORE,
    "not_after": ex.NOT_AFTER, "fingerprint_sha256": ex.FINGERPRINT, "key_type": "ec-p256", "key_bits": 256,
    "self_signed": True, "trusted": False,
    "trust": {"trusted": False, "reason": "self_signed", "detail": "the certificate is self-signed"},
    "chain_length": 1, "source": "upload", "revision": 1,
    "bindings": [{"kind": "domain", "service": "mail", "hostname": "mail.example.com", "domain": ex.DOMAIN,
                  "server_id": None}],
    "renewal_at": None, "renewal_status": None, "renewal_error": None,
    "created_at": ex.CREATED, "updated_at": ex.UPDATED,
}


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
    model_config = ConfigDict(json_schema_extra={"examples": [CERTIFICATE_EXAMPLE]})

    id: str = Field(description="The certificate's id.", examples=[ex.CERTIFICATE_ID])
    name: str | None = Field(description="The label given at upload.", examples=["example.com 2026"])
    account_id: str | None = Field(description="The owning account; null: a platform certificate.",
                                   examples=[ex.ACCOUNT_ID])
    subject: str = Field(description="Subject DN (RFC 4514).", examples=[ex.SUBJECT])
    issuer: str = Field(description="Issuer DN (RFC 4514).", examples=[ex.LE_ISSUER])
    serial: str = Field(description="Serial number (hex).", examples=[ex.SERIAL])
    sans: list[str] = Field(description="DNS subjectAltNames, in A-labels.", examples=[ex.SANS])
    not_before: datetime = Field(description="Valid from (UTC).", examples=[ex.NOT_BEFORE])
    not_after: datetime = Field(description="Valid until (UTC, inclusive).", examples=[ex.NOT_AFTER])
    fingerprint_sha256: str = Field(description="SHA-256 of the leaf's DER (hex).", examples=[ex.FINGERPRINT])
    key_type: str = Field(description="rsa, ec-p256, ec-p384, ec-p521 or ed25519", examples=["ec-p256"])
    key_bits: int = Field(description="Key size in bits.", examples=[256])
    self_signed: bool = Field(description="Issued by itself.", examples=[False])
    trusted: bool = Field(
        description="Same as `trust.trusted`: judged against the current trust store when read, not frozen at upload.",
        examples=[True],
    )
    trust: TrustOut = Field(description="Whether a client would trust the certificate now, and why not.")
    chain_length: int = Field(description="Certificates stored, leaf included.", examples=[2])
    source: Literal["upload", "self-signed", "acme"] = Field(description="How it came: uploaded, generated "
                                                             "self-signed, or issued over ACME.", examples=["upload"])
    revision: int = Field(description="1, then one more each time its material is replaced.", examples=[1])
    bindings: list[UsageOut] = Field(description="Where it is served.")
    renewal_at: datetime | None = Field(description="ACME: when the worker renews it (ARI window or 2/3 of lifetime).",
                                        examples=[None])
    renewal_status: Literal["scheduled", "renewing", "failed"] | None = Field(
        description="ACME: the renewal's state; null for other certificates.", examples=[None])
    renewal_error: Condition | None = Field(description="ACME: why the last renewal failed (`code`, `message`, `step`, "
                                            "`at`).",
                                       examples=[None])
    created_at: datetime = Field(description="When it was stored (UTC).", examples=[ex.CREATED])
    updated_at: datetime = Field(description="When it last changed (UTC).", examples=[ex.UPDATED])


SELF_SIGNED_WARNING = {"code": "self_signed", "message": "The certificate is self-signed: every client will warn."}


class CertificateUploadOut(CertificateOut):
    """A stored certificate as an upload answers it: new (201) or the identical one already stored (200)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{**CERTIFICATE_EXAMPLE, "already_existed": False,
                                                               "warnings": [SELF_SIGNED_WARNING]}]})

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

    model_config = ex.page(CERTIFICATE_EXAMPLE, ex.CURSOR)
