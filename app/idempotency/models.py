"""The first response to each (caller, Idempotency-Key), kept 24 hours."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, IdMixin


class IdempotencyKey(IdMixin, Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    scope: Mapped[str] = mapped_column(String(80))  # whose key: "account:<id>" or "token:<id>"
    key: Mapped[str] = mapped_column(String(255))
    fingerprint: Mapped[str] = mapped_column(String(64))  # SHA-256 of method, path and body
    owner: Mapped[str | None] = mapped_column(String(36))  # the request holding it while in flight
    lease_until: Mapped[datetime | None]  # in flight until then; NULL once the response is stored
    status: Mapped[int | None] = mapped_column(Integer)  # NULL while in flight
    headers: Mapped[dict | None] = mapped_column(JSON)  # Location, ETag, Content-Type
    body_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)  # sealed (app/kit/crypto.py)
    body_wrapped: Mapped[bytes | None] = mapped_column(LargeBinary)
    master_key_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
