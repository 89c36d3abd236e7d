"""Certificates: store uploaded or generated material, replace it, delete it.

Rules about the material itself live in ``material.py``; rules about where a certificate may
be bound live in ``app.domains.rules``. Nothing here commits: the request boundary does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from sqlalchemy.exc import IntegrityError

from app.accounts.caller import Caller
from app.accounts.service import UnknownAccount
from app.certificates import errors
from app.certificates.material import Material
from app.certificates.models import Certificate, CertificateName
from app.certificates.repository import (
    SORTS,
    CertificateFilter,
    CertificateRepository,
    Usage,
)
from app.certificates.trust import Trust, trust_of
from app.db import new_id
from app.deployments.outbox import servers_changed
from app.domains import tls_upkeep
from app.domains.rules import service_hostname
from app.events import EventKind, record
from app.kit import x509 as kx
from app.kit.coverage import candidate_sans, covers
from app.kit.crypto import MasterKey
from app.kit.names import InvalidName, normalise_hostname
from app.kit.time import expired, utc_now
from app.kit.trust import TrustStore
from app.paging import InvalidCursor, PageRequest
from app.preconditions import NONE as NO_PRECONDITION
from app.preconditions import Precondition, certificate_tag
from app.problems import NotFound, RuleViolation
from app.servers.software import require_per_domain_mail

__all__ = ["CertificateService", "InvalidCursor", "InvalidFilter", "Page"]

SERVICES = {"webmail": ("webmail",), "mail": ("mail",), "both": ("webmail", "mail")}
"""``service=`` of the picker: the services whose host names (domains.rules.service_hostname)
the certificate must cover."""


class InvalidFilter(RuleViolation):
    """A filter value is not valid, e.g. `covers` is not a host name."""

    code, title = "invalid_filter", "A filter value is not valid"


@dataclass
class Page:
    items: list[Certificate]
    usages: dict[str, list[Usage]]
    next_cursor: str | None
    total: int | None
    trust: dict[str, Trust]


@dataclass
class Stored:
    """An upload's outcome: the row, and whether it was there before (an identical upload)."""

    certificate: Certificate
    existed: bool
    chain_differs: bool = False


def _dn(name: x509.Name) -> str:
    return name.rfc4514_string()


