"""Deployments: the transactional outbox of what each server should serve.

A row is written in the same transaction as the change that caused it (RFC-free, but the
classic outbox pattern): if the process dies after the commit, the worker still finds it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, UniqueConstraint, bindparam, text
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base, IdMixin, TimestampMixin

STATUSES = ("pending", "retrying", "applied", "failed", "superseded")
DUE = ("pending", "retrying")
_DUE_SQL = text("status IN ('pending', 'retrying')")
_SCHEDULED_SQL = text("status IN ('pending', 'retrying') AND next_attempt_at IS NOT NULL")


class Deployment(IdMixin, TimestampMixin, Base):
    __tablename__ = "deployments"
    __table_args__ = (
        UniqueConstraint("server_id", "generation"),
        # At most one undelivered deployment per server: a later generation supersedes it in
        # place (outbox.py), so a server that cannot be reached does not pile up rows.
        Index("uq_deployments_due_server", "server_id", unique=True,
              sqlite_where=_DUE_SQL, postgresql_where=_DUE_SQL),
        # The claim's range scan: only undelivered rows of servers with an agent, by when they
        # are due (claims.py).
        Index("ix_deployments_due_at", "next_attempt_at", sqlite_where=_SCHEDULED_SQL,
              postgresql_where=_SCHEDULED_SQL),
    )

    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"))
    generation: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # NULL while the server has no agent: nothing to deliver to, nothing for a claim to walk.
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[dict | None] = mapped_column(JSON)
    applied_at: Mapped[datetime | None]
    # Applied with these names held back by the agent (app.agent.isolation): each a dict with
    # name, service, fingerprint, code, message, serving. None/[]: every name is served.
    failed_names: Mapped[list | None] = mapped_column(JSON)
    # How many generations this row carries: each change made while it was undelivered
    # raised its generation in place instead of adding a row.
    changes: Mapped[int] = mapped_column(Integer, default=1, server_default="1")


class DeploymentAttempt(IdMixin, Base):
    __tablename__ = "deployment_attempts"

    deployment_id: Mapped[str] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"), index=True)
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    outcome: Mapped[str] = mapped_column(String(16))  # applied | failed | error
    error: Mapped[dict | None] = mapped_column(JSON)
    bytes_sent: Mapped[int] = mapped_column(Integer, default=0)


class AppliedName(Base):
    """One host name of the document the server's agent last confirmed applying.

    Kept per name (not as one JSON document) so that a one-domain change is compared with, and
    recorded into, what the agent serves in O(changed names): see delivery.py.
    """

    __tablename__ = "applied_names"
    __table_args__ = (Index("ix_applied_names_server_fingerprint", "server_id", "fingerprint"),)

    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(253), primary_key=True)
    service: Mapped[str] = mapped_column(String(16))  # "mail" | "webmail"
    fingerprint: Mapped[str] = mapped_column(String(64))


class PendingName(Base):
    """A host name whose desired certificate may differ from the applied one.

    Written by ``outbox.servers_changed`` in the transaction of the change, with the generation
    that change made; a delivery of generation G clears the names marked at G or before. The
    next delta is computed from these names alone, not from two whole documents.
    """

    __tablename__ = "pending_names"

    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(253), primary_key=True)
    generation: Mapped[int] = mapped_column(Integer)


def is_due():
    """``status IN ('pending', 'retrying')`` with the values written into the SQL, not bound:
    a planner uses a partial index only when it can see that the query implies the index's
    predicate, which SQLite (and PostgreSQL's generic plans) cannot with bound parameters."""
    return Deployment.status.in_(bindparam("due_statuses", DUE, expanding=True, literal_execute=True))
