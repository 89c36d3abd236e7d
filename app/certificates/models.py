"""A Certificate: public material in the clear, the private key sealed (``app.kit.crypto``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    event,
    func,
    inspect,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import Base, IdMixin, TimestampMixin
from app.kit.renewal import renewal_eligible_at
from app.versioning import version_column


class Certificate(IdMixin, TimestampMixin, Base):
    __tablename__ = "certificates"
    __table_args__ = (
        Index("ix_certificates_account_not_after", "account_id", "not_after"),
        Index("ix_certificates_account_created", "account_id", "created_at", "id"),
        Index("ix_certificates_created", "created_at", "id"),
    )

    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id", ondelete="RESTRICT"))
    name: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(16))  # upload | self-signed | acme
    subject: Mapped[str] = mapped_column(Text)
    issuer: Mapped[str] = mapped_column(Text)
    serial: Mapped[str] = mapped_column(String(64))
    sans: Mapped[list[str]] = mapped_column(JSON)
    not_before: Mapped[datetime]
    not_after: Mapped[datetime] = mapped_column(index=True)
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), index=True)
    key_type: Mapped[str] = mapped_column(String(16))
    key_bits: Mapped[int] = mapped_column(Integer)
    self_signed: Mapped[bool] = mapped_column(Boolean)
    # The chain verdict (app.kit.trust.ChainVerdict) and the trust store it was judged against
    # (TrustStore.identity). Time is not part of it: reads add expired / not_yet_valid. Rows judged
    # against another store are judged again at start-up (app.certificates.trust.refresh_stored).
    trusted: Mapped[bool] = mapped_column(Boolean)
    trust_reason: Mapped[str | None] = mapped_column(String(32))
    trust_detail: Mapped[str | None] = mapped_column(Text)
    trust_store: Mapped[str | None] = mapped_column(String(64))
    chain_length: Mapped[int] = mapped_column(Integer)
    certificate_pem: Mapped[str] = mapped_column(Text)  # the leaf
    chain_pem: Mapped[str] = mapped_column(Text, default="")  # issuers, leaf excluded
    key_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    key_wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32))
    revision: Mapped[int] = mapped_column(Integer, default=1)
    version: Mapped[int] = version_column()  # every change of the row (app/versioning.py): the ETag
    # ACME certificates only: when to renew, and how the last renewal went.
    order_id: Mapped[str | None] = mapped_column(String(36))  # the order that issued the material
    renewal_at: Mapped[datetime | None]
    renewal_status: Mapped[str | None] = mapped_column(String(16))  # scheduled | renewing | failed
    renewal_error: Mapped[dict | None] = mapped_column(JSON)
    renewal_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    next_renewal_attempt_at: Mapped[datetime | None]
    # Derived from source and the three above (app.kit.renewal) on every ORM flush, see below; the renewal
    # scan is one range scan on its index. NULL: never due (not ACME, or renewing).
    renewal_eligible_at: Mapped[datetime | None] = mapped_column(index=True)

    # Written with a new certificate, replaced by ``CertificateRepository.replace_names``,
    # queried for ``covers=``; never loaded with the row (lazy="raise": no read pays for it).
    names: Mapped[list[CertificateName]] = relationship(
        cascade="all, delete-orphan", lazy="raise", passive_deletes=True
    )


# One row per material per owner: an identical upload returns the row that exists
# (CertificateService.store_upload). COALESCE because NULLs are distinct in a unique index on both
# databases, and platform certificates have no account. Also serves "this owner's certificate with
# this fingerprint" lookups.
Index(
    "uq_certificates_owner_fingerprint",
    func.coalesce(Certificate.account_id, ""),
    Certificate.fingerprint_sha256,
    unique=True,
)


_RENEWAL_INPUTS = ("source", "renewal_at", "renewal_status", "next_renewal_attempt_at")


@event.listens_for(Certificate, "before_insert")
@event.listens_for(Certificate, "before_update")
def _keep_renewal_eligible_at(_mapper, _connection, cert: Certificate) -> None:
    """Whoever writes the renewal columns through the ORM keeps ``renewal_eligible_at`` right.

    Only when an input changed, so an unrelated update loads nothing. A Core ``UPDATE`` of
    these columns must set it itself (``app.acme.renewal.schedule_due_renewals`` does)."""
    state = inspect(cert)
    if state.persistent and not any(state.attrs[name].history.has_changes() for name in _RENEWAL_INPUTS):
        return
    cert.renewal_eligible_at = renewal_eligible_at(
        cert.source, cert.renewal_at, cert.renewal_status, cert.next_renewal_attempt_at)


class CertificateName(Base):
    """One row per SAN, so ``covers=`` is an indexed lookup (see ``kit.coverage.candidate_sans``)."""

    __tablename__ = "certificate_names"

    certificate_id: Mapped[str] = mapped_column(
        ForeignKey("certificates.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(253), primary_key=True, index=True)
