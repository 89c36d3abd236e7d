"""The scheduler's retention job: prune the event log, webhook deliveries and deployment history.

One job for the whole database, leased like every other (``app.scheduler.lease``) on its row
of ``scheduled_tasks``: the claim is one conditional UPDATE that only succeeds when the lease
is free and the run is due (``retention_check_seconds`` after the last one), so two workers
never prune at once and a crashed run is taken over once its lease runs out. Each batch of
``PRUNE_BATCH`` rows is its own transaction (``repository.py``); the heartbeat keeps the lease
while batches run. What a run pruned is logged and added to the row's totals, which /metrics
exports (``certpost_retention_pruned_rows_total``).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.context import AppContext
from app.kit.time import utc_now
from app.retention.models import ScheduledTask
from app.retention.repository import RetentionRepository
from app.retention.rules import Retention, retention
from app.scheduler.heartbeat import Heartbeat, LeaseLost
from app.scheduler.lease import Lease

log = logging.getLogger("certpost.retention")

TASK_ID = "retention"
PRUNE_BATCH = 1000
TASK_LEASE = Lease(ScheduledTask, ScheduledTask.lease_until, ScheduledTask.lease_owner)


async def claim_retention(session: AsyncSession, owner: str, now: datetime, lease: timedelta) -> list[str]:
    """The retention run when it is due and nobody holds it; the row is made on first use.

    A read first: the claim is looked at every few seconds and due once an hour, so most looks
    write nothing (on SQLite a write, even of no row, takes the database's write lock)."""
    due = or_(ScheduledTask.next_run_at.is_(None), ScheduledTask.next_run_at <= now)
    claimable = TASK_LEASE.free(now) & due
    found = (await session.execute(select(ScheduledTask.id, claimable).where(ScheduledTask.id == TASK_ID))).first()
    if found is None:
        dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
        await session.execute(dialect.insert(ScheduledTask).values(id=TASK_ID).on_conflict_do_nothing())
    elif not found[1]:
        return []
    taken = await TASK_LEASE.claim(session, TASK_ID, owner, now + lease, claimable=claimable)
    return [TASK_ID] if taken else []


async def run_retention(ctx: AppContext, task_id: str, owner: str) -> None:
    async def keep(session: AsyncSession, until: datetime) -> bool:
        return await TASK_LEASE.renew(session, task_id, owner, until)

    try:
        async with Heartbeat(ctx, keep, name=f"retention:{task_id}"):
            pruned = await prune(ctx, retention(ctx.settings, utc_now()))
    except LeaseLost:
        return
    await _finish(ctx, task_id, owner, pruned)
    log.info("retention: pruned %d events, %d webhook deliveries (%d attempts), %d deployments (%d attempts)",
             pruned["events"], pruned["webhook_deliveries"], pruned["webhook_attempts"],
             pruned["deployments"], pruned["deployment_attempts"])


async def prune(ctx: AppContext, rules: Retention) -> Counter:
    """Every batch that is due, each in its own transaction; rows pruned by table (and finished
    webhook deliveries by status too, as ``webhook_deliveries.<status>``)."""
    pruned: Counter = Counter(events=0, webhook_deliveries=0, webhook_attempts=0, deployments=0,
                              deployment_attempts=0)

    async def batches(step) -> None:
        while True:
            async with ctx.sessionmaker() as session:
                done = await step(RetentionRepository(session))
                await session.commit()
            if done < PRUNE_BATCH:
                return

    async def events(repo: RetentionRepository) -> int:
        n = await repo.prune_events(rules.events_before, PRUNE_BATCH)
        pruned["events"] += n
        return n

    async def deliveries(repo: RetentionRepository) -> int:
        by_status, attempts = await repo.prune_deliveries(rules.deliveries_before, PRUNE_BATCH)
        pruned.update({f"webhook_deliveries.{s}": n for s, n in by_status.items()})
        pruned["webhook_deliveries"] += by_status.total()
        pruned["webhook_attempts"] += attempts
        return by_status.total()

    async def deployments(repo: RetentionRepository) -> int:
        rows, attempts = await repo.prune_deployments(rules.deployments_keep, PRUNE_BATCH)
        pruned["deployments"] += rows
        pruned["deployment_attempts"] += attempts
        return rows

    if rules.events_before is not None:
        await batches(events)
    if rules.deliveries_before is not None:
        await batches(deliveries)
    if rules.deployments_keep is not None:
        await batches(deployments)
    return pruned


async def _finish(ctx: AppContext, task_id: str, owner: str, pruned: Counter) -> None:
    """Record the run and release the lease, if this worker still holds it."""
    now = utc_now()
    async with ctx.sessionmaker() as session:
        row = await session.get(ScheduledTask, task_id)
        if row is None or row.lease_owner != owner:
            return
        total = Counter(row.pruned_total or {})
        total.update(pruned)
        row.last_run_at, row.last_pruned, row.pruned_total = now, dict(pruned), dict(total)
        row.next_run_at = now + timedelta(seconds=ctx.settings.retention_check_seconds)
        row.lease_until, row.lease_owner = None, None
        await session.commit()
