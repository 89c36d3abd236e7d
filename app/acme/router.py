"""HTTP for DNS providers, certificate orders and renew-now."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response

from app.accounts.caller import Caller
from app.accounts.service import UnknownAccount
from app.acme.errors import DnsTargetRefused, customer_view
from app.acme.models import CertificateOrder, DnsProvider
from app.acme.providers import kind_of
from app.acme.repository import AcmeRepository
from app.acme.schemas import (
    AuthorizationOut,
    DnsProviderCreate,
    DnsProviderOut,
    DnsProviderPage,
    OrderCreate,
    OrderOut,
    OrderPage,
)
from app.acme.service import (
    AcmeService,
    BindNeedsOneDomain,
    DnsProviderRequired,
    Http01Unavailable,
    InvalidDnsProvider,
    NameNotAllowed,
    NotRenewable,
    OrderInProgress,
    UnknownDnsProvider,
    WildcardRequiresDns01,
)
from app.certificates.repository import CertificateRepository
from app.certificates.service import CertificateService
from app.deps import Context, CurrentCaller, Session
from app.idempotency.http import IDEMPOTENT, IdempotentRoute
from app.kit import conditions
from app.outbound import OutboundGuard
from app.paging import InvalidCursor, PageParams
from app.problems import Forbidden, NotFound, responses
from app.servers.software import SniUnsupported

router = APIRouter(tags=["acme"], route_class=IdempotentRoute)


async def get_service(session: Session, ctx: Context) -> AcmeService:
    return AcmeService(AcmeRepository(session), ctx.master_key,
                       CertificateService(CertificateRepository(session), ctx.master_key),
                       OutboundGuard.for_dns(ctx.settings))


Acme = Annotated[AcmeService, Depends(get_service)]


def provider_out(row: DnsProvider, caller: Caller) -> dict:
    """The provider as ``caller`` may read it: its kind's public settings and the names of its
    secrets for an admin or the owning customer; a platform provider shown to a customer is only
    what ordering with it takes (id, name, kind, usable), not the operator's addresses and key names."""
    kind = kind_of(row.kind)
    full = caller.is_admin or row.account_id is not None  # a customer is only shown its own or the platform's
    return {"id": row.id, "name": row.name, "kind": row.kind, "account_id": row.account_id,
            "settings": kind.public(row.settings) if full else None,
            "secrets_set": kind.secret_names(row.settings) if full else [], "usable": True,
            "created_at": row.created_at}


def _condition(stored: dict | None, at, caller: Caller) -> dict | None:
    """An order's condition (rows from before migration 0012 read in the current shape), as
    ``caller`` may read it: a customer gets the generic text of some errors."""
    error = conditions.read(stored, at=at)
    return error if caller.is_admin else customer_view(error)


def order_out(row: CertificateOrder, caller: Caller) -> OrderOut:
    """The order as `caller` may read it: a customer gets the generic text of some errors."""
    return OrderOut(
        id=row.id, status=row.status, purpose=row.purpose, account_id=row.account_id, domain=row.domain,
        names=row.names, challenge=row.challenge, dns_provider_id=row.dns_provider_id, key_type=row.key_type,
        bind=row.bind, certificate_id=row.result_certificate_id or row.certificate_id,
        authorizations=[AuthorizationOut(**a) for a in row.authorizations or []],
        error=_condition(row.error, row.finished_at or row.created_at, caller),
        created_at=row.created_at, finished_at=row.finished_at, duration_ms=row.duration_ms,
    )


@router.post("/v1/dns-providers", operation_id="createDnsProvider", response_description="The provider, stored (without its secrets)",
    summary="Store a DNS provider for dns-01",
    status_code=201, response_model=DnsProviderOut, dependencies=[IDEMPOTENT],
    responses=responses(Forbidden, InvalidDnsProvider, DnsTargetRefused, UnknownAccount))
async def create_dns_provider(body: DnsProviderCreate, caller: CurrentCaller, acme: Acme, response: Response):
    """Store a DNS provider for dns-01; `kind` picks the settings schema (`rfc2136`: TSIG-signed
    dynamic updates; `lexicon`: a DNS hosting API through dns-lexicon). Secrets (`key_secret`,
    every `credentials` value) are write-only and encrypted; `secrets_set` names them.

    A provider owned by a customer account must name public addresses (the server and
    `propagation_nameservers` on port 53), and a `lexicon` one may only reach its vendor's API
    (no server, host, endpoint, URL or file options; not `auto`, `ddns`, `localzone`), checked
    now and before each use; the platform's may. `zones` lets the provider write delegated
    `_acme-challenge` CNAME targets for orders that name another provider (docs/dns-providers.md).
    """
    provider = await acme.create_provider(caller, body)
    response.headers["Location"] = f"/v1/dns-providers/{provider.id}"
    return provider_out(provider, caller)


@router.get("/v1/dns-providers", operation_id="listDnsProviders", response_description="A page of the providers the caller may use",
    summary="List DNS providers",
    response_model=DnsProviderPage, responses=responses(InvalidCursor))
