"""Certificates: store uploaded or generated material, replace it, delete it.

Rules about the material itself live in ``material.py``; rules about where a certificate may
be bound live in ``app.domains.rules``. Nothing here commits: the request boundary does.
"""

from __future__ import annotations

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
    CertificateFilter,
    CertificateRepository,
    Usage,
    decode_cursor,
    encode_cursor,
)
from app.db import new_id
from app.deployments.outbox import servers_changed
from app.kit import x509 as kx
from app.kit.coverage import candidate_sans, covers
from app.kit.crypto import MasterKey
from app.kit.names import InvalidName, normalise_hostname
from app.kit.time import expired, utc_now
from app.problems import NotFound, RuleViolation


class InvalidCursor(RuleViolation):
    """The `cursor` is not one this API returned (or it was altered); start again without it."""

    code, title = "invalid_cursor", "The pagination cursor is not valid"


class InvalidFilter(RuleViolation):
    """A filter value is not valid, e.g. `covers` is not a host name."""

    code, title = "invalid_filter", "A filter value is not valid"


@dataclass
class Page:
    items: list[Certificate]
    usages: dict[str, list[Usage]]
    next_cursor: str | None


def _dn(name: x509.Name) -> str:
    return name.rfc4514_string()


class CertificateService:
    def __init__(self, repo: CertificateRepository, master_key: MasterKey):
        self.repo = repo
        self.master_key = master_key

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
        cert.trusted = material.trusted
        cert.chain_length = 1 + len(material.chain)
        cert.certificate_pem = material.certificate_pem
        cert.chain_pem = material.chain_pem
        cert.key_ciphertext = sealed.ciphertext
        cert.key_wrapped = sealed.wrapped_key
        cert.master_key_id = sealed.master_key_id

    async def store(self, material: Material, *, account_id: str | None, name: str | None, source: str) -> Certificate:
        if account_id is not None and not await self.repo.account_exists(account_id):
            # an admin naming an account that does not exist: refused, not a foreign-key 500
            raise UnknownAccount(f"account {account_id} not found")
        cert = Certificate(id=new_id(), account_id=account_id, name=name, source=source, revision=1)
        self._fill(cert, material)
        cert.names = [CertificateName(name=n) for n in dict.fromkeys(material.sans)]
        await self.repo.add(cert)
        return cert

    # -- reads ----------------------------------------------------------------------------
    async def get_visible(self, caller: Caller, cert_id: str) -> Certificate:
        return caller.visible(await self.repo.get(cert_id), "certificate")

    async def usages_of(self, certs: list[Certificate]) -> dict[str, list[Usage]]:
        return await self.repo.usages([c.id for c in certs])

    async def list(
        self,
        caller: Caller,
        *,
        covers_name: str | None,
        expires_before: datetime | None,
        account_id: str | None,
        limit: int,
        cursor: str | None,
    ) -> Page:
        after = None
        if cursor:
            after = decode_cursor(cursor)
            if after is None:
                raise InvalidCursor("the cursor is not one this API returned")
        candidates = None
        if covers_name is not None:
            try:
                candidates = candidate_sans(normalise_hostname(covers_name))
            except InvalidName as exc:
                raise InvalidFilter(f"covers: {exc}") from None
        restrict = not caller.is_admin or account_id is not None
        flt = CertificateFilter(
            account_id=caller.account_id if not caller.is_admin else account_id,
            restrict_to_account=restrict,
            covers=candidates,
            expires_before=expires_before,
        )
        rows = await self.repo.list(flt, limit + 1, after)
        next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
        rows = rows[:limit]
        return Page(rows, await self.usages_of(rows), next_cursor)

    # -- changes --------------------------------------------------------------------------
    async def replace(self, caller: Caller, cert_id: str, material: Material, name: str | None) -> Certificate:
        """New material for the same certificate: bindings stay, ``revision`` goes up.

        The new certificate must still cover every host name it is bound to, and every server
        that serves it gets a new generation (domain.md, "Rules that come from practice").
        """
        cert = await self.get_visible(caller, cert_id)
        if not await self.repo.lock(cert):  # serialised with binds of it: usages are final below
            raise NotFound("certificate not found")
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
        self._fill(cert, material)
        await self.repo.replace_names(cert.id, material.sans)
        # In SQL (revision = revision + 1), not from the value read above: concurrent replaces
        # each count, where a Python += lost all but one of them.
        cert.revision = Certificate.revision + 1
        if name is not None:
            cert.name = name
        await self.repo.session.flush()
        await self.repo.session.refresh(cert, ["revision"])
        await servers_changed(
            self.repo.session,
            [u.server_id for u in usages if u.server_id],
            f"certificate {cert.id} replaced (revision {cert.revision})",
            names=_bound_names(usages),
        )
        return cert

    async def delete(self, caller: Caller, cert_id: str) -> None:
        cert = await self.get_visible(caller, cert_id)
        usages = (await self.repo.usages([cert.id]))[cert.id]
        if usages:
            where = ", ".join(sorted({u.hostname or f"server {u.server_id} default" for u in usages}))
            raise errors.CertificateInUse(
                f"the certificate is bound ({where}); remove those bindings first",
                bindings=len(usages),
            )
        try:
            await self.repo.delete(cert)
        except IntegrityError:
            # A concurrent bind (or server-wide assignment) committed between the usage check
            # and the DELETE: the foreign key refuses it. The transaction only rolls back now.
            raise errors.CertificateInUse(
                "the certificate was bound by a concurrent request; remove that binding first"
            ) from None


def _bound_names(usages) -> dict[str, list[str]]:
    """Per server, the host names whose material a replace changes (server-wide and default
    certificates are the document's scalars, re-read by every delivery)."""
    out: dict[str, list[str]] = {}
    for usage in usages:
        if usage.kind == "domain" and usage.server_id:
            out.setdefault(usage.server_id, []).append(usage.hostname)
    return out
