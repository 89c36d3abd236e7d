"""Queries for certificates, including where each one is in use."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.certificates.models import Certificate, CertificateName
from app.db import unindexed
from app.domains.models import Binding, Domain
from app.kit.trust import ChainVerdict
from app.paging import Order, PageRequest, Window, fetch
from app.servers.models import Server


@dataclass(frozen=True)
class Usage:
    """One place a certificate is in use."""

    kind: str  # "domain" | "server-mail" | "server-webmail" | "server-default"
    service: str  # "webmail" | "mail"
    hostname: str  # the name the certificate must cover there ("" for server-default)
    domain: str | None = None
    server_id: str | None = None


SORTS = ("created_at", "not_after", "-not_after")
"""List orders; ``created_at`` (oldest first) is the default. Each is a unique order with ``id``."""


def _owner_column(covers: bool) -> Any:
    """The owning account's column as the list's filters name it: with a ``covers`` filter (a
    handful of certificates by their names, ``certificate_names``), one the account indexes
    cannot drive on SQLite (``db.unindexed``): its planner otherwise read every certificate of
    the account, 16 ms for the picker at 10,000 (docs/performance.md)."""
    return unindexed(Certificate.account_id) if covers else Certificate.account_id


@dataclass(frozen=True)
class CertificateFilter:
    # Caller.visible_rows with the list's account filter bound: the repository applies it to
    # the owner column as its query needs it named (``_owner_column``)
    visible: Callable[[Any], Any]
    # Each entry is one host name's candidate SANs (kit.coverage.candidate_sans): a certificate
    # must cover every one of them.
    covers: tuple[tuple[str, ...], ...] = ()
    expires_before: datetime | None = None
    valid_at: datetime | None = None  # in date at that moment (not_before <= at <= not_after)
    bindable_for_account: str | None = None  # the platform's certificates or this account's
    sort: str = "created_at"


# What the certificate list shows, so a page does not carry PEM and sealed keys it never uses.
LISTED_COLUMNS = tuple(
    getattr(Certificate, c) for c in (
        "id", "name", "account_id", "subject", "issuer", "serial", "sans", "not_before", "not_after",
        "fingerprint_sha256", "key_type", "key_bits", "self_signed", "trusted", "trust_reason", "trust_detail",
        "trust_store", "chain_length", "source", "revision", "renewal_at", "renewal_status", "renewal_error", "created_at", "updated_at",
    )
)
# What a TLS status or a binding shows of a certificate (and rules.CertFacts needs).
PRESENTED_COLUMNS = tuple(
    getattr(Certificate, c) for c in (
        "id", "fingerprint_sha256", "subject", "issuer", "sans", "not_before", "not_after", "self_signed", "trusted",
    )
)

CERTIFICATE_ORDERS = {
    "created_at": Order("certificates", (Certificate.created_at, Certificate.id)),
    "not_after": Order("certificates:not_after", (Certificate.not_after, Certificate.id)),
    "-not_after": Order("certificates:-not_after", (Certificate.not_after, Certificate.id), descending=True),
}
"""One keyset order per ``sort``; each names its cursors, so a cursor is refused under another sort."""


class CertificateRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def account_exists(self, account_id: str) -> bool:
        from app.accounts.models import Account

        return await self.session.get(Account, account_id) is not None

    async def add(self, cert: Certificate) -> None:
        self.session.add(cert)
        await self.session.flush()

    async def get(self, cert_id: str) -> Certificate | None:
        return await self.session.get(Certificate, cert_id)

    async def by_owner_fingerprint(self, account_id: str | None, fingerprint: str) -> Certificate | None:
        """The owner's certificate with this fingerprint (at most one: uq_certificates_owner_fingerprint)."""
        return await self.session.scalar(
            select(Certificate).where(
                func.coalesce(Certificate.account_id, "") == (account_id or ""),
                Certificate.fingerprint_sha256 == fingerprint,
            )
        )

    async def add_unless_present(self, cert: Certificate) -> Certificate | None:
        """Insert ``cert`` (and its ``covers=`` rows) unless its owner already holds its fingerprint.

        ``INSERT .. ON CONFLICT DO NOTHING`` on the unique index: a concurrent identical upload
        waits for this one to finish and then inserts nothing, on PostgreSQL and SQLite alike,
        instead of failing (or, without the index, making a second row). Returns the stored row,
        or None when one was already there (the caller reads it). ``cert`` itself is never added
        to the session: the row is read back, so the ORM sees exactly what was written.
        """
        dialect = postgresql if self.session.bind.dialect.name == "postgresql" else sqlite
        values = {
            column.key: getattr(cert, column.key)
            for column in Certificate.__table__.columns
            if getattr(cert, column.key, None) is not None
        }
        inserted = await self.session.scalar(
            dialect.insert(Certificate).values(**values).on_conflict_do_nothing().returning(Certificate.id)
        )
        if inserted is None:
            return None
        await self.replace_names(inserted, cert.sans)
        return await self.get(inserted)

    async def pems(self, cert_ids: list[str]) -> dict[str, tuple[str, str]]:
        """(leaf PEM, chain PEM) of each id, in one query (trust judged from the material)."""
        if not cert_ids:
            return {}
        rows = await self.session.execute(
            select(Certificate.id, Certificate.certificate_pem, Certificate.chain_pem).where(Certificate.id.in_(cert_ids))
        )
        return {row.id: (row.certificate_pem, row.chain_pem or "") for row in rows}

    async def judged_elsewhere(self, store_identity: str, limit: int) -> list:
        """Up to ``limit`` rows whose chain verdict was judged against other roots (or none).

        Self-signed rows are never trusted, whatever the roots, and are left alone.
        """
        stmt = (
            select(Certificate.id, Certificate.fingerprint_sha256, Certificate.sans, Certificate.certificate_pem,
                   Certificate.chain_pem)
            .where(Certificate.self_signed.is_(False))
            .where(or_(Certificate.trust_store.is_(None), Certificate.trust_store != store_identity))
            .order_by(Certificate.id)
            .limit(limit)
        )
        return list(await self.session.execute(stmt))

    async def set_verdicts(self, verdicts: dict[str, ChainVerdict], store_identity: str) -> None:
        """Store chain verdicts judged against ``store_identity``; ``updated_at`` stays (no one
        changed the certificate)."""
        if not verdicts:
            return
        stmt = (
            update(Certificate.__table__)
            .where(Certificate.__table__.c.id == bindparam("row_id"))
            .values(trusted=bindparam("v_trusted"), trust_reason=bindparam("v_reason"),
                    trust_detail=bindparam("v_detail"), trust_store=store_identity,
                    updated_at=Certificate.__table__.c.updated_at)
        )
        await self.session.execute(stmt, [
            {"row_id": cid, "v_trusted": v.trusted, "v_reason": v.reason, "v_detail": v.detail}
            for cid, v in verdicts.items()
        ])

    async def domain_for_picker(self, domain_name: str):
        """A domain's account and its server's software and host name (None when certpost does
        not know the domain): the picker offers what a bind to that domain would accept."""
        return (await self.session.execute(
            select(Domain.account_id, Server.software, Server.hostname)
            .join(Server, Server.id == Domain.server_id).where(Domain.name == domain_name)
        )).first()

    async def lock(self, cert: Certificate) -> bool:
        """Take the certificate's row for this transaction and reload it; False if it is gone.

        A no-op ``UPDATE`` rather than ``SELECT .. FOR UPDATE``: it row-locks on PostgreSQL and
        takes SQLite's write lock, so a bind and a replace of the same certificate run one after
        the other on both, each judging what the other committed (coverage, usages).
        Pending changes to the row are flushed first, so the reload keeps them (an ACME store
        sets the renewal state, then binds).
        """
        await self.session.flush()
        result = await self.session.execute(
            update(Certificate)
            .where(Certificate.id == cert.id)
            .values(revision=Certificate.revision, updated_at=Certificate.updated_at, version=Certificate.version)
            .execution_options(synchronize_session=False)
        )
        if not result.rowcount:
            return False
        await self.session.refresh(cert)
        return True

    async def replace_names(self, cert_id: str, sans: list[str]) -> None:
        """The ``covers=`` index rows of replaced material (the relationship is never loaded)."""
        await self.session.execute(delete(CertificateName).where(CertificateName.certificate_id == cert_id))
        names = list(dict.fromkeys(sans))
        if names:
            await self.session.execute(
                insert(CertificateName), [{"certificate_id": cert_id, "name": n} for n in names]
            )

    async def delete(self, cert: Certificate) -> None:
        await self.session.delete(cert)
        await self.session.flush()

    async def list(self, flt: CertificateFilter, page: PageRequest) -> Window:
        """One page of rows with the columns the API shows (no PEM, no sealed key)."""
        return await fetch(self.session, self.statement(flt), CERTIFICATE_ORDERS[flt.sort], page)

    def statement(self, flt: CertificateFilter) -> Any:
        """The list's rows for ``flt``, not yet ordered or paged."""
        owner = _owner_column(bool(flt.covers))
        stmt = select(*LISTED_COLUMNS).where(flt.visible(owner))
        if flt.bindable_for_account is not None:
            stmt = stmt.where(or_(owner.is_(None), owner == flt.bindable_for_account))
        for candidates in flt.covers:  # one indexed IN per host name: the certificate covers all
            covering = select(CertificateName.certificate_id).where(CertificateName.name.in_(candidates))
            stmt = stmt.where(Certificate.id.in_(covering))
        if flt.expires_before is not None:
            stmt = stmt.where(Certificate.not_after < flt.expires_before)
        if flt.valid_at is not None:
            # notAfter is inclusive and a whole second (kit.time.expired)
            stmt = stmt.where(Certificate.not_before <= flt.valid_at,
                              Certificate.not_after >= flt.valid_at.replace(microsecond=0))
        return stmt

    async def usages(self, cert_ids: list[str]) -> dict[str, list[Usage]]:
        """Where each certificate is in use, in two queries whatever the number of ids."""
        out: dict[str, list[Usage]] = {cid: [] for cid in cert_ids}
        if not cert_ids:
            return out
        rows = await self.session.execute(
            select(Binding.certificate_id, Binding.service, Domain.name, Domain.server_id)
            .join(Domain, Domain.id == Binding.domain_id)
            .where(Binding.certificate_id.in_(cert_ids))
            .order_by(Domain.name, Binding.service)
        )
        for cert_id, service, domain, server_id in rows:
            out[cert_id].append(Usage("domain", service, f"{service}.{domain}", domain, server_id))
        servers = await self.session.execute(
            select(Server.id, Server.hostname, Server.mail_certificate_id, Server.webmail_certificate_id,
                   Server.default_certificate_id).where(
                or_(Server.mail_certificate_id.in_(cert_ids), Server.webmail_certificate_id.in_(cert_ids),
                    Server.default_certificate_id.in_(cert_ids))
            )
        )
        for server in servers:
            if server.mail_certificate_id in out:
                out[server.mail_certificate_id].append(
                    Usage("server-mail", "mail", server.hostname, None, server.id)
                )
            if server.webmail_certificate_id in out:
                # The webmail default is presented for the host name: a replace must keep covering it.
                out[server.webmail_certificate_id].append(
                    Usage("server-webmail", "webmail", server.hostname, None, server.id)
                )
            if server.default_certificate_id in out:
                out[server.default_certificate_id].append(
                    Usage("server-default", "webmail", "", None, server.id)
                )
        return out