async def list_dns_providers(caller: CurrentCaller, acme: Acme, page: PageParams,
                             account_id: Annotated[str | None, Query(
                                 description="Only this account's providers (the platform's are left out). "
                                 "A customer naming another account gets an empty list.")] = None):
    """DNS providers in name order (then `id`). Admins see all; a customer sees its own and the
    platform's (`account_id` null), never any secret, and of the platform's only what ordering with
    them takes: id, name, kind, `usable` (`settings` null, `secrets_set` empty)."""
    window = await acme.list_providers(caller, account_id, page)
    return DnsProviderPage.of(window, [provider_out(r, caller) for r in window.rows])


@router.get("/v1/dns-providers/{provider_id}", operation_id="getDnsProvider", response_description="The provider (without its secrets)",
    summary="Get a DNS provider", response_model=DnsProviderOut, responses=responses(NotFound))
async def get_dns_provider(provider_id: str, caller: CurrentCaller, acme: Acme):
    """One DNS provider, without its secrets (`secrets_set` names those stored). A customer sees its own, and
    of the platform's only id, name, kind and `usable` (`settings` null), as in the list."""
    return provider_out(await acme.visible_provider(caller, provider_id, for_use=True), caller)


@router.delete("/v1/dns-providers/{provider_id}", operation_id="deleteDnsProvider", response_description="Deleted",
    summary="Delete a DNS provider", status_code=204, responses=responses(NotFound))
async def delete_dns_provider(provider_id: str, caller: CurrentCaller, acme: Acme):
    """Delete a DNS provider and its secrets; orders that used it keep their history (their `dns_provider_id` becomes null) and renewals of their certificates then need another provider. A customer deletes only its own."""
    await acme.delete_provider(caller, provider_id)
    return Response(status_code=204)


ORDER_ERRORS = (NameNotAllowed, WildcardRequiresDns01, DnsProviderRequired, UnknownDnsProvider, Http01Unavailable,
                BindNeedsOneDomain, SniUnsupported, OrderInProgress, NotFound)


@router.post("/v1/certificate-orders", operation_id="createCertificateOrder", response_description="The order, accepted; the worker runs it (poll `Location`)",
    summary="Order a certificate from the ACME CA",
    status_code=202, response_model=OrderOut, dependencies=[IDEMPOTENT],
    responses=responses(*ORDER_ERRORS))
async def create_order(body: OrderCreate, caller: CurrentCaller, acme: Acme, response: Response):
    """Request a certificate from the ACME CA. The worker runs the order; poll its `Location`.

    The recommended order is `{"domain": "example.com", "wildcard": true, "challenge": "dns-01",
    "dns_provider_id": "...", "bind": ["webmail", "mail"]}`: one certificate for the domain and
    every name one level below it, bound to webmail and mail once issued.
    """
    order = await acme.create_order(caller, body)
    response.headers["Location"] = f"/v1/certificate-orders/{order.id}"
    return order_out(order, caller)


@router.get("/v1/certificate-orders", operation_id="listCertificateOrders", response_description="A page of orders",
    summary="List certificate orders",
    response_model=OrderPage, responses=responses(InvalidCursor))
async def list_orders(caller: CurrentCaller, acme: Acme, page: PageParams,
                      status: Annotated[str | None, Query(
                          pattern="^(pending|processing|valid|invalid)$",
                          description="Only orders in this state: `pending`, `processing`, `valid` or `invalid`.")] = None,
                      account_id: Annotated[str | None, Query(
                          description="Only this account's orders. A customer sees only its own account's "
                          "whatever it names here (another account: an empty list).")] = None):
    """Orders, newest first (by `created_at`, then `id`, both descending). A customer sees its
    own account's orders only."""
    window = await acme.list_orders(caller, account_id, status, page)
    return OrderPage.of(window, [order_out(r, caller) for r in window.rows])


@router.get("/v1/certificate-orders/{order_id}", operation_id="getCertificateOrder", response_description="The order",
    summary="Get a certificate order", response_model=OrderOut, responses=responses(NotFound))
async def get_order(order_id: str, caller: CurrentCaller, acme: Acme):
    """One order: its status (`pending`, `processing`, `valid`, `invalid`), authorizations, the issued `certificate_id` once valid, and the `error` when invalid."""
    return order_out(await acme.visible_order(caller, order_id), caller)


@router.post("/v1/certificates/{certificate_id}/renew", operation_id="renewCertificate", response_description="The renewal order, accepted (poll `Location`)",
    summary="Renew an ACME certificate now",
    status_code=202, response_model=OrderOut, dependencies=[IDEMPOTENT],
    responses=responses(NotFound, NotRenewable, OrderInProgress, DnsProviderRequired))
async def renew_certificate(certificate_id: str, caller: CurrentCaller, acme: Acme, response: Response):
    """Renew an ACME certificate now, with the settings of the order that issued it."""
    order = await acme.renew_now(caller, certificate_id)
    response.headers["Location"] = f"/v1/certificate-orders/{order.id}"
    return order_out(order, caller)
