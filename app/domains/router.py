"""HTTP for domains, bindings and the TLS status report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from app.accounts.service import UnknownAccount
from app.certificates import errors as cert_errors
from app.certificates.repository import CertificateRepository
from app.certificates.service import CertificateService
from app.deps import Admin, Context, CurrentCaller, Reader, ReadingCaller, Session, read_inputs
from app.direct import DirectRoute, direct
from app.domains import rules, tls_answer
from app.domains.repository import DomainRepository
from app.domains.schemas import (
    BindingIn,
    BindingOut,
    BindingsOut,
    DomainCreate,
    DomainOut,
    DomainPage,
    NameDeploymentOut,
    Service,
    TlsStatus,
)
from app.domains.service import (
    CertificateAccountMismatch,
    DomainExists,
    DomainService,
    Effective,
    InvalidDomainName,
    UnknownServer,
)
from app.idempotency.http import IDEMPOTENT, IdempotentRoute
from app.kit.time import utc_now
from app.paging import InvalidCursor, PageParams, plain_page
from app.preconditions import IfMatch, binding_tag, bindings_tag, domain_tag, tag
from app.problems import Forbidden, NotFound, responses
from app.schemas import ModelResponse, WarningOut, page_json
from app.servers.router import capacity_warnings
from app.servers.software import SniUnsupported

router = APIRouter(prefix="/v1/domains", tags=["domains"], route_class=IdempotentRoute)


async def get_service(session: Session, ctx: Context) -> DomainService:
    certificates = CertificateService(CertificateRepository(session), ctx.master_key)
    return DomainService(DomainRepository(session), certificates, ctx.settings.expiring_days)


Domains = Annotated[DomainService, Depends(get_service)]


async def get_reads(reader: Reader, ctx: Context) -> DomainService:
    """The service over a bare connection (app.deps.get_reader), for routes that only run its
    Core reads (``status``, ``observed``): no ORM session, no transaction pair."""
    return DomainService(DomainRepository(reader), None, ctx.settings.expiring_days)


DomainReads = Annotated[DomainService, Depends(get_reads)]


def domain_fields(d) -> dict:
    """``DomainOut``'s fields of a domain (a row or the model), in the model's order: the list
    encodes these as they are (app.schemas.JsonResponse)."""
    return {"id": d.id, "name": d.name, "server_id": d.server_id, "account_id": d.account_id,
            "created_at": d.created_at}


def domain_out(d) -> DomainOut:
    return DomainOut(**domain_fields(d))


def deployment_out(state: rules.NameDeployment) -> NameDeploymentOut:
    return NameDeploymentOut(
        state=state.state, reason=state.reason, agent_code=state.agent_code, message=state.message,
        fingerprint=state.fingerprint, serving=state.serving,
    )


def binding_out(domain: str, eff: Effective, deployment: rules.NameDeployment | None = None) -> BindingOut:
    return BindingOut(
        domain=domain,
        service=eff.service,
        hostname=eff.hostname,
        source=eff.source,
        certificate_id=eff.certificate.id,
        fingerprint_sha256=eff.certificate.fingerprint_sha256,
        warnings=[WarningOut(code=w.code, message=w.message) for w in eff.warnings],
        deployment=deployment_out(deployment) if deployment else None,
    )


@router.post("", operation_id="createDomain", response_description="The domain, added",
    summary="Add a hosted domain",
    status_code=201, response_model=DomainOut, dependencies=[IDEMPOTENT],
    responses=responses(Forbidden, InvalidDomainName, DomainExists, UnknownServer, UnknownAccount))
async def create_domain(body: DomainCreate, _admin: Admin, domains: Domains, response: Response):
    """Add a domain hosted on a server for an account. Its webmail and mail start on the server's
    default certificates. Admin only."""
    domain = await domains.create(body.name, body.server_id, body.account_id)
    response.headers["Location"] = f"/v1/domains/{domain.name}"
    tag(response, domain_tag(domain.id))
    return domain_out(domain)


async def _list_inputs(request: Request) -> dict | None:
    """The domain list's arguments when its query is plain (app/direct.py, ``plain_page``); None
    leaves the rest to FastAPI's solver."""
    query = request.query_params
    page = plain_page(query)
    if page is None:
        return None
    ctx, reader, caller = await read_inputs(request)
    return {"caller": caller, "domains": await get_reads(reader, ctx), "page": page,
            "server_id": query.get("server_id"), "account_id": query.get("account_id")}


@direct(_list_inputs)
async def list_domains(
    caller: ReadingCaller,
    domains: DomainReads,
    page: PageParams,
    server_id: Annotated[str | None, Query(description="Only the domains hosted on this server.")] = None,
    account_id: Annotated[str | None, Query(
        description="Only this account's domains. A customer sees only its own account's whatever it "
        "names here (another account: an empty list).")] = None,
):
    """Domains in name order (A-labels, so `xn--` names sort by their ASCII form); filter by server
    and account. A customer sees its own account's domains only. Pass `next_cursor` back as
    `cursor` for the next page."""
    window = await domains.list(caller, server_id=server_id, account_id=account_id, page=page)
    return page_json(window, [domain_fields(d) for d in window.rows])


# Declared here, where a decorator would have added it: the OpenAPI document keeps its order.
router.add_api_route("", list_domains, methods=["GET"], route_class_override=DirectRoute,
                     operation_id="listDomains", response_description="A page of domains",
                     summary="List hosted domains", response_model=DomainPage, responses=responses(InvalidCursor))


@router.get("/{name}", operation_id="getDomain", response_description="The domain",
    summary="Get a hosted domain",
    response_model=DomainOut, responses=responses(NotFound))
