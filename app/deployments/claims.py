"""Which worker delivers to which server: a lease on the server row.

A worker claims a server with one conditional UPDATE (``... WHERE deploy_lease_until IS NULL
OR deploy_lease_until < now``). On PostgreSQL a second worker running the same UPDATE waits
for the first one's row lock and then re-checks the condition (READ COMMITTED re-evaluation),
so it updates nothing; on SQLite writers are serialised anyway. So several workers never
deliver to one server at once.

The lease is short (``lease_seconds``) and renewed by a heartbeat while the delivery runs
(``heartbeat.py``), so a worker that dies loses it within seconds, not after the longest a
delivery could take.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.deployments.models import Deployment, is_due
from app.servers.models import Server


def _free(now: datetime):
    return or_(Server.deploy_lease_until.is_(None), Server.deploy_lease_until < now)


def candidates_query(now: datetime, limit: int):
    """Servers with a deployment due now and no live lease.

    The scan is the partial index ``ix_deployments_due_at``: undelivered rows only (at most one
    per server, outbox.py), those of servers without an agent have no due time and are not in
    the range at all, and delivered history is not in the index however long it grows.
    """
    return (
        select(Deployment.server_id)
        .join(Server, Server.id == Deployment.server_id)
        .where(
            is_due(),
            Deployment.next_attempt_at <= now,
            Server.agent_url.is_not(None),
            _free(now),
        )
        .order_by(Deployment.next_attempt_at)
        .limit(limit)
    )


async def claim_due_servers(session: AsyncSession, owner: str, now: datetime, lease: timedelta, limit: int) -> list[str]:
    """Claim up to ``limit`` due servers for this worker (see ``candidates_query``)."""
    candidates = list(await session.scalars(candidates_query(now, limit)))
    claimed: list[str] = []
    for server_id in candidates:
        result = await session.execute(
            update(Server)
            .where(Server.id == server_id, _free(now))
            .values(deploy_lease_until=now + lease, deploy_lease_owner=owner)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            claimed.append(server_id)
    return claimed


async def renew(session: AsyncSession, server_id: str, owner: str, until: datetime) -> bool:
    """Extend this worker's lease on a server; False when it is no longer this worker's."""
    result = await session.execute(
        update(Server)
        .where(Server.id == server_id, Server.deploy_lease_owner == owner)
        .values(deploy_lease_until=until)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def release(session: AsyncSession, server_id: str, owner: str) -> None:
    await session.execute(
        update(Server)
        .where(Server.id == server_id, Server.deploy_lease_owner == owner)
        .values(deploy_lease_until=None, deploy_lease_owner=None)
        .execution_options(synchronize_session=False)
    )
