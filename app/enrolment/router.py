"""HTTP for agent enrolment: tokens (admin), and the one request an agent makes with one."""

from __future__ import annotations

import shlex
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from app.certificates.repository import CertificateRepository
from app.certificates.service import CertificateService
from app.deps import Admin, Context, Session
from app.enrolment.repository import EnrolmentRepository
from app.enrolment.schemas import (
    AgentEnrolmentIn,
    AgentEnrolmentOut,
    EnrolmentTokenCreate,
    EnrolmentTokenOut,
)
from app.enrolment.service import (
    AgentAlreadyEnrolled,
    EnrolmentService,
    EnrolmentTokenExpired,
    EnrolmentTokenInvalid,
    EnrolmentTokenUsed,
    controller_tls_fingerprint,
)
from app.idempotency.http import IDEMPOTENT, IdempotentRoute
from app.kit.signing import public_key_to_text
from app.problems import Forbidden, NotFound, RuleViolation, responses
from app.servers.repository import ServerRepository
from app.servers.service import InvalidAgentUrl, ServerService

router = APIRouter(tags=["servers"], route_class=IdempotentRoute)


async def get_service(session: Session, ctx: Context) -> EnrolmentService:
    certificates = CertificateService(CertificateRepository(session), ctx.master_key)
    servers = ServerService(ServerRepository(session), certificates, ctx.settings.expiring_days)
    return EnrolmentService(EnrolmentRepository(session), servers, ctx.settings.enrolment_token_seconds)


Service = Annotated[EnrolmentService, Depends(get_service)]


def enrol_command(controller_url: str, token: str, fingerprint: str | None) -> str:
    words = ["certpost", "agent", "enroll", "--controller", controller_url, "--token", token]
    if fingerprint:
        words += ["--pin", f"sha256:{fingerprint}"]
    return shlex.join([*words, "--config", "/etc/certpost/agent.toml"])


@router.post("/v1/servers/{server_id}/enrolment-tokens", operation_id="createEnrolmentToken",
    response_description="The token, shown this once, with the command to run on the mail server",
    summary="Make a one-time token with which a server's agent enrols itself",
    status_code=201, dependencies=[IDEMPOTENT], response_model=EnrolmentTokenOut,
    responses=responses(Forbidden, NotFound))
async def create_enrolment_token(server_id: str, body: EnrolmentTokenCreate, admin: Admin, service: Service,
                                 ctx: Context, request: Request, response: Response):
    """A single-use token that lets `certpost agent enroll` on the mail server register its agent
    (URL and TLS fingerprint) for this server and receive the controller's public key, in one
    command (`command`). The token is shown only here, and expires after `expires_in` seconds
    (default 1 hour). When the controller serves HTTPS itself, `controller_tls_fingerprint` is
    what the agent pins. Registering the agent by hand (`PATCH /v1/servers/{id}`) keeps working.
    Administrators only."""
    row, text = await service.create_token(admin, server_id, expires_in=body.expires_in,
                                           description=body.description)
    url = (ctx.settings.public_url or str(request.base_url)).rstrip("/")
    fingerprint = controller_tls_fingerprint(ctx.settings)
    response.headers["Location"] = f"/v1/servers/{server_id}/enrolment-tokens/{row.id}"
    return EnrolmentTokenOut(id=row.id, server_id=row.server_id, token=text, description=row.description,
                             created_at=row.created_at, expires_at=row.expires_at, controller_url=url,
                             controller_tls_fingerprint=fingerprint, command=enrol_command(url, text, fingerprint))


@router.delete("/v1/servers/{server_id}/enrolment-tokens/{enrolment_token_id}", operation_id="deleteEnrolmentToken",
    response_description="Deleted", summary="Withdraw an enrolment token", status_code=204,
    responses=responses(Forbidden, NotFound))
async def delete_enrolment_token(server_id: str, enrolment_token_id: str, admin: Admin, service: Service):
    """Withdraw a token before it is used or expires: it is refused from now on (403
    `enrolment_token_invalid`). Administrators only."""
    await service.delete_token(admin, server_id, enrolment_token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/v1/agent-enrolments", operation_id="createAgentEnrolment",
    response_description="The server the agent now serves, and the controller's public key",
    summary="Enrol an agent with a one-time token",
    response_model=AgentEnrolmentOut,
    responses=responses(EnrolmentTokenInvalid, EnrolmentTokenExpired, EnrolmentTokenUsed, InvalidAgentUrl,
                        AgentAlreadyEnrolled, RuleViolation))
async def create_agent_enrolment(body: AgentEnrolmentIn, service: Service, ctx: Context):
    """What `certpost agent enroll` sends: the token (the only credential; no API token), the
    agent's URL and its TLS fingerprint. The token is spent (single use: of two concurrent uses
    exactly one succeeds), the server's agent is set as `PATCH /v1/servers/{id}` would set it
    (its configuration is delivered again), and the answer carries the controller's public key
    for the agent's configuration. 403 `enrolment_token_invalid`, `enrolment_token_expired` or
    `enrolment_token_used` otherwise, 409 `agent_already_enrolled` when this TLS identity is
    already another server's agent (one agent for two servers would overwrite their
    certificates), and nothing changes."""
    enrolled = await service.enrol(body.token, agent_url=body.agent_url,
                                   agent_tls_fingerprint=body.agent_tls_fingerprint)
    server = enrolled.server
    return AgentEnrolmentOut(server_id=server.id, server_name=server.name, server_hostname=server.hostname,
                             agent_url=server.agent_url, agent_tls_fingerprint=server.agent_tls_fingerprint,
                             controller_public_key=public_key_to_text(ctx.controller_key.public_key()))
