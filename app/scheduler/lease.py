"""The one lease rule every job of the scheduler follows.

A job's row (a server for deliveries, an order, a webhook) carries ``lease_until`` and
``lease_owner`` columns. A worker takes the job with one conditional UPDATE (``... WHERE id = ?
AND <free>``): on PostgreSQL a second worker running the same UPDATE waits for the first one's
row lock and then re-checks the condition (READ COMMITTED re-evaluation), so it updates
nothing; on SQLite writers are serialised anyway. So one job runs on one worker at a time, on
both databases, without ``SELECT ... FOR UPDATE SKIP LOCKED``.

The lease is short (``lease_seconds``) and renewed by the heartbeat while the job runs
(``heartbeat.py``), so a worker that dies loses it within seconds; renewing and releasing are
conditional on the owner, so a worker that lost its lease writes nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, true, update
from sqlalchemy.ext.asyncio import AsyncSession


@dataclass(frozen=True)
class Lease:
    """The lease columns of one kind of job row."""

    model: Any
    until: Any
    owner: Any

    def free(self, now: datetime):
        """No live lease: never taken, released, or run out."""
        return or_(self.until.is_(None), self.until < now)

    async def claim(self, session: AsyncSession, row_id: str, owner: str, until: datetime, *,
                    claimable: Any, values: dict | None = None) -> bool:
        """Take the row if ``claimable`` (which must include the freedom rule that fits the job,
        usually ``free(now)``) still holds; one winner among concurrent workers."""
        result = await session.execute(
            update(self.model).where(self.model.id == row_id, claimable)
            .values({self.until.key: until, self.owner.key: owner, **(values or {})})
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    async def claim_many(self, session: AsyncSession, ids: list[str], owner: str, until: datetime, *,
                         claimable: Any, values: dict | None = None) -> list[str]:
        return [i for i in ids if await self.claim(session, i, owner, until, claimable=claimable, values=values)]

    async def renew(self, session: AsyncSession, row_id: str, owner: str, until: datetime, *,
                    still: Any = None) -> bool:
        """Extend this worker's lease; False when it is no longer this worker's (or ``still`` fails)."""
        result = await session.execute(
            update(self.model).where(self.model.id == row_id, self.owner == owner,
                                     true() if still is None else still)
            .values({self.until.key: until})
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    async def release(self, session: AsyncSession, row_id: str, owner: str) -> None:
        await session.execute(
            update(self.model).where(self.model.id == row_id, self.owner == owner)
            .values({self.until.key: None, self.owner.key: None})
            .execution_options(synchronize_session=False)
        )
