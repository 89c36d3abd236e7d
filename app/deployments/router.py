"""HTTP for deployments of a server (admin only): history, push now, preview."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from app.deployments.desired import load_desired
from app.deployments.models import Deployment
from app.deployments.outbox import servers_changed
from app.deployments.repository import DeploymentRepository
from app.deployments.schemas import (
    AttemptOut,
    DeploymentDetail,
    DeploymentOut,
    DeploymentPage,
    DesiredConfigOut,
)
from app.deployments.service import DeploymentService
from app.deps import Admin, Session
from app.kit import conditions
from app.paging import InvalidCursor, PageParams
from app.problems import Forbidden, NotFound, responses
from app.servers.models import Server

router = APIRouter(prefix="/v1/servers/{server_id}", tags=["deployments"])


async def get_service(session: Session) -> DeploymentService:
    return DeploymentService(session)


Deployments = Annotated[DeploymentService, Depends(get_service)]


async def _server(session, server_id: str) -> Server:
    return await DeploymentService(session).server(server_id)


def _out(row: Deployment) -> DeploymentOut:
    due = row.status in ("pending", "retrying")
    return DeploymentOut(
        id=row.id, server_id=row.server_id, generation=row.generation, reason=row.reason, changes=row.changes,
        status=row.status,
        attempts=row.attempts, next_attempt_at=row.next_attempt_at if due else None, last_error=conditions.read(row.last_error, at=row.updated_at),
        applied_at=row.applied_at, failed_names=row.failed_names or [], created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.get("/deployments", operation_id="listDeployments", response_description="A page of deployments",
    summary="List a server's deployments",
    response_model=DeploymentPage, responses=responses(Forbidden, NotFound, InvalidCursor))
async def list_deployments(server_id: str, _admin: Admin, deployments: Deployments, page: PageParams):
    """Deployments of this server, newest generation first. No filters."""
    window = await deployments.list(server_id, page)
    return DeploymentPage.of(window, [_out(r) for r in window.rows])


@router.get("/deployments/{deployment_id}", operation_id="getDeployment", response_description="The deployment with its attempts",
    summary="Get a deployment with its attempts", response_model=DeploymentDetail, responses=responses(Forbidden, NotFound))
async def get_deployment(server_id: str, deployment_id: str, _admin: Admin, session: Session):
    """One deployment with every attempt's outcome."""
    repo = DeploymentRepository(session)
    row = await repo.get(server_id, deployment_id)
    if row is None:
        raise NotFound("deployment not found")
    history = [AttemptOut(started_at=a.started_at, finished_at=a.finished_at, outcome=a.outcome, error=conditions.read(a.error, at=a.finished_at or a.started_at),
                          bytes_sent=a.bytes_sent) for a in await repo.attempts(row.id)]
    return DeploymentDetail(**_out(row).model_dump(), history=history)


@router.post("/deployments", operation_id="createDeployment", response_description="The new deployment, queued for the agent",
    summary="Push the server's configuration again now",
    status_code=202, response_model=DeploymentOut, responses=responses(Forbidden, NotFound))
async def push_now(server_id: str, _admin: Admin, session: Session, response: Response):
    """Push the server's current configuration again now, as a new generation.

    A new generation (rather than re-sending the old one, which the agent would treat as a
    no-op) makes the agent validate, reload and verify everything again.
    """
    await _server(session, server_id)
    await servers_changed(session, [server_id], "push requested", names={})
    row = await DeploymentRepository(session).latest(server_id)
    response.headers["Location"] = f"/v1/servers/{server_id}/deployments/{row.id}"
    return _out(row)


@router.get("/config", operation_id="getServerConfig", response_description="The desired configuration",
    summary="Preview the configuration the agent should serve", response_model=DesiredConfigOut, responses=responses(Forbidden, NotFound))
async def preview_config(server_id: str, _admin: Admin, session: Session):
    """The configuration the agent should serve at the current desired generation (no keys)."""
    server = await _server(session, server_id)
    desired = await load_desired(session, server)
    return DesiredConfigOut(**desired.document(), applied_generation=server.applied_generation,
                            certificates=dict(sorted(desired.certificate_ids.items())))
