"""Which worker delivers to which server: a lease on the server row.

The scheduler's one lease rule (``app.scheduler.lease``) on the server row's
``deploy_lease_until``/``deploy_lease_owner``: several workers never deliver to one server at once.

The lease is short (``lease_seconds``) and renewed by a heartbeat while the delivery runs
(``heartbeat.py``), so a worker that dies loses it within seconds, not after the longest a
delivery could take.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.deployments.models import Deployment, is_due
from app.scheduler.lease import Lease
from app.servers.models import Server

SERVER_LEASE = Lease(Server, Server.deploy_lease_until, Server.deploy_lease_owner)


def _free(now: datetime):
    return SERVER_LEASE.free(now)


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
    return await SERVER_LEASE.claim_many(session, candidates, owner, now + lease, claimable=_free(now))


async def renew(session: AsyncSession, server_id: str, owner: str, until: datetime) -> bool:
    """Extend this worker's lease on a server; False when it is no longer this worker's."""
    return await SERVER_LEASE.renew(session, server_id, owner, until)


async def release(session: AsyncSession, server_id: str, owner: str) -> None:
    await SERVER_LEASE.release(session, server_id, owner)
