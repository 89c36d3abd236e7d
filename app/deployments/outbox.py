"""Recording that a server's desired configuration changed (the outbox write).

Callers are services inside a request or job transaction; nothing here commits. The bump is
a single UPDATE ... SET desired_generation = desired_generation + 1 so that two concurrent
transactions on PostgreSQL serialise on the server row instead of both writing generation N;
everything else written here happens under that row lock.

A server has at most one undelivered deployment: a change made while one waits raises that
row's generation in place (a partial unique index holds the rule), so an unreachable server
costs one row, not one per change. The names a change touched are marked in ``pending_names``
with its generation, so the next delivery computes its delta from them alone (delivery.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.deployments.models import AppliedName, Deployment, PendingName, is_due
from app.kit.time import utc_now
from app.servers.models import Server

# Marked names per server: (server_id -> host names such as "mail.example.com").
ChangedNames = Mapping[str, Iterable[str]]


async def servers_changed(session: AsyncSession, server_ids: Iterable[str], reason: str, *,
                          names: ChangedNames) -> None:
    """One new generation per server per transaction, however many changes it holds.

    ``names`` must list every host name whose desired certificate the change may have moved
    (bound, unbound, rebound, replaced material, domain removed); a change of the server's own
    scalars (server-wide or default certificate) lists none. Names marked twice in one
    transaction are marked once, with the transaction's generation.
    """
    now = utc_now()
    bumped: dict[str, int] = session.info.setdefault("transaction", {}).setdefault("bumped_servers", {})
    session.info["transaction"]["worker_work"] = True  # app.db.record_worker_work: wake the worker
    for server_id in sorted(set(server_ids) - bumped.keys()):
        row = (await session.execute(
            update(Server)
            .where(Server.id == server_id)
            .values(desired_generation=Server.desired_generation + 1)
            .returning(Server.desired_generation, Server.agent_url)
        )).first()
        if row is None:
            continue
        generation, agent_url = row
        bumped[server_id] = generation
        await _queue(session, server_id, generation, reason, now if agent_url else None)
    marks = [
        {"server_id": server_id, "hostname": hostname, "generation": bumped[server_id]}
        for server_id, hostnames in sorted(names.items()) if server_id in bumped
        for hostname in sorted(set(hostnames))
    ]
    for start in range(0, len(marks), 500):
        await _mark(session, marks[start:start + 500])
    await session.flush()


async def _queue(session: AsyncSession, server_id: str, generation: int, reason: str, due) -> None:
    """Raise the waiting deployment to ``generation``, or write one if none waits."""
    moved = await session.execute(
        update(Deployment)
        .where(Deployment.server_id == server_id, is_due())
        .values(generation=generation, reason=reason[:200], status="pending", next_attempt_at=due,
                attempts=0, changes=Deployment.changes + 1, updated_at=utc_now())
        .execution_options(synchronize_session=False)
    )
    if moved.rowcount:
        return
    session.add(Deployment(server_id=server_id, generation=generation, reason=reason[:200], status="pending",
                           next_attempt_at=due, changes=1))
    await session.flush()


async def _mark(session: AsyncSession, rows: list[dict]) -> None:
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(PendingName).values(rows)
    await session.execute(stmt.on_conflict_do_update(
        index_elements=["server_id", "hostname"], set_={"generation": stmt.excluded.generation}))


async def forget_applied(session: AsyncSession, server_id: str) -> None:
    """What the server applied is unknown from now on (a new agent): the next delivery sends
    the whole document and records it afresh."""
    await session.execute(
        update(Server).where(Server.id == server_id).values(applied_digest=None, applied_head=None)
        .execution_options(synchronize_session=False)
    )
    await session.execute(delete(AppliedName).where(AppliedName.server_id == server_id))
    await session.execute(delete(PendingName).where(PendingName.server_id == server_id))