async def get_domain(name: str, caller: CurrentCaller, domains: Domains, response: Response):
    """One domain: its server and account, with its `ETag` for a later `If-Match`."""
    domain = await domains.get_visible(caller, name)
    tag(response, domain_tag(domain.id))
    return domain_out(domain)


@router.delete("/{name}", operation_id="deleteDomain", response_description="Deleted",
    summary="Delete a hosted domain",
    status_code=204, responses=responses(Forbidden, NotFound))
async def delete_domain(name: str, admin: Admin, domains: Domains, expected: IfMatch):
    """Delete a domain and its bindings; its server redeploys without it. Admin only. With
    `If-Match`, only while the domain is still in that state (412 otherwise)."""
    await domains.delete(admin, name, expected)
    return Response(status_code=204)


@router.get("/{name}/bindings", operation_id="getDomainBindings", response_description="What each service serves",
    summary="Get the certificates bound to a domain", response_model=BindingsOut, responses=responses(NotFound))
async def get_bindings(name: str, caller: CurrentCaller, domains: Domains):
    """Which certificate each service (webmail, mail) uses: its own binding or the server's default,
    with warnings and whether the server serves it yet; with the document's `ETag` (an `If-Match`
    for either service's write)."""
    status = await domains.status(caller, name)
    states = domains.deployments(status)
    name = status.domain.name
    response = ModelResponse(
        BindingsOut(domain=name, **{s: binding_out(name, e, states[s]) for s, e in status.effective.items()}))
    tag(response, bindings_tag(status.domain.id, status.domain.binding_rows))
    return response


@router.get("/{name}/bindings/{service}", response_model=BindingOut, responses=responses(NotFound),
            operation_id="getBinding", summary="Get one service's binding",
            response_description="The service's binding, with its `ETag`",
            description="The certificate the domain's webmail (`webmail.<domain>`) or mail (`mail.<domain>`) "
            "presents, why (`source`), its warnings and deployment state, with the binding's `ETag`: "
            "send it as `If-Match` on `PUT` or `DELETE` of the same binding so that a concurrent "
            "change is refused (412 `precondition_failed`) instead of overwritten.")
async def get_binding(name: str, service: Service, caller: CurrentCaller, domains: Domains):
    status = await domains.status(caller, name)
    state = domains.deployments(status)[service]
    domain = status.domain
    response = ModelResponse(binding_out(domain.name, status.effective[service], state))
    tag(response, binding_tag(domain.id, service, domain.binding_rows.get(service)))
    return response


@router.put(
    "/{name}/bindings/{service}", operation_id="putBinding", response_description="The binding, changed (the service had one before)",
    summary="Bind a certificate to a domain's webmail or mail",
    response_model=BindingOut,
    responses={201: {"model": BindingOut, "description": "The service had no binding: it has one now"},
               **responses(NotFound, cert_errors.HostnameNotCovered, cert_errors.WildcardPublicSuffix,
                           cert_errors.CertificateExpired, cert_errors.CertificateNotYetValid,
                           SniUnsupported, CertificateAccountMismatch)},
)
async def put_binding(name: str, service: Service, body: BindingIn, caller: CurrentCaller, domains: Domains,
                      response: Response, expected: IfMatch):
    """Bind a certificate to the domain's webmail (`webmail.<d>`) or mail (`mail.<d>`).

    Refused when it does not cover the name, is out of date, or (mail) the server software has no
    per-domain SNI. Accepted with `warnings` when untrusted, self-signed, expiring soon, or when the
    server-wide mail certificate is untrusted. 201 when the service had no binding before, else 200
    (concurrent first binds: one 201, the others 200).
    """
    eff = await domains.bind(caller, name, service, body.certificate_id, expected)
    domain = eff.hostname.split(".", 1)[1]
    if eff.created:
        response.status_code = 201
        response.headers["Location"] = f"/v1/domains/{domain}/bindings/{service}"
    tag(response, eff.etag)
    return binding_out(domain, eff)


@router.delete("/{name}/bindings/{service}", operation_id="deleteBinding", response_description="Removed: the service serves the server's default again",
    summary="Remove a domain's binding",
    status_code=204, responses=responses(NotFound))
async def delete_binding(name: str, service: Service, caller: CurrentCaller, domains: Domains, expected: IfMatch):
    """Return the service to the server's default certificate."""
    await domains.unbind(caller, name, service, expected)
    return Response(status_code=204)


async def _tls_inputs(request: Request) -> dict:
    """The TLS status's arguments, as its declared dependencies resolve them (app/direct.py)."""
    ctx, reader, caller = await read_inputs(request)
    return {"name": request.path_params["name"], "caller": caller, "domains": await get_reads(reader, ctx), "ctx": ctx}


@direct(_tls_inputs)
async def tls_status(name: str, caller: ReadingCaller, domains: DomainReads, ctx: Context):
    """What a browser (webmail) and a mail client (mail) would see, and why (domain.md)."""
    status, observed = await domains.observed_status(caller, name)
    server = status.server
    return tls_answer.report(status, domains.deployments(status), observed, utc_now(), ctx.settings.expiring_days,
                             capacity_warnings(server, server.mail_certificate_count, ctx.settings.dovecot_capacity))


# Declared here, where a decorator would have added it: the OpenAPI document keeps its order.
router.add_api_route("/{name}/tls", tls_status, methods=["GET"], route_class_override=DirectRoute,
                     operation_id="getDomainTls", response_description="What clients see, and why",
                     summary="Get what clients see for a domain's webmail and mail", response_model=TlsStatus,
                     responses=responses(NotFound))
