"""Queries for DNS providers, ACME accounts and orders."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.acme.models import AcmeAccount, CertificateOrder, DnsProvider
from app.domains.models import Domain
from app.paging import Order, PageRequest, Window, fetch
from app.scheduler.lease import Lease

ORDER_LEASE = Lease(CertificateOrder, CertificateOrder.lease_until, CertificateOrder.lease_owner)
PROVIDER_ORDER = Order("dns-providers", (DnsProvider.name, DnsProvider.id))
ORDER_ORDER = Order("certificate-orders", (CertificateOrder.created_at, CertificateOrder.id), descending=True)


class AcmeRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, row) -> None:
        self.session.add(row)
        await self.session.flush()

    async def provider(self, provider_id: str) -> DnsProvider | None:
        return await self.session.get(DnsProvider, provider_id)

    async def providers(self, visible: Any, page: PageRequest) -> Window[DnsProvider]:
        """DNS providers in name order (``visible``: ``Caller.visible_rows`` on their account)."""
        return await fetch(self.session, select(DnsProvider).where(visible), PROVIDER_ORDER, page)

    async def providers_declaring_zones(self, account_id: str | None, limit: int = 500) -> list[DnsProvider]:
        """The providers an account's orders may use (its own and the platform's) that declare
        `zones`, for delegated dns-01. The JSON test runs here: portable across SQLite and
        PostgreSQL, and an account has few providers."""
        owner = DnsProvider.account_id.is_(None)
        if account_id is not None:
            owner = or_(owner, DnsProvider.account_id == account_id)
        rows = await self.session.scalars(select(DnsProvider).where(owner).order_by(DnsProvider.id).limit(limit))
        return [r for r in rows if (r.settings or {}).get("zones")]

    async def delete(self, row) -> None:
        await self.session.delete(row)
        await self.session.flush()

    async def domains_named(self, names: set[str]) -> dict[str, Domain]:
        rows = await self.session.scalars(select(Domain).where(Domain.name.in_(names)))
        return {d.name: d for d in rows}

    async def order(self, order_id: str) -> CertificateOrder | None:
        return await self.session.get(CertificateOrder, order_id)

    async def orders(self, visible: Any, status: str | None, page: PageRequest) -> Window[CertificateOrder]:
        """Orders, newest first (``visible``: ``Caller.visible_rows`` on their account)."""
        stmt = select(CertificateOrder).where(visible)
        if status:
            stmt = stmt.where(CertificateOrder.status == status)
        return await fetch(self.session, stmt, ORDER_ORDER, page)

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
        return await ORDER_LEASE.claim_many(self.session, ids, owner, lease_until, claimable=claimable,
                                            values={"status": "processing", "updated_at": now})

    async def renew_order_lease(self, order_id: str, owner: str, until: datetime) -> bool:
        """Extend a worker's lease on an order it still runs; False once it is not its own."""
        return await ORDER_LEASE.renew(self.session, order_id, owner, until,
                                       still=CertificateOrder.status == "processing")
