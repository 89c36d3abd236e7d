"""HTTP for servers (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from pydantic import ConfigDict, Field, RootModel

from app.certificates import errors as cert_errors
from app.certificates.repository import CertificateRepository
from app.certificates.service import CertificateService
from app.deps import Admin, Context, Session
from app.problems import Forbidden, NotFound, RuleViolation, responses
from app.schemas import ModelResponse, Offset, WarningOut
from app.servers.models import Server
from app.servers.repository import ServerRepository
from app.servers.schemas import (
    SERVER_EXAMPLE,
    CapabilitiesOut,
    MailCertificateIn,
    ServerCreate,
    ServerOut,
    ServerPatch,
)
from app.servers.service import (
    InvalidAgentUrl,
    InvalidHostname,
    ServerExists,
    ServerInUse,
    ServerService,
    server_capabilities,
)

router = APIRouter(prefix="/v1/servers", tags=["servers"])


async def get_service(session: Session, ctx: Context) -> ServerService:
    certificates = CertificateService(CertificateRepository(session), ctx.master_key)
    return ServerService(ServerRepository(session), certificates, ctx.settings.expiring_days)


Service = Annotated[ServerService, Depends(get_service)]


def capacity_warnings(server: Server, mail_certs: int, capacity: int) -> list[WarningOut]:
    """Dovecot 2.3 re-reads every local_name block on reload (real-servers.md): warn early."""
    if server.software == "postfix-dovecot" and mail_certs > capacity:
        return [
            WarningOut(
                code="mail_certificates_over_capacity",
                message=f"{mail_certs} per-domain mail certificates exceed the measured Dovecot capacity "
                f"of {capacity}; reloads will be slow or fail. Prefer a trusted server-wide certificate.",
            )
        ]
    return []


async def to_outs(service: ServerService, servers: list[Server], capacity: int) -> list[ServerOut]:
    out = []
    for server in servers:
        caps = server_capabilities(server)
        mail_certs = server.mail_certificate_count
        out.append(
            ServerOut(
                id=server.id,
                name=server.name,
                hostname=server.hostname,
                software=server.software,
                capabilities=CapabilitiesOut(
                    per_domain_mail=caps.per_domain_mail,
                    per_domain_webmail=caps.per_domain_webmail,
                    server_wide_mail=caps.server_wide_mail,
                    agent=caps.agent,
                ),
                agent_url=server.agent_url,
                agent_tls_fingerprint=server.agent_tls_fingerprint,
                mail_certificate_id=server.mail_certificate_id,
                default_certificate_id=server.default_certificate_id,
                desired_generation=server.desired_generation,
                applied_generation=server.applied_generation,
                per_domain_mail_certificates=mail_certs,
                warnings=capacity_warnings(server, mail_certs, capacity),
                created_at=server.created_at,
                updated_at=server.updated_at,
            )
        )
    return out


@router.post("", operation_id="createServer", response_description="The server, registered",
    summary="Register a mail server", status_code=201, response_model=ServerOut,
             responses=responses(Forbidden, InvalidHostname, InvalidAgentUrl, RuleViolation, ServerExists))
async def register_server(body: ServerCreate, _admin: Admin, service: Service, ctx: Context):
    """Register a mail server; it gets a self-signed certificate for its host name to start with."""
    server = await service.register(**body.model_dump())
    return (await to_outs(service, [server], ctx.settings.dovecot_capacity))[0]


@router.get("", operation_id="listServers", response_description="The servers",
    summary="List mail servers", response_model=list[ServerOut], responses=responses(Forbidden))
async def list_servers(_admin: Admin, service: Service, ctx: Context,
                       limit: Annotated[int, Query(ge=1, le=1000, description="At most this many servers (1 to 1000).")] = 100,
                       offset: Offset = 0):
    """Mail servers by name, with capabilities, deployment generations and capacity warnings. Admin only."""
    servers = await to_outs(service, await service.repo.list(limit, offset), ctx.settings.dovecot_capacity)
    return ModelResponse(ServerList(servers))


@router.get("/{server_id}", operation_id="getServer", response_description="The server",
    summary="Get a mail server", response_model=ServerOut, responses=responses(Forbidden, NotFound))
async def get_server(server_id: str, _admin: Admin, service: Service, ctx: Context):
    """One mail server with its capabilities, certificates, deployment generations and warnings. Admin only."""
    return (await to_outs(service, [await service.get(server_id)], ctx.settings.dovecot_capacity))[0]


@router.patch("/{server_id}", operation_id="patchServer", response_description="The server, changed",
    summary="Change a mail server's name or agent", response_model=ServerOut,
              responses=responses(Forbidden, NotFound, InvalidAgentUrl, RuleViolation, ServerExists))
async def patch_server(server_id: str, body: ServerPatch, _admin: Admin, service: Service, ctx: Context):
    """Change the name or the agent (URL, pinned TLS fingerprint); an agent change redeploys."""
    server = await service.patch(server_id, body.model_dump(exclude_unset=True))
    return (await to_outs(service, [server], ctx.settings.dovecot_capacity))[0]


ServerList = RootModel[list[ServerOut]]


class MailCertificateOut(ServerOut):
    model_config = ConfigDict(json_schema_extra={"examples": [{**SERVER_EXAMPLE, "certificate_warnings": []}]})

    certificate_warnings: list[WarningOut] = Field(description="About the certificate just set: untrusted, "
                                                   "self-signed or expiring soon.")


@router.put("/{server_id}/mail-certificate", operation_id="putServerMailCertificate", response_description="The server with its new server-wide mail certificate",
    summary="Set the server-wide mail certificate", response_model=MailCertificateOut,
            responses=responses(Forbidden, NotFound, cert_errors.CertificateNotPlatform, cert_errors.HostnameNotCovered,
                                cert_errors.CertificateExpired, cert_errors.CertificateNotYetValid))
async def set_mail_certificate(server_id: str, body: MailCertificateIn, _admin: Admin, service: Service, ctx: Context):
    """Make a certificate the server-wide mail certificate; it must cover the server's host name."""
    server, _cert, warnings = await service.set_mail_certificate(server_id, body.certificate_id)
    base = (await to_outs(service, [server], ctx.settings.dovecot_capacity))[0]
    return MailCertificateOut(
        **base.model_dump(),
        certificate_warnings=[WarningOut(code=w.code, message=w.message) for w in warnings],
    )


@router.delete("/{server_id}", operation_id="deleteServer", response_description="Deleted",
    summary="Delete a mail server", status_code=204, responses=responses(Forbidden, NotFound, ServerInUse))
async def delete_server(server_id: str, _admin: Admin, service: Service):
    """Delete a mail server that no domain uses (409 `server_in_use`, with `domains`). Admin only."""
    await service.delete(server_id)
    return Response(status_code=204)
