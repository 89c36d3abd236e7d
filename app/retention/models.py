"""One row per singleton maintenance task of the scheduler (today: ``retention``).

A task that is not about any one row still needs one to lease (``app.scheduler.lease``): this
row carries the lease, when the task is due again, and what its runs pruned, so that two
workers never prune at once and /metrics can read the totals whichever worker ran it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db import Base


class ScheduledTask(Base):
    __tablename__ = "scheduled_tasks"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # "retention"
    next_run_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    last_run_at: Mapped[datetime | None]
    # table (or "webhook_deliveries.<status>") -> rows: pruned by the last run, and by every run.
    last_pruned: Mapped[dict | None] = mapped_column(JSON)
    pruned_total: Mapped[dict | None] = mapped_column(JSON)
