"""Queries for servers."""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.domains.models import Binding, Domain
from app.paging import Order, PageRequest, Window, fetch
from app.servers.models import Server

SERVER_ORDER = Order("servers", (Server.name,))  # names are unique


class ServerRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, server: Server) -> None:
        self.session.add(server)
        await self.session.flush()

    async def get(self, server_id: str) -> Server | None:
        return await self.session.get(Server, server_id)

    async def by_name(self, name: str) -> Server | None:
        return await self.session.scalar(select(Server).where(Server.name == name))

    async def list(self, page: PageRequest) -> Window[Server]:
        """Servers in name order."""
        return await fetch(self.session, select(Server), SERVER_ORDER, page)

    async def count_domains(self, server_id: str) -> int:
        stmt = select(func.count()).select_from(Domain).where(Domain.server_id == server_id)
        return await self.session.scalar(stmt) or 0

    async def agent_answered(self, server_id: str, at) -> None:
        """Record that the server's agent answered at ``at`` (``servers.agent_contact_at``, the
        "agent silent" alert's input, app/metrics). Neither ``version`` nor ``updated_at``
        moves: a poll every few seconds must not change the server's entity tag."""
        await self.session.execute(
            update(Server).where(Server.id == server_id)
            .values(agent_contact_at=at, updated_at=Server.updated_at, version=Server.version)
            .execution_options(synchronize_session=False)
        )

    async def lock(self, server_id: str) -> bool:
        """Take the server's row for this transaction (PostgreSQL row lock, SQLite write lock).

        Every change to a server's bindings takes it before touching them, so the changes of one
        server run one after the other and ``mail_certificate_count`` is judged on final rows.
        It is the row ``outbox.servers_changed`` updates next, so the lock order stays the same.
        """
        result = await self.session.execute(
            update(Server).where(Server.id == server_id)
            .values(desired_generation=Server.desired_generation, updated_at=Server.updated_at, version=Server.version)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)

    async def add_mail_certificates(self, server_id: str, delta: int) -> None:
        if delta:
            await self.session.execute(
                update(Server).where(Server.id == server_id)
                .values(mail_certificate_count=Server.mail_certificate_count + delta)
                .execution_options(synchronize_session=False)
            )

    async def mail_binding_counts(self, server_ids: list[str]) -> dict[str, int]:
        """Distinct mail certificates per server counted from the bindings (the migration's
        backfill and the tests' check of ``mail_certificate_count``; no route runs it)."""
        if not server_ids:
            return {}
        stmt = (
            select(Domain.server_id, func.count(func.distinct(Binding.certificate_id)))
            .join(Binding, Binding.domain_id == Domain.id)
            .where(Domain.server_id.in_(server_ids), Binding.service == "mail")
            .group_by(Domain.server_id)
        )
        return {server_id: count for server_id, count in await self.session.execute(stmt)}

    async def delete(self, server: Server) -> None:
        await self.session.delete(server)
        await self.session.flush()
