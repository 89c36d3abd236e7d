"""Queries for certificate requests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.certificate_requests.models import CertificateRequest
from app.paging import Order, PageRequest, Window, fetch

REQUEST_ORDER = Order("certificate-requests", (CertificateRequest.created_at, CertificateRequest.id), descending=True)


class CertificateRequestRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, row: CertificateRequest) -> None:
        self.session.add(row)
        await self.session.flush()

    async def get(self, request_id: str) -> CertificateRequest | None:
        return await self.session.get(CertificateRequest, request_id)

    async def list(self, visible: Any, status: str | None, page: PageRequest) -> Window[CertificateRequest]:
        """Requests, newest first (``visible``: ``Caller.visible_rows`` on their account)."""
        stmt = select(CertificateRequest).where(visible)
        if status:
            stmt = stmt.where(CertificateRequest.status == status)
        return await fetch(self.session, stmt, REQUEST_ORDER, page)

    async def complete(self, row: CertificateRequest, certificate_id: str, now) -> bool:
        """Pending → completed, the sealed key dropped, in one conditional UPDATE: of two imports
        of the same request at once, exactly one changes the row (the other rolls back)."""
        result = await self.session.execute(
            update(CertificateRequest)
            .where(CertificateRequest.id == row.id, CertificateRequest.status == "pending")
            .values(status="completed", certificate_id=certificate_id, completed_at=now, updated_at=now,
                    key_ciphertext=None, key_wrapped=None, master_key_id=None)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount:
            await self.session.refresh(row)
        return bool(result.rowcount)

    async def delete(self, row: CertificateRequest) -> None:
        await self.session.delete(row)
        await self.session.flush()
