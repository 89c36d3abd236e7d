"""Queries for deployments and their attempts."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.deployments.models import Deployment, DeploymentAttempt
from app.paging import Order, PageRequest, Window, fetch

# Generations are unique per server, and every page is of one server.
DEPLOYMENT_ORDER = Order("deployments", (Deployment.generation,), descending=True)


class DeploymentRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def for_server(self, server_id: str, page: PageRequest) -> Window[Deployment]:
        stmt = select(Deployment).where(Deployment.server_id == server_id)
        return await fetch(self.session, stmt, DEPLOYMENT_ORDER, page)

    async def get(self, server_id: str, deployment_id: str) -> Deployment | None:
        row = await self.session.get(Deployment, deployment_id)
        return row if row is not None and row.server_id == server_id else None

    async def latest(self, server_id: str) -> Deployment | None:
        return await self.session.scalar(
            select(Deployment).where(Deployment.server_id == server_id).order_by(Deployment.generation.desc()).limit(1)
        )

    async def failed_names(self, server_id: str, generation: int) -> list[dict]:
        """The names held back in the generation the server applied ([] when none)."""
        rows = await self.session.scalar(
            select(Deployment.failed_names).where(
                Deployment.server_id == server_id, Deployment.generation == generation
            )
        )
        return list(rows or [])

    async def attempts(self, deployment_id: str) -> list[DeploymentAttempt]:
        stmt = select(DeploymentAttempt).where(DeploymentAttempt.deployment_id == deployment_id).order_by(DeploymentAttempt.started_at)
        return list(await self.session.scalars(stmt))
