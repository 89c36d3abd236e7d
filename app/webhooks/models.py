"""Webhook endpoints, one delivery per (endpoint, event), and every attempt of each delivery.

The secret is sealed like a DNS provider's TSIG secret (``app.kit.crypto``: a data key per row,
wrapped by the master key, the row id bound as associated data) and never stored in the clear.
``after_event_id`` is the endpoint's place in the event log: the worker turns later events that
the endpoint subscribes to into deliveries and moves it on, under the endpoint's lease, so two
workers never fan one event out twice (and ``uq_webhook_deliveries_webhook_id`` says so too).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, IdMixin, TimestampMixin

DELIVERY_STATUSES = ("pending", "retrying", "delivered", "failed")


class Webhook(IdMixin, TimestampMixin, Base):
    __tablename__ = "webhooks"

    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    admin_owned: Mapped[bool] = mapped_column(Boolean, default=False)  # created by an admin: not guarded
    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str | None] = mapped_column(String(200))
    kinds: Mapped[list[str]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(32))  # manual | failing | gone
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    secret_wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(32))
    after_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    failing_since: Mapped[datetime | None]  # first failed attempt since the last success
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))


class WebhookDelivery(IdMixin, TimestampMixin, Base):
    """One event for one endpoint; its id is the ``webhook-id`` header of every attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("webhook_id", "event_id"),
        Index("ix_webhook_deliveries_due", "webhook_id", "status", "next_attempt_at"),
        # Retention: finished deliveries by when they last changed (app/retention).
        Index("ix_webhook_deliveries_status_updated_at", "status", "updated_at"),
    )

    webhook_id: Mapped[str] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(BigInteger)
    event_kind: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)  # exactly what is signed and sent
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    redelivery: Mapped[bool] = mapped_column(Boolean, default=False)  # the next attempt was asked for


class WebhookAttempt(IdMixin, Base):
    __tablename__ = "webhook_attempts"

    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    redelivery: Mapped[bool] = mapped_column(Boolean, default=False)
