from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app import examples as ex
from app.certificates.schemas import PEM_MAX
from app.paging import Page
from app.schemas import PemText, Strict

KeyType = Literal["ecdsa-p256", "ecdsa-p384", "rsa-2048", "rsa-3072", "rsa-4096"]


class CertificateRequestCreate(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "names": ["example.com", "*.example.com"], "key_type": "ecdsa-p256", "name": "example.com 2027",
    }]})

    names: list[str] = Field(min_length=1, max_length=100, description="Host names the certificate is for "
                             "(wildcards allowed); the first is the subject's commonName, all are "
                             "subjectAltNames.", examples=[["example.com", "*.example.com"]])
    key_type: KeyType = Field("ecdsa-p256", description="The key to generate: ECDSA on P-256 or P-384, or RSA "
                              "of 2048, 3072 or 4096 bits.", examples=["ecdsa-p256"])
    name: str | None = Field(None, max_length=200, description="A label for people; the certificate gets it "
                             "when it is imported without one.", examples=["example.com 2027"])
    account_id: str | None = Field(None, description="Admins only: the owning account (default: none, a "
                                   "platform request). A customer's requests are always its account's.",
                                   examples=[ex.ACCOUNT_ID])


class IssuedCertificateIn(Strict):
    model_config = ConfigDict(json_schema_extra={"examples": [{"certificate_pem": ex.CERTIFICATE_PEM,
                                                               "chain_pem": None, "name": "example.com 2027"}]})

    certificate_pem: PemText = Field(max_length=PEM_MAX, description="The certificate the CA issued for the "
                                     "request, optionally followed by its issuers. No private key: the "
                                     "request's is used.", examples=[ex.CERTIFICATE_PEM])
    chain_pem: PemText | None = Field(None, max_length=PEM_MAX, description="The issuers, in any order.",
                                      examples=[None])
    name: str | None = Field(None, max_length=200, description="A label for people (default: the request's).",
                             examples=["example.com 2027"])


REQUEST_EXAMPLE = {
    "id": ex.REQUEST_ID, "account_id": ex.ACCOUNT_ID, "name": "example.com 2027",
    "names": ["example.com", "*.example.com"], "key_type": "ecdsa-p256", "status": "pending",
    "csr_pem": ex.CSR_PEM, "public_key_sha256": ex.CSR_PUBLIC_KEY_SHA256, "certificate_id": None,
    "completed_at": None, "created_at": ex.CREATED, "updated_at": ex.UPDATED,
}


class CertificateRequestOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [REQUEST_EXAMPLE]})

    id: str = Field(description="The request's id; import the issued certificate at "
                    "`/v1/certificate-requests/{id}/certificate`.", examples=[ex.REQUEST_ID])
    account_id: str | None = Field(description="The owning account; null: the platform's.", examples=[ex.ACCOUNT_ID])
    name: str | None = Field(description="Its label for people.", examples=["example.com 2027"])
    names: list[str] = Field(description="The names requested, as A-labels; the first is the commonName.",
                             examples=[["example.com", "*.example.com"]])
    key_type: KeyType = Field(description="The generated key's type.", examples=["ecdsa-p256"])
    status: Literal["pending", "completed"] = Field(
        description="`pending`: waiting for the certificate a CA issues; `completed`: imported as "
        "`certificate_id`, and the key moved into that certificate.", examples=["pending"])
    csr_pem: str = Field(description="The PKCS#10 certificate signing request (RFC 2986), PEM, to give the CA.",
                         examples=[ex.CSR_PEM])
    public_key_sha256: str = Field(description="SHA-256 of the public key (DER SubjectPublicKeyInfo), hex: what "
                                   "the issued certificate's key must be.", examples=[ex.CSR_PUBLIC_KEY_SHA256])
    certificate_id: str | None = Field(description="The certificate made from it, once completed.",
                                       examples=[None])
    completed_at: datetime | None = Field(description="When the issued certificate was imported (UTC).",
                                          examples=[None])
    created_at: datetime = Field(description="When it was created (UTC).", examples=[ex.CREATED])
    updated_at: datetime = Field(description="When it last changed (UTC).", examples=[ex.UPDATED])


class CertificateRequestPage(Page[CertificateRequestOut]):
    """A page of certificate requests, newest first."""

    model_config = ex.page(REQUEST_EXAMPLE, ex.cursor("certificate-requests", "2026-11-30T09:15:00+00:00",
                                                      ex.REQUEST_ID))
