"""Accounts (a hosting customer) and the API tokens that act for them or for an admin."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, IdMixin, TimestampMixin


class Account(IdMixin, TimestampMixin, Base):
    __tablename__ = "accounts"

    name: Mapped[str] = mapped_column(String(200), unique=True)


class ApiToken(IdMixin, Base):
    __tablename__ = "api_tokens"

    role: Mapped[str] = mapped_column(String(16))  # "admin" | "customer"
    account_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 hex of the secret part
    description: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
