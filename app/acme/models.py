"""ACME state: DNS providers, ACME accounts, certificate orders (secrets sealed like keys)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, IdMixin, TimestampMixin


class DnsProvider(IdMixin, TimestampMixin, Base):
    __tablename__ = "dns_providers"

    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    settings: Mapped[dict] = mapped_column(JSON)  # without secrets
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)  # JSON of the secret settings
    secret_wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32))


class AcmeAccount(IdMixin, TimestampMixin, Base):
    """One ACME account per directory URL, its key sealed (RFC 8555 section 7.3)."""

    __tablename__ = "acme_accounts"

    directory_url: Mapped[str] = mapped_column(String(500), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    account_uri: Mapped[str] = mapped_column(Text)
    key_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    key_wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32))


ORDER_STATUSES = ("pending", "processing", "valid", "invalid")


class CertificateOrder(IdMixin, TimestampMixin, Base):
    __tablename__ = "certificate_orders"
    __table_args__ = (Index("ix_certificate_orders_status_created", "status", "created_at"),)

    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"), index=True)
    domain: Mapped[str | None] = mapped_column(String(253))
    names: Mapped[list[str]] = mapped_column(JSON)
    challenge: Mapped[str] = mapped_column(String(16))  # dns-01 | http-01
    dns_provider_id: Mapped[str | None] = mapped_column(ForeignKey("dns_providers.id", ondelete="SET NULL"))
    key_type: Mapped[str] = mapped_column(String(16))
    bind: Mapped[list[str]] = mapped_column(JSON, default=list)
    purpose: Mapped[str] = mapped_column(String(16), default="new")  # new | renewal | replace
    # For a renewal or a replacement: the certificate whose material the result replaces.
    certificate_id: Mapped[str | None] = mapped_column(ForeignKey("certificates.id", ondelete="SET NULL"), index=True)
    result_certificate_id: Mapped[str | None] = mapped_column(ForeignKey("certificates.id", ondelete="SET NULL"))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    authorizations: Mapped[list[dict]] = mapped_column(JSON, default=list)
    error: Mapped[dict | None] = mapped_column(JSON)
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    finished_at: Mapped[datetime | None]
    duration_ms: Mapped[int | None] = mapped_column(Integer)