class CertificateService:
    def __init__(self, repo: CertificateRepository, master_key: MasterKey, trust: TrustStore | None = None):
        self.repo = repo
        self.master_key = master_key
        self.trust = trust  # the current trust store; needed by reads that show ``trust``

    # -- creation -------------------------------------------------------------------------
    def _fill(self, cert: Certificate, material: Material) -> None:
        leaf = material.leaf
        info = kx.key_info(leaf.public_key())
        sealed = self.master_key.seal(material.key_pem, cert.id)
        cert.subject = _dn(leaf.subject)
        cert.issuer = _dn(leaf.issuer)
        cert.serial = format(leaf.serial_number, "x")
        cert.sans = material.sans
        cert.not_before = material.not_before
        cert.not_after = material.not_after
        cert.fingerprint_sha256 = material.fingerprint
        cert.key_type = kx.key_type_label(info)
        cert.key_bits = info.key_bits
        cert.self_signed = material.self_signed
        cert.trusted = material.trust.trusted
        cert.trust_reason = material.trust.reason
        cert.trust_detail = material.trust.detail
        cert.trust_store = material.trust_store
        cert.chain_length = 1 + len(material.chain)
        cert.certificate_pem = material.certificate_pem
        cert.chain_pem = material.chain_pem
        cert.key_ciphertext = sealed.ciphertext
        cert.key_wrapped = sealed.wrapped_key
        cert.master_key_id = sealed.master_key_id

    async def check_account(self, account_id: str | None) -> None:
        if account_id is not None and not await self.repo.account_exists(account_id):
            # an admin naming an account that does not exist: refused, not a foreign-key 500
            raise UnknownAccount(f"account {account_id} not found")

    async def store(self, material: Material, *, account_id: str | None, name: str | None, source: str,
                    caller: Caller) -> Certificate:
        await self.check_account(account_id)
        cert = Certificate(id=new_id(), account_id=account_id, name=name, source=source, revision=1)
        self._fill(cert, material)
        cert.names = [CertificateName(name=n) for n in dict.fromkeys(material.sans)]
        await self.repo.add(cert)
        self._stored(caller, cert)
        return cert

    def _stored(self, caller: Caller, cert: Certificate) -> None:
        record(self.repo.session, EventKind.CERTIFICATE_UPLOADED, caller, account_id=cert.account_id,
               subjects={"certificate": cert.id}, data={**event_data(cert), "source": cert.source, "revision": 1})

    async def store_upload(self, material: Material, *, account_id: str | None, name: str | None,
                           caller: Caller) -> Stored:
        """Store uploaded material, or return the owner's certificate with the same fingerprint.

        The same fingerprint is the same certificate, hence the same public key; a key that
        does not match it was refused while reading (``key_mismatch``), so "the same certificate
        with another key" cannot reach this point. The existing row is returned as it is: its
        name stays, and a different chain is reported (``chain_differs``), not applied (replace
        the material with ``PUT`` for that). Concurrent identical uploads make one row
        (``CertificateRepository.add_unless_present``).
        """
        await self.check_account(account_id)
        existing = await self.repo.by_owner_fingerprint(account_id, material.fingerprint)
        if existing is None:
            cert = Certificate(id=new_id(), account_id=account_id, name=name, source="upload", revision=1)
            self._fill(cert, material)
            stored = await self.repo.add_unless_present(cert)
            if stored is not None:
                self._stored(caller, stored)
                return Stored(stored, existed=False)
            existing = await self.repo.by_owner_fingerprint(account_id, material.fingerprint)
            if existing is None:  # inserted and deleted by others meanwhile: vanishingly rare
                raise errors.CertificateExists("an identical certificate was being uploaded and deleted; retry")
        return Stored(existing, existed=True, chain_differs=(existing.chain_pem or "") != material.chain_pem)

    # -- reads ----------------------------------------------------------------------------
    async def get_visible(self, caller: Caller, cert_id: str) -> Certificate:
        return caller.visible(await self.repo.get(cert_id), "certificate")

    @staticmethod
    def etag(cert: Certificate) -> str:
        """The certificate's entity tag, from a row loaded (or reloaded) in this transaction."""
        return certificate_tag(cert.id, cert.version)

    async def usages_of(self, certs: list[Certificate]) -> dict[str, list[Usage]]:
        return await self.repo.usages([c.id for c in certs])

    async def trust_of(self, certs) -> dict[str, Trust]:
        """Trust now against the current store (app.certificates.trust), batched for a page."""
        return await trust_of(self.repo, self.trust, certs, utc_now())

    async def list(
        self,
        caller: Caller,
        *,
        covers_names: list[str] | None = None,
        usable_for: str | None = None,
        service: str | None = None,
        expires_before: datetime | None = None,
        account_id: str | None = None,
        sort: str = "created_at",
        page: PageRequest,
    ) -> Page:
        """One page; ``covers_names`` all covered; ``usable_for`` the picker (see ``_usable_for``)."""
        if sort not in SORTS:
            raise InvalidFilter(f"sort: one of {', '.join(SORTS)}")
        covers_sets = [_candidates("covers", name) for name in covers_names or []]
        valid_at = bindable = None
        if usable_for is not None:
            names, bindable = await self._usable_for(caller, usable_for, service or "both")
            covers_sets += [_candidates("usable_for", n) for n in names]
            valid_at = utc_now()
        elif service is not None:
            raise InvalidFilter("service: only with usable_for")
        flt = CertificateFilter(
            visible=functools.partial(caller.visible_rows, requested=account_id),
            covers=tuple(tuple(c) for c in covers_sets),
            expires_before=expires_before,
            valid_at=valid_at,
            bindable_for_account=bindable,
            sort=sort,
        )
        window = await self.repo.list(flt, page)
        return Page(window.rows, await self.usages_of(window.rows), window.next_cursor, window.total,
                    await self.trust_of(window.rows))

    async def _usable_for(self, caller: Caller, domain: str, service: str) -> tuple[list[str], str | None]:
        """The host names a certificate must cover to serve ``service`` of ``domain``, and the
        account whose certificates it may bind (with the platform's).

        When certpost knows the domain, only what a bind would accept is offered: the domain's
        own account's certificates and the platform's (``certificate_account_mismatch``
        otherwise), the customer must see the domain (404 as for any other domain), and mail
        (or both) on a server that cannot serve per-domain mail certificates is refused as the
        bind refuses it (409 ``sni_unsupported``), rather than offering certificates that no
        bind would take. An unknown domain (a panel preparing one) is judged on coverage and
        dates alone.
        """
        if service not in SERVICES:
            raise InvalidFilter(f"service: one of {', '.join(SERVICES)}")
        try:
            name = normalise_hostname(domain)
        except InvalidName as exc:
            raise InvalidFilter(f"usable_for: {exc}") from None
        known = await self.repo.domain_for_picker(name)
        if known is None:
            return [service_hostname(s, name) for s in SERVICES[service]], None
        if not caller.can_see(known.account_id):
            raise NotFound("domain not found")
        if "mail" in SERVICES[service]:
            require_per_domain_mail(known.software, known.hostname, name)
        return [service_hostname(s, name) for s in SERVICES[service]], known.account_id

    # -- changes --------------------------------------------------------------------------
    async def replace(self, caller: Caller, cert_id: str, material: Material, name: str | None,
                      expected: Precondition = NO_PRECONDITION) -> Certificate:
        """New material for the same certificate: bindings stay, ``revision`` goes up.

        The new certificate must still cover every host name it is bound to, and every server
        that serves it gets a new generation (domain.md, "Rules that come from practice").
        """
        cert = await self.get_visible(caller, cert_id)
        if not await self.repo.lock(cert):  # serialised with binds of it: usages are final below
            raise NotFound("certificate not found")
        expected.require(self.etag(cert))  # on the locked, reloaded row: app/preconditions.py
        usages = (await self.repo.usages([cert.id]))[cert.id]
        if not caller.is_admin and any(u.kind.startswith("server") for u in usages):
            # A server-wide certificate serves every domain on the server: only the platform
            # may change it (rows from before that rule may still belong to an account).
            raise errors.CertificateServerWide(
                "this certificate is a server's server-wide certificate; only an administrator can replace it"
            )
        if usages:
            # Bound material goes straight to the servers: it must be servable now.
            now = utc_now()
            if expired(material.not_after, now):  # inclusive, a whole second: RFC 5280 4.1.2.5
                raise errors.CertificateExpired(f"the new certificate expired at {material.not_after.isoformat()}")
            if now < material.not_before:
                raise errors.CertificateNotYetValid(f"the new certificate is valid from {material.not_before.isoformat()}")
        for usage in usages:
            if usage.hostname and not covers(material.sans, usage.hostname):
                raise errors.HostnameNotCovered(
                    f"the new certificate does not cover {usage.hostname}, where this certificate is bound",
                    hostname=usage.hostname,
                )
        same = await self.repo.by_owner_fingerprint(cert.account_id, material.fingerprint)
        if same is not None and same.id != cert.id:
            raise errors.CertificateExists(
                f"certificate {same.id} of the same owner already holds this material", certificate_id=same.id
            )
        previous = cert.fingerprint_sha256
        self._fill(cert, material)
        await self.repo.replace_names(cert.id, material.sans)
        # In SQL (revision = revision + 1), not from the value read above: concurrent replaces
        # each count, where a Python += lost all but one of them.
        cert.revision = Certificate.revision + 1
        if name is not None:
            cert.name = name
        try:
            await self.repo.session.flush()
        except IntegrityError:  # a concurrent upload of the same material won the unique index
            raise errors.CertificateExists("a certificate of the same owner already holds this material") from None
        await self.repo.session.refresh(cert, ["revision", "version"])
        record(self.repo.session, EventKind.CERTIFICATE_REPLACED, caller, account_id=cert.account_id,
               subjects={"certificate": cert.id},
               data={**event_data(cert), "previous_fingerprint_sha256": previous, "revision": cert.revision,
                     "bindings": len(usages)})
        await servers_changed(
            self.repo.session,
            [u.server_id for u in usages if u.server_id],
            f"certificate {cert.id} replaced (revision {cert.revision})",
            names=_bound_names(usages),
        )
        await tls_upkeep.presenting(self.repo.session, [cert.id])
        return cert

    async def delete(self, caller: Caller, cert_id: str, expected: Precondition = NO_PRECONDITION) -> None:
        cert = await self.get_visible(caller, cert_id)
        if expected.given:
            if not await self.repo.lock(cert):
                raise NotFound("certificate not found")
            expected.require(self.etag(cert))
        usages = (await self.repo.usages([cert.id]))[cert.id]
        if usages:
            where = ", ".join(sorted({u.hostname or f"server {u.server_id} default" for u in usages}))
            raise errors.CertificateInUse(
                f"the certificate is bound ({where}); remove those bindings first",
                bindings=len(usages),
            )
        facts = event_data(cert)
        try:
            await self.repo.delete(cert)
        except IntegrityError:
            # A concurrent bind (or server-wide assignment) committed between the usage check
            # and the DELETE: the foreign key refuses it. The transaction only rolls back now.
            raise errors.CertificateInUse(
                "the certificate was bound by a concurrent request; remove that binding first"
            ) from None
        record(self.repo.session, EventKind.CERTIFICATE_DELETED, caller, account_id=cert.account_id,
               subjects={"certificate": cert.id}, data=facts)


def event_data(cert: Certificate) -> dict:
    """What every certificate event says of it: never its key, nor even its PEM."""
    return {"name": cert.name, "fingerprint_sha256": cert.fingerprint_sha256, "names": list(cert.sans or []),
            "not_after": cert.not_after.isoformat() if cert.not_after else None}


def _candidates(parameter: str, hostname: str) -> list[str]:
    try:
        return candidate_sans(normalise_hostname(hostname))
    except InvalidName as exc:
        raise InvalidFilter(f"{parameter}: {exc}") from None


def _bound_names(usages) -> dict[str, list[str]]:
    """Per server, the host names whose material a replace changes (server-wide and default
    certificates are the document's scalars, re-read by every delivery)."""
    out: dict[str, list[str]] = {}
    for usage in usages:
        if usage.kind == "domain" and usage.server_id:
            out.setdefault(usage.server_id, []).append(usage.hostname)
    return out
