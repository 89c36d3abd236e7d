"""Queries for enrolment tokens."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.enrolment.models import EnrolmentToken
from app.servers.models import Server


class EnrolmentRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, row: EnrolmentToken) -> None:
        self.session.add(row)
        await self.session.flush()

    async def get(self, token_id: str) -> EnrolmentToken | None:
        return await self.session.get(EnrolmentToken, token_id)

    async def spend(self, token_id: str, now: datetime, agent_url: str) -> bool:
        """Mark the token used, if it is unused and in date, in one conditional UPDATE.

        The UPDATE is the first write of the transaction: on PostgreSQL a second spender waits
        for the first's row lock and then finds ``used_at`` set (READ COMMITTED re-checks the
        WHERE on the new row version); on SQLite writers are serialised and the statement reads
        the committed row. Either way exactly one spender gets a row.
        """
        result = await self.session.execute(
            update(EnrolmentToken)
            .where(EnrolmentToken.id == token_id, EnrolmentToken.used_at.is_(None), EnrolmentToken.expires_at > now)
            .values(used_at=now, used_agent_url=agent_url)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)

    async def server_with_fingerprint(self, fingerprint: str, *, excluding: str) -> Server | None:
        """Another server whose agent has this TLS fingerprint (the same agent), if any."""
        return await self.session.scalar(
            select(Server).where(Server.agent_tls_fingerprint == fingerprint, Server.id != excluding).limit(1))

    async def delete(self, row: EnrolmentToken) -> None:
        await self.session.delete(row)
        await self.session.flush()
