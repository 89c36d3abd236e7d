"""Reading a server's deployments: the lookups behind the deployments routes."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from app.deployments.models import Deployment
from app.deployments.repository import DeploymentRepository
from app.paging import PageRequest, Window
from app.problems import NotFound
from app.servers.models import Server


class DeploymentService:
    def __init__(self, session: AsyncSession):
        self.session = session
        self.repo = DeploymentRepository(session)

    async def server(self, server_id: str) -> Server:
        server = await self.session.get(Server, server_id)
        if server is None:
            raise NotFound("server not found")
        return server

    async def list(self, server_id: str, page: PageRequest) -> Window[Deployment]:
        """A server's deployments, newest generation first. Servers have no owning account:
        only admins list them (the router requires one)."""
        await self.server(server_id)
        return await self.repo.for_server(server_id, page)
