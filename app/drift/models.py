"""What the agents observed their ports serving (migration 0012_drift_observations)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class DriftPoll(Base):
    """The worker's reading of one server's observations: when next, from where on.

    A table of its own rather than columns of ``servers``: every UPDATE of a server raises its
    version (its ETag, app/versioning.py), and a poll every few minutes must not make an
    administrator's ``If-Match`` fail.
    """

    __tablename__ = "drift_polls"

    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), primary_key=True)
    # The next poll; a worker claims it by moving it forward in one conditional UPDATE.
    next_at: Mapped[datetime] = mapped_column(index=True)
    polled_at: Mapped[datetime | None]
    # The agent process's epoch and the last observation read from it (GET /v1/observations).
    epoch: Mapped[str | None] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer, default=0)
    # Probes whose port served something else than the agent applied, after the last poll.
    drifted: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(String(500))
    # When the last repair delivery was scheduled for drift (rules.repair_due).
    repair_at: Mapped[datetime | None]
    # Repairs scheduled since the server last had no drifted port (migration 0017): each one
    # doubles the wait before the next (rules.repair_due).
    repairs: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class ServedObservation(Base):
    """The latest probe of one name (or of no SNI: ``hostname`` "") on one daemon's port."""

    __tablename__ = "served_observations"
    __table_args__ = (Index("ix_served_observations_drift", "server_id", "drifted"),)

    server_id: Mapped[str] = mapped_column(ForeignKey("servers.id", ondelete="CASCADE"), primary_key=True)
    hostname: Mapped[str] = mapped_column(String(253), primary_key=True)
    service: Mapped[str] = mapped_column(String(16), primary_key=True)  # "mail" | "webmail"
    daemon: Mapped[str] = mapped_column(String(16), primary_key=True)
    port: Mapped[int] = mapped_column(Integer, primary_key=True)
    protocol: Mapped[str] = mapped_column(String(16))
    # What the agent had applied for this name (expected) and what the port presented (None:
    # no handshake, see error).
    expected: Mapped[str] = mapped_column(String(64))
    served: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(String(500))
    drifted: Mapped[bool]
    observed_at: Mapped[datetime]
