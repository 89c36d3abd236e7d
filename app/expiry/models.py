"""One row per (certificate, its not_after, threshold) notice already given.

The unique constraint is what makes a notice happen once with several workers: each scan inserts
the row with ON CONFLICT DO NOTHING and records the event only when its insert took, in the same
transaction. ``not_after`` is part of the key, so a certificate whose material is replaced (a new
``not_after``) is noticed afresh for its new dates.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, IdMixin


class ExpiryNotice(IdMixin, Base):
    __tablename__ = "expiry_notices"
    __table_args__ = (UniqueConstraint("certificate_id", "not_after", "threshold_days"),)

    certificate_id: Mapped[str] = mapped_column(ForeignKey("certificates.id", ondelete="CASCADE"))
    not_after: Mapped[datetime]
    threshold_days: Mapped[int] = mapped_column(Integer)  # 30, 14, 7, 1; 0: expired
    recorded_at: Mapped[datetime]
