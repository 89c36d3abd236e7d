"""Domains, their webmail/mail bindings, and what clients see for them.

Binding rules come from ``rules.py`` (pure); this module loads the rows, applies them and
records the outbox change in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from app.accounts.caller import Caller
from app.accounts.repository import AccountRepository
from app.accounts.service import UnknownAccount
from app.certificates.models import Certificate
from app.certificates.service import CertificateService
from app.db import new_id
from app.deployments.outbox import servers_changed
from app.domains import rules, tls_upkeep
from app.domains.models import SERVICES, Domain
from app.domains.repository import CertificateFacts, DomainFacts, DomainRepository, ServerFacts
from app.drift import rules as drift_rules
from app.events import EventKind, record
from app.kit.coverage import is_public_suffix
from app.kit.names import InvalidName, normalise_hostname
from app.kit.time import utc_now
from app.paging import PageRequest, Window
from app.preconditions import NONE as NO_PRECONDITION
from app.preconditions import Precondition, binding_tag, bindings_tag, domain_tag
from app.problems import Conflict, NotFound, RuleViolation
from app.servers.models import Server
from app.servers.repository import ServerRepository
from app.servers.software import mail_ports, require_per_domain_mail


class InvalidDomainName(RuleViolation):
    """The domain name is not a valid DNS name (IDNA 2008), too long for `webmail.<domain>`, or an address."""

    code, title = "invalid_name", "Not a valid domain name"


class DomainExists(Conflict):
    """A domain with this name is already hosted."""

    code, title = "domain_exists", "The domain is already registered"


class UnknownServer(RuleViolation):
    """The `server_id` names no server."""

    code, title = "unknown_server", "No such server"


class CertificateAccountMismatch(RuleViolation):
    """The certificate belongs to another account than the domain."""

    code, title = "certificate_account_mismatch", "The certificate belongs to another account"


@dataclass
class Effective:
    """The certificate a service presents for a domain, and why."""

    service: str
    hostname: str
    source: str  # "binding" | "server-default"
    certificate: Certificate | CertificateFacts
    warnings: list[rules.Warning]
    created: bool = False  # a bind that made the binding (201), not one that replaced it (200)
    etag: str | None = None  # the binding's entity tag after a bind (app/preconditions.py)


@dataclass
class DomainStatus:
    """A domain as its TLS status and bindings show it."""

    domain: DomainFacts
    server: ServerFacts
    effective: dict[str, Effective]
    server_certificate: CertificateFacts  # the server-wide mail certificate


def _lookup_name(name: str) -> str:
    """A path's domain name as stored; a name that cannot be one is not found (404)."""
    try:
        return normalise_hostname(name)
    except InvalidName:
        raise NotFound("domain not found") from None


LONGEST_SERVICE_LABEL = "webmail."
MAX_DOMAIN_LENGTH = 253 - len(LONGEST_SERVICE_LABEL)
"""``webmail.<domain>`` must itself be a host name (at most 253 characters): a longer domain
could never be covered, and a wildcard binding would put an invalid name in the server's
configuration, which the agent refuses as a whole (every domain on the server stops deploying)."""


def parse_domain_name(name: str) -> str:
    try:
        domain_name = normalise_hostname(name)
    except InvalidName as exc:
        raise InvalidDomainName(str(exc)) from None
    if len(domain_name) > MAX_DOMAIN_LENGTH:
        raise InvalidDomainName(
            f"the name has {len(domain_name)} characters; at most {MAX_DOMAIN_LENGTH}, "
            f"so that webmail.<domain> stays within 253"
        )
    if domain_name.rsplit(".", 1)[-1].isdigit():
        raise InvalidDomainName("the top-level label is all digits (an IP address is not a domain name)")
    if is_public_suffix(domain_name):
        # Nobody owns `co.uk` or `com`: no CA issues for it nor for a wildcard under it
        # (Baseline Requirements 3.2.2.6), so its webmail and mail could never be secured.
        raise InvalidDomainName(f"{domain_name} is a public suffix, not a registrable domain")
    return domain_name


