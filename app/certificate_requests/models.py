"""A certificate request: a key certpost generated and sealed, and its CSR, waiting for the
certificate a CA issues for it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, IdMixin, TimestampMixin


class CertificateRequest(IdMixin, TimestampMixin, Base):
    __tablename__ = "certificate_requests"
    __table_args__ = (
        Index("ix_certificate_requests_account_created", "account_id", "created_at", "id"),
        Index("ix_certificate_requests_created", "created_at", "id"),
    )

    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    name: Mapped[str | None] = mapped_column(String(200))
    names: Mapped[list[str]] = mapped_column(JSON)
    key_type: Mapped[str] = mapped_column(String(16))  # ecdsa-p256 | ecdsa-p384 | rsa-2048 | ...
    csr_pem: Mapped[str] = mapped_column(Text)
    # SHA-256 of the DER SubjectPublicKeyInfo: an issued certificate pairs with the request when
    # its public key has the same SPKI (checked before the key is ever unsealed).
    public_key_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))  # pending | completed
    # Sealed like a certificate's key (app.kit.crypto, the row id as associated data); cleared
    # once the key moved into the certificate it was issued for.
    key_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    master_key_id: Mapped[str | None] = mapped_column(String(32))
    certificate_id: Mapped[str | None] = mapped_column(ForeignKey("certificates.id", ondelete="SET NULL"))
    completed_at: Mapped[datetime | None]
