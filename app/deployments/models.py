"""Deployments: the transactional outbox of what each server should serve.

A row is written in the same transaction as the change that caused it (RFC-free, but the
classic outbox pattern): if the process dies after the commit, the worker still finds it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, IdMixin, TimestampMixin

STATUSES = ("pending", "retrying", "applied", "failed", "superseded")


class Deployment(IdMixin, TimestampMixin, Base):
    __tablename__ = "deployments"
    __table_args__ = (
        UniqueConstraint("server_id", "generation"),
        Index("ix_deployments_status_next_attempt_at", "status", "next_attempt_at"),
    )

    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"))
    generation: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[dict | None] = mapped_column(JSON)
    applied_at: Mapped[datetime | None]
    # Applied with these names held back by the agent (app.agent.isolation): each a dict with
    # name, service, fingerprint, code, message, serving. None/[]: every name is served.
    failed_names: Mapped[list | None] = mapped_column(JSON)


class DeploymentAttempt(IdMixin, Base):
    __tablename__ = "deployment_attempts"

    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(16))  # applied | failed | error
    error: Mapped[dict | None] = mapped_column(JSON)
    bytes_sent: Mapped[int] = mapped_column(Integer, default=0)
