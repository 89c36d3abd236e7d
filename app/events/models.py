"""The event log: one row per state change, written in the transaction that makes the change.

``events.id`` is an integer from the database (SQLite ``AUTOINCREMENT``, a PostgreSQL identity
sequence): it only grows, and ``app.events.recorder`` inserts a transaction's events at commit
under one lock, so ids also become visible in increasing order (see its docstring): a reader
that remembers the last id it handled and asks for ``id > last`` misses nothing.

``event_subjects`` indexes every id an event is about (a binding event is about its domain, its
server and its certificate), so ``GET /v1/events?subject=<id>`` is one index range scan
whichever role the id played. No foreign keys to the subjects or the account: the log outlives
what it describes (a deleted certificate's ``certificate.deleted`` stays).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base

# SQLite makes only an INTEGER PRIMARY KEY an alias of the rowid (auto-assigned).
EventId = BigInteger().with_variant(Integer(), "sqlite")


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_kind_id", "kind", "id"),
        Index("ix_events_account_id_id", "account_id", "id"),
        Index("ix_events_occurred_at", "occurred_at"),
        {"sqlite_autoincrement": True},  # never reuse an id, even the highest one's
    )

    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime]
    actor_type: Mapped[str] = mapped_column(String(16))  # "token" | "worker" | "operator" | "enrolment"
    actor_id: Mapped[str] = mapped_column(String(80))  # the token's id, or the worker's id
    actor_role: Mapped[str | None] = mapped_column(String(16))  # the token's role; null for the worker
    account_id: Mapped[str | None] = mapped_column(String(36))  # whose event it is; null: the platform's
    subjects: Mapped[dict[str, Any]] = mapped_column(JSON)  # role -> id, e.g. {"certificate": "…"}
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class EventSubject(Base):
    __tablename__ = "event_subjects"
    # Retention deletes a batch of events' subject rows by event id (app/retention).
    __table_args__ = (Index("ix_event_subjects_event_id", "event_id"),)

    subject_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    event_id: Mapped[int] = mapped_column(EventId, ForeignKey("events.id", ondelete="CASCADE"), primary_key=True)
