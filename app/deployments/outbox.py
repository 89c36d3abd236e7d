"""Recording that a server's desired configuration changed (the outbox write).

Callers are services inside a request or job transaction; nothing here commits. The bump is
a single UPDATE ... SET desired_generation = desired_generation + 1 so that two concurrent
transactions on PostgreSQL serialise on the server row instead of both writing generation N.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.deployments.models import Deployment
from app.kit.time import utc_now
from app.servers.models import Server


async def servers_changed(session: AsyncSession, server_ids: Iterable[str], reason: str) -> None:
    """One new generation per server per transaction, however many changes it holds."""
    now = utc_now()
    bumped: set[str] = session.info.setdefault("transaction", {}).setdefault("bumped_servers", set())
    session.info["transaction"]["worker_work"] = True  # app.db.record_worker_work: wake the worker
    for server_id in sorted(set(server_ids) - bumped):
        bumped.add(server_id)
        generation = await session.scalar(
            update(Server)
            .where(Server.id == server_id)
            .values(desired_generation=Server.desired_generation + 1)
            .returning(Server.desired_generation)
        )
        if generation is None:
            continue
        session.add(
            Deployment(
                server_id=server_id,
                generation=generation,
                reason=reason[:200],
                status="pending",
                next_attempt_at=now,
            )
        )
    await session.flush()
