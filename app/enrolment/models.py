"""One-time enrolment tokens: how an agent registers itself with the controller."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, IdMixin


class EnrolmentToken(IdMixin, Base):
    """A token an administrator made for one server; only SHA-256 of its secret is kept.

    ``used_at`` is set by the one conditional UPDATE that spends it
    (``EnrolmentRepository.spend``): of two agents presenting the same token, one wins.
    """

    __tablename__ = "enrolment_tokens"

    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    description: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str | None] = mapped_column(String(36))  # the admin token's id
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_agent_url: Mapped[str | None] = mapped_column(String(500))
