"""HTTP for servers (admin only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response
from pydantic import ConfigDict, Field

from app.certificates import errors as cert_errors
from app.certificates.repository import CertificateRepository
from app.certificates.service import CertificateService
from app.deps import Admin, Context, Session
from app.idempotency.http import IDEMPOTENT, IdempotentRoute
from app.paging import InvalidCursor, PageParams
from app.preconditions import IfMatch, server_tag, tag
from app.problems import Forbidden, NotFound, RuleViolation, responses
from app.schemas import ModelResponse, WarningOut
from app.servers.models import Server
from app.servers.repository import ServerRepository
from app.servers.schemas import (
    SERVER_EXAMPLE,
    CapabilitiesOut,
    MailCertificateIn,
    ServerCreate,
    ServerOut,
    ServerPage,
    ServerPatch,
    WebmailCertificateIn,
)
from app.servers.service import (
    InvalidAgentUrl,
    InvalidHostname,
    ServerExists,
    ServerInUse,
    ServerService,
    WebmailCertificateNotSet,
    server_capabilities,
)
from app.servers.software import dovecot_capacity_applies

router = APIRouter(prefix="/v1/servers", tags=["servers"], route_class=IdempotentRoute)


async def get_service(session: Session, ctx: Context) -> ServerService:
    certificates = CertificateService(CertificateRepository(session), ctx.master_key)
    return ServerService(ServerRepository(session), certificates, ctx.settings.expiring_days)


Service = Annotated[ServerService, Depends(get_service)]


def capacity_warnings(server: Server, mail_certs: int, capacity: int) -> list[WarningOut]:
    """Dovecot 2.3 re-reads every local_name block on reload (docs/performance.md): warn early.
    Not with a TLS front: Dovecot then has no per-name block at all."""
    if dovecot_capacity_applies(server.software, server.tls_front) and mail_certs > capacity:
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
                webmail_certificate_id=server.webmail_certificate_id,
                webmail_default_certificate_id=server.webmail_default_id,
                tls_front=server.tls_front,
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
    summary="Register a mail server",
    status_code=201, response_model=ServerOut, dependencies=[IDEMPOTENT],
    responses=responses(Forbidden, InvalidHostname, InvalidAgentUrl, RuleViolation, ServerExists))
async def register_server(body: ServerCreate, admin: Admin, service: Service, ctx: Context, response: Response):
    """Register a mail server; it gets a self-signed certificate for its host name to start with."""
    server = await service.register(**body.model_dump(), caller=admin)
    response.headers["Location"] = f"/v1/servers/{server.id}"
    tag(response, await service.etag(server.id))
    return (await to_outs(service, [server], ctx.settings.dovecot_capacity))[0]


@router.get("", operation_id="listServers", response_description="A page of servers",
    summary="List mail servers",
    response_model=ServerPage, responses=responses(Forbidden, InvalidCursor))
async def list_servers(_admin: Admin, service: Service, ctx: Context, page: PageParams):
    """Mail servers in name order, with capabilities, deployment generations and capacity warnings.
    No filters. Admin only."""
    window = await service.list(page)
    return ModelResponse(ServerPage.of(window, await to_outs(service, window.rows, ctx.settings.dovecot_capacity)))


@router.get("/{server_id}", operation_id="getServer", response_description="The server",
    summary="Get a mail server",
    response_model=ServerOut, responses=responses(Forbidden, NotFound))
async def get_server(server_id: str, _admin: Admin, service: Service, ctx: Context, response: Response):
    """One mail server with its capabilities, certificates, deployment generations and warnings,
    with its `ETag` for a later `If-Match`. Admin only."""
    server = await service.get(server_id)
    tag(response, server_tag(server.id, server.version))
    return (await to_outs(service, [server], ctx.settings.dovecot_capacity))[0]


@router.patch("/{server_id}", operation_id="patchServer", response_description="The server, changed",
    summary="Change a mail server's name or agent",
    response_model=ServerOut,
    responses=responses(Forbidden, NotFound, InvalidAgentUrl, RuleViolation, ServerExists))
async def patch_server(server_id: str, body: ServerPatch, _admin: Admin, service: Service, ctx: Context,
                       expected: IfMatch, response: Response):
    """Change the name or the agent (URL, pinned TLS fingerprint); an agent change redeploys."""
    server = await service.patch(server_id, body.model_dump(exclude_unset=True), expected)
    tag(response, await service.etag(server.id))
    return (await to_outs(service, [server], ctx.settings.dovecot_capacity))[0]


class MailCertificateOut(ServerOut):
    model_config = ConfigDict(json_schema_extra={"examples": [{**SERVER_EXAMPLE, "certificate_warnings": []}]})

    certificate_warnings: list[WarningOut] = Field(description="About the certificate just set: untrusted, "
                                                   "self-signed or expiring soon.")


@router.put("/{server_id}/mail-certificate", operation_id="putServerMailCertificate", response_description="The server with its new server-wide mail certificate",
    summary="Set the server-wide mail certificate", response_model=MailCertificateOut,
    responses=responses(Forbidden, NotFound, cert_errors.CertificateNotPlatform, cert_errors.HostnameNotCovered,
                                cert_errors.CertificateExpired, cert_errors.CertificateNotYetValid))
async def set_mail_certificate(server_id: str, body: MailCertificateIn, admin: Admin, service: Service, ctx: Context,
                               expected: IfMatch, response: Response):
    """Make a certificate the server-wide mail certificate; it must cover the server's host name.

    `If-Match` takes the server's `ETag`, and the response carries the server's new one."""
    server, _cert, warnings = await service.set_mail_certificate(server_id, body.certificate_id, expected, caller=admin)
    tag(response, await service.etag(server.id))
    base = (await to_outs(service, [server], ctx.settings.dovecot_capacity))[0]
    return MailCertificateOut(
        **base.model_dump(),
        certificate_warnings=[WarningOut(code=w.code, message=w.message) for w in warnings],
    )


class WebmailCertificateOut(ServerOut):
    model_config = ConfigDict(json_schema_extra={"examples": [{**SERVER_EXAMPLE, "certificate_warnings": []}]})

    certificate_warnings: list[WarningOut] = Field(
        description="About the chosen certificate, as a binding gives them: `self_signed`, "
        "`certificate_untrusted`, `certificate_expiring`.",
        examples=[[], [{"code": "certificate_expiring", "message": "The certificate expires in 12 days (2027-01-12)."}]],
    )


@router.put(
    "/{server_id}/webmail-certificate",
    response_model=WebmailCertificateOut,
    response_description="The server, with the webmail default chosen",
    operation_id="putServerWebmailCertificate",
    summary="Choose the server's webmail default certificate",
    description="Make a certificate what the server's nginx presents for HTTPS without SNI, for the "
    "server's own host name and for every `webmail.<domain>` without a binding of its own. Like the "
    "server-wide mail certificate it must be a platform certificate (uploaded without an account), in "
    "date, and cover the server's host name; a self-signed, untrusted or soon-expiring one is accepted "
    "with `certificate_warnings`. The server gets a new generation, which its agent applies and "
    "verifies by handshake. Administrators only.",
    responses=responses(Forbidden, NotFound, cert_errors.CertificateNotPlatform, cert_errors.HostnameNotCovered,
                        cert_errors.WildcardPublicSuffix, cert_errors.CertificateExpired,
                        cert_errors.CertificateNotYetValid),
)
async def put_webmail_certificate(server_id: str, body: WebmailCertificateIn, admin: Admin, service: Service,
                                  ctx: Context, expected: IfMatch, response: Response):
    server, _cert, warnings = await service.set_webmail_certificate(server_id, body.certificate_id, expected, caller=admin)
    tag(response, await service.etag(server.id))
    base = (await to_outs(service, [server], ctx.settings.dovecot_capacity))[0]
    return WebmailCertificateOut(
        **base.model_dump(),
        certificate_warnings=[WarningOut(code=w.code, message=w.message) for w in warnings],
    )


@router.delete(
    "/{server_id}/webmail-certificate",
    response_model=ServerOut,
    response_description="The server, presenting the server-wide mail certificate for webmail again",
    operation_id="deleteServerWebmailCertificate",
    summary="Go back to the default webmail certificate",
    description="Forget the chosen webmail default: HTTPS without SNI, for the server's host name and for "
    "unbound webmail names presents the server-wide mail certificate again. The certificate itself is "
    "kept. 404 `webmail_certificate_not_set` when none was chosen. Administrators only.",
    responses=responses(Forbidden, NotFound, WebmailCertificateNotSet),
)
async def delete_webmail_certificate(server_id: str, admin: Admin, service: Service, ctx: Context,
                                     expected: IfMatch, response: Response):
    server = await service.unset_webmail_certificate(server_id, expected, caller=admin)
    tag(response, await service.etag(server.id))
    return (await to_outs(service, [server], ctx.settings.dovecot_capacity))[0]


@router.delete("/{server_id}", operation_id="deleteServer", response_description="Deleted",
    summary="Delete a mail server", status_code=204, responses=responses(Forbidden, NotFound, ServerInUse))
async def delete_server(server_id: str, _admin: Admin, service: Service, expected: IfMatch):
    """Delete a mail server that no domain uses (409 `server_in_use`, with `domains`). Admin only.
    With `If-Match`, only while the server is still in that state (412 otherwise)."""
    await service.delete(server_id, expected)
    return Response(status_code=204)
