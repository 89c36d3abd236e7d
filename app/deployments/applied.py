"""What a server's agent applied, kept per host name, and the names changed since.

``applied_names`` mirrors the agent's applied document one row per name; ``pending_names`` are
the names changes touched since (outbox.py marks them). A delivery reads only the pending
names and their applied rows, and records only what it changed, so a one-domain change costs
the same on a server with 100 domains as with 100,000. The whole set is rewritten only after a
full document (first delivery, a new agent, an agent whose copy differed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.deployments.delta import service_of
from app.deployments.desired import chunks
from app.deployments.models import AppliedName, PendingName


async def pending(session: AsyncSession, server_id: str) -> list[str]:
    return list(await session.scalars(
        select(PendingName.hostname).where(PendingName.server_id == server_id).order_by(PendingName.hostname)))


async def fingerprints(session: AsyncSession, server_id: str, hostnames: list[str]) -> dict[str, str]:
    """The applied fingerprint of each of ``hostnames`` that the agent serves."""
    out: dict[str, str] = {}
    for chunk in chunks(hostnames):
        rows = await session.execute(
            select(AppliedName.hostname, AppliedName.fingerprint)
            .where(AppliedName.server_id == server_id, AppliedName.hostname.in_(chunk)))
        out.update((name, fp) for name, fp in rows)
    return out


async def held(session: AsyncSession, server_id: str, fps: Iterable[str]) -> set[str]:
    """Which of ``fps`` some applied name of the server uses (so its agent holds the bundle)."""
    out: set[str] = set()
    for chunk in chunks(sorted(set(fps))):
        out.update(await session.scalars(
            select(AppliedName.fingerprint).distinct()
            .where(AppliedName.server_id == server_id, AppliedName.fingerprint.in_(chunk))))
    return out


async def record_changes(session: AsyncSession, server_id: str, changes: Mapping[str, str | None]) -> None:
    gone = [name for name, fp in changes.items() if fp is None]
    for chunk in chunks(gone):
        await session.execute(delete(AppliedName).where(AppliedName.server_id == server_id,
                                                        AppliedName.hostname.in_(chunk)))
    rows = [{"server_id": server_id, "hostname": name, "service": service_of(name), "fingerprint": fp}
            for name, fp in changes.items() if fp is not None]
    dialect = postgresql if session.bind.dialect.name == "postgresql" else sqlite
    for chunk in chunks(rows):
        stmt = dialect.insert(AppliedName).values(chunk)
        await session.execute(stmt.on_conflict_do_update(
            index_elements=["server_id", "hostname"], set_={"fingerprint": stmt.excluded.fingerprint}))


async def record_document(session: AsyncSession, server_id: str, document: Mapping) -> None:
    """Replace every row with the names of a whole document (mail and webmail maps)."""
    await session.execute(delete(AppliedName).where(AppliedName.server_id == server_id))
    rows = [{"server_id": server_id, "hostname": name, "service": service, "fingerprint": fp}
            for service in ("mail", "webmail") for name, fp in (document.get(service) or {}).items()]
    for chunk in chunks(rows, 2000):
        await session.execute(insert(AppliedName), chunk)


async def clear_pending(session: AsyncSession, server_id: str, generation: int) -> None:
    """The names marked at ``generation`` or before are delivered; later marks stay."""
    await session.execute(delete(PendingName).where(PendingName.server_id == server_id,
                                                    PendingName.generation <= generation))


