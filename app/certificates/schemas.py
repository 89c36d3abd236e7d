from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from app.schemas import PemText, Strict

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
    trusted: bool = Field(description="The chain verifies to a trusted root for the certificate's own names.")
    chain_length: int = Field(description="Certificates stored, leaf included.")
    source: Literal["upload", "self-signed", "acme"]
    revision: int
    bindings: list[UsageOut]
    renewal_at: datetime | None = Field(description="ACME: when the worker renews it (ARI window or 2/3 of lifetime).")
    renewal_status: Literal["scheduled", "renewing", "failed"] | None
    renewal_error: dict | None = Field(description="ACME: why the last renewal failed (`step`, `code`, `detail`, `problem`).")
    created_at: datetime
    updated_at: datetime


class CertificatePage(BaseModel):
    items: list[CertificateOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null at the end.")
