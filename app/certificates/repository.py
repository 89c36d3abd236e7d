"""Queries for certificates, including where each one is in use."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.certificates.models import Certificate, CertificateName
from app.domains.models import Binding, Domain
from app.kit.time import as_utc
from app.servers.models import Server


@dataclass(frozen=True)
class Usage:
    """One place a certificate is in use."""

    kind: str  # "domain" | "server-mail" | "server-default"
    service: str  # "webmail" | "mail"
    hostname: str  # the name the certificate must cover there ("" for server-default)
    domain: str | None = None
    server_id: str | None = None


@dataclass(frozen=True)
class CertificateFilter:
    account_id: str | None = None  # None: every account (admins)
    restrict_to_account: bool = False
    covers: list[str] | None = None  # candidate SANs (kit.coverage.candidate_sans)
    expires_before: datetime | None = None


# What the certificate list shows, so a page does not carry PEM and sealed keys it never uses.
LISTED_COLUMNS = tuple(
    getattr(Certificate, c) for c in (
        "id", "name", "account_id", "subject", "issuer", "serial", "sans", "not_before", "not_after",
        "fingerprint_sha256", "key_type", "key_bits", "self_signed", "trusted", "chain_length", "source",
        "revision", "renewal_at", "renewal_status", "renewal_error", "created_at", "updated_at",
    )
)
# What a TLS status or a binding shows of a certificate (and rules.CertFacts needs).
PRESENTED_COLUMNS = tuple(
    getattr(Certificate, c) for c in (
        "id", "fingerprint_sha256", "subject", "issuer", "sans", "not_before", "not_after", "self_signed", "trusted",
    )
)

_CURSOR_ID = re.compile(r"[0-9a-f-]{1,36}")


def encode_cursor(row: Certificate) -> str:
    return base64.urlsafe_b64encode(f"{row.created_at.isoformat()}|{row.id}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, str] | None:
    try:
        stamp, _, row_id = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        # A crafted cursor must not reach the query: a time that overflows once in UTC, or an id
        # that is not one (a NUL would make PostgreSQL fail the request).
        if not _CURSOR_ID.fullmatch(row_id):
            return None
        return as_utc(datetime.fromisoformat(stamp)), row_id
    except (ValueError, UnicodeDecodeError, OverflowError):
        return None


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
            .values(revision=Certificate.revision, updated_at=Certificate.updated_at)
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

    async def list(self, flt: CertificateFilter, limit: int, after: tuple[datetime, str] | None) -> list:
        """One page of rows with the columns the API shows (no PEM, no sealed key)."""
        stmt = select(*LISTED_COLUMNS)
        if flt.restrict_to_account:
            stmt = stmt.where(Certificate.account_id == flt.account_id)
        if flt.covers:
            covering = select(CertificateName.certificate_id).where(CertificateName.name.in_(flt.covers))
            stmt = stmt.where(Certificate.id.in_(covering))
        if flt.expires_before is not None:
            stmt = stmt.where(Certificate.not_after < flt.expires_before)
        if after is not None:
            stamp, row_id = after
            stmt = stmt.where(
                or_(Certificate.created_at > stamp, and_(Certificate.created_at == stamp, Certificate.id > row_id))
            )
        stmt = stmt.order_by(Certificate.created_at, Certificate.id).limit(limit)
        return list(await self.session.execute(stmt))

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
            select(Server.id, Server.hostname, Server.mail_certificate_id, Server.default_certificate_id).where(
                or_(Server.mail_certificate_id.in_(cert_ids), Server.default_certificate_id.in_(cert_ids))
            )
        )
        for server in servers:
            if server.mail_certificate_id in out:
                out[server.mail_certificate_id].append(
                    Usage("server-mail", "mail", server.hostname, None, server.id)
                )
            if server.default_certificate_id in out:
                out[server.default_certificate_id].append(
                    Usage("server-default", "webmail", "", None, server.id)
                )
        return out