class DomainService:
    def __init__(self, repo: DomainRepository, certificates: CertificateService, expiring_days: int = 30):
        self.repo = repo
        self.certificates = certificates
        self.servers = ServerRepository(repo.session)
        self.expiring_days = expiring_days

    async def create(self, name: str, server_id: str, account_id: str) -> Domain:
        domain_name = parse_domain_name(name)
        if await self.servers.get(server_id) is None:
            raise UnknownServer(f"server {server_id} does not exist")
        if await AccountRepository(self.repo.session).get_account(account_id) is None:
            raise UnknownAccount(f"account {account_id} does not exist")
        if await self.repo.by_name(domain_name):
            raise DomainExists(f"{domain_name} is already registered")
        domain = Domain(id=new_id(), name=domain_name, server_id=server_id, account_id=account_id)
        try:
            await self.repo.add(domain)
        except IntegrityError:
            raise DomainExists(f"{domain_name} is already registered") from None
        # mail.<d> is marked although nothing is bound yet: a delivery recomputes the domain's
        # autoconfiguration for the marked mail names (app/deployments/autoconfig.py).
        await servers_changed(self.repo.session, [server_id], f"domain {domain_name} added",
                              names={server_id: [rules.service_hostname("mail", domain_name)]})
        await tls_upkeep.domains(self.repo.session, [domain.id])
        return domain

    async def list(self, caller: Caller, *, server_id: str | None, account_id: str | None,
                   page: PageRequest) -> Window:
        return await self.repo.list(caller.visible_rows(Domain.account_id, requested=account_id), server_id, page)

    async def get_visible(self, caller: Caller, name: str) -> Domain:
        try:
            domain_name = normalise_hostname(name)
        except InvalidName:
            raise NotFound("domain not found") from None
        return caller.visible(await self.repo.by_name(domain_name), "domain")

    async def delete(self, caller: Caller, name: str, expected: Precondition = NO_PRECONDITION) -> None:
        domain = await self.get_visible(caller, name)
        await self.servers.lock(domain.server_id)
        expected.require(domain_tag(domain.id))
        bound = {service: await self.repo.bound_certificate(domain.id, service) for service in SERVICES}
        if not await self.repo.delete_domain(domain.id):
            raise NotFound("domain not found")  # a concurrent DELETE removed it first
        await self._mail_moved(domain.server_id, domain.id, bound["mail"], None)
        await servers_changed(self.repo.session, [domain.server_id], f"domain {domain.name} removed",
                              names={domain.server_id: [rules.service_hostname(s, domain.name) for s in SERVICES]})
        for service, cert_id in bound.items():
            if cert_id is not None:  # its bindings went with it
                self._unbound(caller, domain.name, domain.server_id, domain.account_id, service, cert_id,
                              reason="domain_deleted")

    async def _mail_moved(self, server_id: str, domain_id: str, old: str | None, new: str | None) -> None:
        """Keep ``servers.mail_certificate_count`` (distinct certificates bound as mail) after the
        domain's mail binding went from ``old`` to ``new`` (None: no binding).

        The caller holds the server's lock (``ServerRepository.lock``), taken before the binding
        changed, so the changes of one server are judged one after the other on final rows.
        """
        if old == new:
            return
        delta = 0
        if new is not None and not await self.repo.mail_certificate_elsewhere(server_id, new, domain_id):
            delta += 1
        if old is not None and not await self.repo.mail_certificate_elsewhere(server_id, old, domain_id):
            delta -= 1
        await self.servers.add_mail_certificates(server_id, delta)

    async def _server(self, domain: Domain) -> Server:
        server = await self.servers.get(domain.server_id)
        assert server is not None  # foreign key
        return server

    async def _require(self, expected: Precondition, domain_id: str, service: str) -> None:
        """If-Match on a binding: its own tag, or the bindings document's (app/preconditions.py).
        The caller holds the server's lock, which every writer of the domain's bindings takes."""
        if expected.given:
            rows = await self.repo.binding_rows(domain_id)
            expected.require(binding_tag(domain_id, service, rows.get(service)), bindings_tag(domain_id, rows))

    async def bind(self, caller: Caller, name: str, service: str, certificate_id: str,
                   expected: Precondition = NO_PRECONDITION) -> Effective:
        domain = await self.get_visible(caller, name)
        server = await self._server(domain)
        cert = await self.certificates.get_visible(caller, certificate_id)
        # Serialised with a replace of the same certificate: the SANs judged below are the ones
        # that stay (a concurrent replace could otherwise swap in material that covers nothing).
        if not await self.certificates.repo.lock(cert):
            raise NotFound("certificate not found")
        if cert.account_id is not None and cert.account_id != domain.account_id:
            raise CertificateAccountMismatch("bind a certificate of the domain's own account")
        if service == "mail":
            require_per_domain_mail(server.software, server.hostname, domain.name)
        hostname = rules.service_hostname(service, domain.name)
        now = utc_now()
        rules.check_bindable(cert, hostname, now)
        warnings = rules.certificate_warnings(cert, now, self.expiring_days)
        if service == "mail":
            server_cert = await self.certificates.repo.get(server.mail_certificate_id)
            warnings += rules.mail_binding_warnings(server_cert, server.hostname, now)
            warnings += rules.front_binding_warnings(
                hostname, server.hostname, mail_ports(server.software, server.tls_front)
            )
        await self.servers.lock(server.id)
        await self._require(expected, domain.id, service)
        written = await self.repo.upsert_binding(domain.id, service, cert.id, now)
        if written.outcome == "gone":
            raise NotFound(f"{domain.name} or the certificate was deleted meanwhile")
        if written.outcome != "unchanged":
            if service == "mail":
                await self._mail_moved(server.id, domain.id, written.previous, cert.id)
            await servers_changed(self.repo.session, [server.id], f"{service} of {domain.name} bound",
                                  names={server.id: [hostname]})
            await tls_upkeep.domains(self.repo.session, [domain.id])
            record(self.repo.session, EventKind.BINDING_SET, caller, account_id=domain.account_id,
                   subjects={"domain": domain.name, "server": server.id, "certificate": cert.id},
                   data={"service": service, "host_name": hostname, "fingerprint_sha256": cert.fingerprint_sha256,
                         "previous_certificate_id": written.previous if written.previous != cert.id else None,
                         "warnings": [w.code for w in warnings]})
        etag = binding_tag(domain.id, service, (await self.repo.binding_rows(domain.id)).get(service))
        return Effective(service, hostname, "binding", cert, warnings, created=written.outcome == "created", etag=etag)

    async def unbind(self, caller: Caller, name: str, service: str, expected: Precondition = NO_PRECONDITION) -> None:
        domain = await self.get_visible(caller, name)
        await self.servers.lock(domain.server_id)
        await self._require(expected, domain.id, service)
        unbound = await self.repo.delete_binding(domain.id, service)
        if unbound is None:
            raise NotFound(f"{service} of {domain.name} has no binding")
        if service == "mail":
            await self._mail_moved(domain.server_id, domain.id, unbound, None)
        await servers_changed(self.repo.session, [domain.server_id], f"{service} of {domain.name} unbound",
                              names={domain.server_id: [rules.service_hostname(service, domain.name)]})
        await tls_upkeep.domains(self.repo.session, [domain.id])
        self._unbound(caller, domain.name, domain.server_id, domain.account_id, service, unbound, reason="unbound")

    def _unbound(self, caller: Caller, domain: str, server_id: str, account_id: str, service: str, cert_id: str, *,
                 reason: str) -> None:
        record(self.repo.session, EventKind.BINDING_REMOVED, caller, account_id=account_id,
               subjects={"domain": domain, "server": server_id, "certificate": cert_id},
               data={"service": service, "host_name": rules.service_hostname(service, domain), "reason": reason})

    async def status(self, caller: Caller, name: str) -> DomainStatus:
        """For each service, the certificate the server presents: the binding, else the default.

        Two columns-only queries in all, whatever the number of domains on the server: the
        caller's token, and the domain with its server and certificates (``DomainRepository.facts``).
        """
        return self._status(caller.visible(await self.repo.facts(_lookup_name(name)), "domain"))

    async def observed_status(self, caller: Caller, name: str) -> tuple[DomainStatus, dict[str, list[dict]]]:
        """``status`` and, per service, what each port was last seen serving for its name
        (app.drift), judged against the certificate it should present, from one statement
        (``DomainRepository.facts_observed``). A name without a binding is served the default,
        so its entries are the no-SNI probes (the agent probes bound names only; an unbound name
        gets what no SNI gets). The agent's error text only for admins (it names internal
        addresses; ``drift_rules.observed``)."""
        domain_name = _lookup_name(name)
        hostnames = {service: rules.service_hostname(service, domain_name) for service in ("webmail", "mail")}
        facts, seen = await self.repo.facts_observed(domain_name, hostnames) or (None, [])
        status = self._status(caller.visible(facts, "domain"))
        observed = {}
        for service, eff in status.effective.items():
            hostname = eff.hostname if eff.source == "binding" else ""
            observed[service] = drift_rules.observed(
                [s for s in seen if s.service == service and s.hostname == hostname], eff.certificate.fingerprint_sha256,
                detail=caller.is_admin)
        return status, observed

    def _status(self, domain: DomainFacts) -> DomainStatus:
        now = utc_now()
        out: dict[str, Effective] = {}
        for service in ("webmail", "mail"):
            cert = domain.presented[service]
            out[service] = Effective(
                service,
                rules.service_hostname(service, domain.name),
                "binding" if domain.bound[service] else "server-default",
                cert,
                rules.certificate_warnings(cert, now, self.expiring_days),
            )
        return DomainStatus(domain, domain.server, out, domain.server_certificate)

    @staticmethod
    def deployments(status: DomainStatus) -> dict[str, rules.NameDeployment]:
        """For each service, whether the server serves what it presents (rules.name_deployment)."""
        server = status.server
        up_to_date = server.applied_generation >= server.desired_generation
        return {
            service: rules.name_deployment(
                service, eff.hostname, eff.certificate.fingerprint_sha256,
                has_agent=bool(server.agent_url), up_to_date=up_to_date, failed_names=status.domain.failed_names,
            )
            for service, eff in status.effective.items()
        }
