"""Queries for domains and bindings."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.domains.models import Binding, Domain


class DomainRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, row) -> None:
        self.session.add(row)
        await self.session.flush()

    async def by_name(self, name: str) -> Domain | None:
        return await self.session.scalar(select(Domain).where(Domain.name == name))

    async def list(self, account_id: str | None, server_id: str | None, limit: int, after: str | None) -> list[Domain]:
        stmt = select(Domain)
        if account_id is not None:
            stmt = stmt.where(Domain.account_id == account_id)
        if server_id is not None:
            stmt = stmt.where(Domain.server_id == server_id)
        if after is not None:
            stmt = stmt.where(Domain.name > after)
        return list(await self.session.scalars(stmt.order_by(Domain.name).limit(limit)))

    async def bindings(self, domain_id: str) -> dict[str, Binding]:
        rows = await self.session.scalars(select(Binding).where(Binding.domain_id == domain_id))
        return {row.service: row for row in rows}

    async def delete(self, row) -> None:
        await self.session.delete(row)
        await self.session.flush()
