"""DNS providers and certificate orders: who may do what, checked before the worker runs.

An order is only written when it can succeed as far as certpost can tell: the names belong to
domains the caller may use, a wildcard goes over dns-01 (RFC 8555 section 7.1.3: wildcard
identifiers need dns-01 at every public CA), the provider and any certificate to replace are
the caller's, and a requested binding is one the domain's server can serve.
"""

from __future__ import annotations

import asyncio
import json

from sqlalchemy.exc import IntegrityError

from app.accounts.caller import Caller
from app.accounts.models import Account
from app.accounts.service import UnknownAccount
from app.acme import transitions
from app.acme.errors import DnsTargetRefused
from app.acme.models import CertificateOrder, DnsProvider
from app.acme.providers import KINDS, DnsKind, InvalidDnsProvider, parse_nameserver
from app.acme.repository import AcmeRepository
from app.acme.schemas import OrderCreate
from app.certificates.service import CertificateService
from app.db import new_id, record_worker_work
from app.events import EventKind, record
from app.kit.crypto import MasterKey, Sealed
from app.kit.mailclients import with_autoconfig_names
from app.kit.names import InvalidName, normalise_hostname
from app.kit.outbound import OutboundRefused
from app.outbound import RESOLVE_TIMEOUT, OutboundGuard
from app.paging import PageRequest, Window
from app.problems import Conflict, NotFound, RuleViolation
from app.servers.models import Server
from app.servers.software import require_per_domain_mail

TARGET_RULE = ("the DNS provider may only contact public unicast addresses: settings.server and settings.port "
               "(port 53) and settings.propagation_nameservers (port 53); a lexicon provider only its vendor's "
               "API (no server, host, endpoint, URL or file options)")


class WildcardRequiresDns01(RuleViolation):
    """A wildcard name can only be validated over dns-01 (RFC 8555 section 7.1.3)."""

    code, title = "wildcard_requires_dns01", "Wildcard names can only be validated over dns-01"


class DnsProviderRequired(RuleViolation):
    """dns-01 needs a `dns_provider_id` (or, for a renewal, the original order's provider is gone)."""

    code, title = "dns_provider_required", "dns-01 needs a dns_provider_id"


class UnknownDnsProvider(RuleViolation):
    """The `dns_provider_id` does not name a provider the caller may use."""

    code, title = "unknown_dns_provider", "No such DNS provider"


ORDER_NAMES_AT_MOST = 100  # OrderCreate.names' bound; Let's Encrypt's limit per certificate


class NameNotAllowed(RuleViolation):
    """A name is not under a domain registered to the caller's account (`name` says which)."""

    code, title = "name_not_allowed", "A name is not under a domain this caller may use"
    extensions = ("name",)


class Http01Unavailable(RuleViolation):
    """http-01 needs the domain's server to have an agent that answers the challenge; this one has none."""

    code, title = "http01_unavailable", "No agent can answer HTTP-01 for this domain"


class BindNeedsOneDomain(RuleViolation):
    """`bind` binds the result to one domain, so the names must all be under that domain."""

    code, title = "bind_needs_one_domain", "`bind` needs names under a single domain"


class NotRenewable(Conflict):
    """Only a certificate certpost issued over ACME can be renewed."""

    code, title = "not_renewable", "The certificate was not issued over ACME by certpost"


class OrderInProgress(Conflict):
    """An order for this certificate is already pending or processing; poll it instead."""

    code, title = "order_in_progress", "An order for this certificate is already running"


class DnsProviderInUse(Conflict):
    """Orders still use this DNS provider."""

    code, title = "dns_provider_in_use", "Orders still use this DNS provider"


def _suffixes(name: str) -> list[str]:
    labels = name.removeprefix("*.").split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


def provider_secrets(master_key: MasterKey, row: DnsProvider) -> dict:
    """The provider's secret settings, unsealed for the worker's use only."""
    return json.loads(master_key.open(Sealed(row.secret_ciphertext, row.secret_wrapped, row.master_key_id), row.id))


__all__ = ["InvalidDnsProvider", "parse_nameserver"]  # their home is app.acme.providers


def guarded(row: DnsProvider) -> bool:
    """Whether the outbound guard applies to a provider: every provider a customer account owns.

    The platform's own providers (no account; only an admin token can create them) are the
    operator's configuration, like the database URL, and may point anywhere, loopback included.
    A provider owned by a customer is used on that customer's behalf, whoever typed it in.
    """
    return row.account_id is not None


