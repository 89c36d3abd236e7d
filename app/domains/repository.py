"""Queries for domains and bindings."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import new_id
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

    async def upsert_binding(self, domain_id: str, service: str, certificate_id: str, now: datetime) -> str:
        """Bind in one statement per step, safe under concurrent first binds of one service.

        ``INSERT .. ON CONFLICT DO NOTHING`` waits for a concurrent insert of the same
        (domain, service) to finish instead of failing on the unique constraint; the row it then
        sees is updated in place. Returns "created", "changed" or "unchanged", or "gone" when the
        domain or the certificate was deleted by a concurrent request after it was read (the
        foreign key refuses the row; the transaction is then only good for rolling back). The
        loop covers a binding deleted between the two statements.
        """
        dialect = postgresql if self.session.bind.dialect.name == "postgresql" else sqlite
        key = (Binding.domain_id == domain_id, Binding.service == service)
        for _attempt in range(3):
            try:
                inserted = await self.session.scalar(
                    dialect.insert(Binding)
                    .values(id=new_id(), domain_id=domain_id, service=service,
                            certificate_id=certificate_id, created_at=now, updated_at=now)
                    .on_conflict_do_nothing(index_elements=["domain_id", "service"])
                    .returning(Binding.id)
                )
            except IntegrityError:
                return "gone"
            if inserted is not None:
                return "created"
            try:
                changed = await self.session.execute(
                    update(Binding).where(*key, Binding.certificate_id != certificate_id)
                    .values(certificate_id=certificate_id, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
            except IntegrityError:
                return "gone"
            if changed.rowcount:
                return "changed"
            if await self.session.scalar(select(Binding.id).where(*key)) is not None:
                return "unchanged"
        raise RuntimeError("the binding kept changing under a concurrent writer")

    async def delete_domain(self, domain_id: str) -> bool:
        """Delete (its bindings go by ON DELETE CASCADE); True only for the statement that did."""
        result = await self.session.execute(
            delete(Domain).where(Domain.id == domain_id).execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)

    async def delete_binding(self, domain_id: str, service: str) -> bool:
        """Delete and say whether this statement removed the row: of concurrent deletes, one does."""
        result = await self.session.execute(
            delete(Binding).where(Binding.domain_id == domain_id, Binding.service == service)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)
