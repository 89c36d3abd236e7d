"""Queries for DNS providers, ACME accounts and orders."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.acme.models import AcmeAccount, CertificateOrder, DnsProvider
from app.domains.models import Domain


class AcmeRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, row) -> None:
        self.session.add(row)
        await self.session.flush()

    async def provider(self, provider_id: str) -> DnsProvider | None:
        return await self.session.get(DnsProvider, provider_id)

    async def providers(self, account_id: str | None, restrict: bool) -> list[DnsProvider]:
        stmt = select(DnsProvider).order_by(DnsProvider.name, DnsProvider.id)
        if restrict:
            stmt = stmt.where(or_(DnsProvider.account_id == account_id, DnsProvider.account_id.is_(None)))
        return list(await self.session.scalars(stmt))

    async def delete(self, row) -> None:
        await self.session.delete(row)
        await self.session.flush()

    async def domains_named(self, names: set[str]) -> dict[str, Domain]:
        rows = await self.session.scalars(select(Domain).where(Domain.name.in_(names)))
        return {d.name: d for d in rows}

    async def order(self, order_id: str) -> CertificateOrder | None:
        return await self.session.get(CertificateOrder, order_id)

    async def orders(self, account_id: str | None, restrict: bool, status: str | None, limit: int,
                     after: tuple[datetime, str] | None) -> list[CertificateOrder]:
        stmt = select(CertificateOrder)
        if restrict:
            stmt = stmt.where(CertificateOrder.account_id == account_id)
        if status:
            stmt = stmt.where(CertificateOrder.status == status)
        if after:
            stamp, row_id = after
            stmt = stmt.where(or_(CertificateOrder.created_at < stamp,
                                  and_(CertificateOrder.created_at == stamp, CertificateOrder.id < row_id)))
        stmt = stmt.order_by(CertificateOrder.created_at.desc(), CertificateOrder.id.desc()).limit(limit)
        return list(await self.session.scalars(stmt))

    async def open_order_for(self, certificate_id: str) -> CertificateOrder | None:
        return await self.session.scalar(
            select(CertificateOrder).where(
                CertificateOrder.certificate_id == certificate_id,
                CertificateOrder.status.in_(("pending", "processing")),
            ).limit(1)
        )

    async def acme_account(self, directory_url: str) -> AcmeAccount | None:
        return await self.session.scalar(select(AcmeAccount).where(AcmeAccount.directory_url == directory_url))

    async def claim_orders(self, owner: str, now: datetime, lease_until: datetime, limit: int) -> list[str]:
        """Pending orders, and processing ones whose worker's lease ran out, one winner each."""
        claimable = or_(
            CertificateOrder.status == "pending",
            and_(CertificateOrder.status == "processing", CertificateOrder.lease_until < now),
        )
        ids = list(await self.session.scalars(
            select(CertificateOrder.id).where(claimable).order_by(CertificateOrder.created_at).limit(limit)
        ))
        won = []
        for order_id in ids:
            result = await self.session.execute(
                update(CertificateOrder)
                .where(CertificateOrder.id == order_id, claimable)
                .values(status="processing", lease_until=lease_until, lease_owner=owner, updated_at=now)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:
                won.append(order_id)
        return won

    async def renew_order_lease(self, order_id: str, owner: str, until: datetime) -> bool:
        """Extend a worker's lease on an order it still runs; False once it is not its own."""
        result = await self.session.execute(
            update(CertificateOrder)
            .where(CertificateOrder.id == order_id, CertificateOrder.lease_owner == owner,
                   CertificateOrder.status == "processing")
            .values(lease_until=until)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1