class AcmeService:
    def __init__(self, repo: AcmeRepository, master_key: MasterKey, certificates: CertificateService,
                 guard: OutboundGuard | None = None):
        self.repo = repo
        self.master_key = master_key
        self.certificates = certificates
        self.guard = guard or OutboundGuard()  # without one: public port 53 only, system resolver

    async def _check_targets(self, caller: Caller, kind: DnsKind, settings: dict, secrets: dict) -> None:
        """The outbound guard at creation, per the kind (the servers, name servers and URLs it names).

        A customer learns only that the target is not allowed, not what a name resolved to (the
        resolver may know internal names); an admin gets the reason.
        """
        try:
            await asyncio.wait_for(asyncio.to_thread(kind.check_targets, settings, self.guard, secrets), RESOLVE_TIMEOUT + 1)
        except (OutboundRefused, TimeoutError) as exc:
            reason = exc.reason if isinstance(exc, OutboundRefused) else "resolution timed out"
            raise DnsTargetRefused(f"{TARGET_RULE}: {reason}" if caller.is_admin else TARGET_RULE) from None

    # -- DNS providers --------------------------------------------------------------------
    async def create_provider(self, caller: Caller, body) -> DnsProvider:
        """Store a provider of any registered kind: the kind validates and splits off the
        secrets (blocking: a Lexicon provider's options are read from its module), which are
        sealed to the row's id; a customer's provider passes the outbound guard first."""
        owner = caller.owner_for_new(body.account_id)
        if owner is not None and await self.repo.session.get(Account, owner) is None:
            raise UnknownAccount(f"account {owner} not found")  # not a foreign-key 500
        kind = KINDS[body.kind]
        prepared = await asyncio.to_thread(kind.prepare, body.settings)
        if owner is not None:
            await self._check_targets(caller, kind, prepared.settings, prepared.secrets)
        row = DnsProvider(id=new_id(), account_id=owner, name=body.name, kind=body.kind, settings=prepared.settings,
                          secret_ciphertext=b"", secret_wrapped=b"", master_key_id="")
        sealed = self.master_key.seal(json.dumps(prepared.secrets).encode(), row.id)
        row.secret_ciphertext, row.secret_wrapped, row.master_key_id = sealed.ciphertext, sealed.wrapped_key, sealed.master_key_id
        await self.repo.add(row)
        record(self.repo.session, EventKind.DNS_PROVIDER_CREATED, caller, account_id=owner,
               subjects={"dns_provider": row.id}, data={"name": row.name, "kind": row.kind})
        return row

    async def list_providers(self, caller: Caller, account_id: str | None, page: PageRequest) -> Window[DnsProvider]:
        """A customer lists its own providers and the platform's, which it may use (never any secret)."""
        return await self.repo.providers(
            caller.visible_rows(DnsProvider.account_id, requested=account_id, shared=True), page
        )

    async def visible_provider(self, caller: Caller, provider_id: str, *, for_use: bool = False) -> DnsProvider:
        row = await self.repo.provider(provider_id)
        # Customers may use the platform's providers (their secrets stay hidden) and their own.
        if row is None or not (caller.can_see(row.account_id) or (for_use and row.account_id is None)):
            raise NotFound("DNS provider not found")
        return row

    async def delete_provider(self, caller: Caller, provider_id: str) -> None:
        row = await self.visible_provider(caller, provider_id)
        await self.repo.delete(row)
        record(self.repo.session, EventKind.DNS_PROVIDER_DELETED, caller, account_id=row.account_id,
               subjects={"dns_provider": row.id}, data={"name": row.name, "kind": row.kind})

    # -- orders ---------------------------------------------------------------------------
    async def _owning_domains(self, caller: Caller, names: list[str]):
        wanted = {s for n in names for s in _suffixes(n)}
        domains = await self.repo.domains_named(wanted)
        owners = {}
        for name in names:
            owner = next((domains[s] for s in _suffixes(name) if s in domains), None)
            if owner is None or not caller.can_see(owner.account_id):
                raise NameNotAllowed(f"{name} is not under a domain registered to this account", name=name)
            owners[name] = owner
        return owners

    async def create_order(self, caller: Caller, body: OrderCreate, *, purpose: str = "new") -> CertificateOrder:
        try:
            if body.domain is not None:
                base = normalise_hostname(body.domain)
                names = [base, f"*.{base}"] if body.wildcard else [base]
            else:
                names = list(dict.fromkeys(normalise_hostname(n, allow_wildcard=True) for n in body.names or []))
        except InvalidName as exc:
            raise NameNotAllowed(str(exc)) from None
        if body.challenge == "http-01" and any(n.startswith("*.") for n in names):
            raise WildcardRequiresDns01("a wildcard needs challenge dns-01 (RFC 8555 section 7.1.3)")
        owners = await self._owning_domains(caller, names)
        domains = {d.id: d for d in owners.values()}
        if body.autoconfig:  # under the same domains, so owned as the names are
            names = with_autoconfig_names(names, sorted(d.name for d in domains.values()))
            if len(names) > ORDER_NAMES_AT_MOST:
                raise NameNotAllowed(f"with the autoconfiguration names the order has {len(names)} names; "
                                     f"at most {ORDER_NAMES_AT_MOST}")
        domain = next(iter(domains.values())) if len(domains) == 1 else None
        provider_id = None
        if body.challenge == "dns-01":
            if not body.dns_provider_id:
                raise DnsProviderRequired("dns-01 needs dns_provider_id (POST /v1/dns-providers)")
            try:
                provider_id = (await self.visible_provider(caller, body.dns_provider_id, for_use=True)).id
            except NotFound:
                raise UnknownDnsProvider(f"DNS provider {body.dns_provider_id} does not exist") from None
        servers = {d.server_id: await self.repo.session.get(Server, d.server_id) for d in domains.values()}
        if body.challenge == "http-01":
            for server in servers.values():
                if not server.agent_url:
                    raise Http01Unavailable(f"server {server.name} has no agent to answer HTTP-01; use dns-01")
        if body.bind:
            if domain is None:
                raise BindNeedsOneDomain("to bind the result, order names of one domain")
            server = servers[domain.server_id]
            if "mail" in body.bind:
                require_per_domain_mail(server.software, server.hostname, domain.name)
        if body.certificate_id:
            await self.certificates.get_visible(caller, body.certificate_id)
            if await self.repo.open_order_for(body.certificate_id):
                raise OrderInProgress("an order for this certificate is pending or processing")
            purpose = "renewal" if purpose == "renewal" else "replace"
        order = CertificateOrder(
            id=new_id(),
            account_id=domain.account_id if domain is not None else caller.account_id,
            domain=domain.name if domain is not None else None,
            names=names,
            challenge=body.challenge,
            dns_provider_id=provider_id,
            key_type=body.key_type,
            bind=list(dict.fromkeys(body.bind)),
            purpose=purpose,
            certificate_id=body.certificate_id,
            status="pending",
            authorizations=[{"identifier": n, "challenge": body.challenge, "status": "pending"} for n in names],
        )
        try:
            await self.repo.add(order)
        except IntegrityError:
            # The provider or the certificate, found above, was deleted by a concurrent request
            # before this row was written: its foreign key refuses the order. The transaction
            # is only good for rolling back now, so nothing more is asked of it.
            if provider_id is not None:
                raise UnknownDnsProvider(
                    f"DNS provider {provider_id} (or the certificate) was deleted meanwhile"
                ) from None
            raise NotFound("the certificate was deleted meanwhile") from None
        record_worker_work(self.repo.session)
        return order

    async def list_orders(self, caller: Caller, account_id: str | None, status: str | None,
                          page: PageRequest) -> Window[CertificateOrder]:
        return await self.repo.orders(caller.visible_rows(CertificateOrder.account_id, requested=account_id),
                                      status, page)

    async def visible_order(self, caller: Caller, order_id: str) -> CertificateOrder:
        return caller.visible(await self.repo.order(order_id), "order")

    async def renew_now(self, caller: Caller, certificate_id: str) -> CertificateOrder:
        """``POST /v1/certificates/{id}/renew``: a renewal order with the issuing order's settings."""
        cert = await self.certificates.get_visible(caller, certificate_id)
        previous = await self.repo.order(cert.order_id) if cert.order_id else None
        if cert.source != "acme" or previous is None:
            raise NotRenewable("only certificates issued by a certpost ACME order can be renewed; order a new one")
        body = OrderCreate(names=previous.names, challenge=previous.challenge, dns_provider_id=previous.dns_provider_id,
                           key_type=previous.key_type, certificate_id=cert.id)
        order = await self.create_order(caller, body, purpose="renewal")
        transitions.renewal_scheduled(self.repo.session, cert, order, caller)
        return order
