"""Queries of the TLS status list: many domains' TLS facts in keyset pages, filtered in SQL.

A page is two statements whatever its size: each domain with its two bindings and the ids of
the two certificates it presents (its binding's, else the server's default; the same joins as
``DomainRepository.facts``), then those certificates, each read and decoded once however many
rows present it; plus one statement for the servers on the page (and one for its drifted
names, app/domains/tls_list.py). Nothing is read per row.

Filters by client warning and reason run in SQL, on the *inputs* of
``rules.client_warning_reasons`` (``trusted``, ``self_signed``, the validity period, and whether
the certificate's names cover the host name, from the indexed ``certificate_names`` rows).
Computing warnings in Python and filtering afterwards would make a page of a rare warning
read every domain of the server (docs/performance.md, section 11). The value of each row is
still computed by the pure rules; ``reason_predicate`` is their translation to SQL, one line per
reason, and the tests check on every reason that the rows a filter returns are exactly the rows
whose computed reasons contain it.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, NamedTuple

from sqlalchemy import (
    and_,
    bindparam,
    case,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.certificates.models import Certificate, CertificateName
from app.certificates.repository import PRESENTED_COLUMNS
from app.db import UTCDateTime
from app.deployments.models import Deployment
from app.domains.models import SERVICES, Binding, Domain
from app.domains.repository import CertificateFacts, ServerFacts
from app.servers.models import Server

ROW_CERTIFICATE_COLUMNS = ("id", "fingerprint_sha256", "sans", "not_before", "not_after", "self_signed", "trusted")


class RowCertificate(NamedTuple):
    """What a list row shows of a presented certificate and the rules read (``rules.CertFacts``),
    read once per page or export batch however many rows present it (a server default is
    presented by many), with its names as a set for ``kit.coverage.covers_in``."""

    id: str
    fingerprint_sha256: str
    sans: list[str]
    not_before: datetime
    not_after: datetime
    self_signed: bool
    trusted: bool
    names: frozenset[str]

    @classmethod
    def of(cls, row) -> RowCertificate:
        return cls(*row, frozenset(row[2]))


@dataclass(frozen=True)
class TlsFilter:
    """What a caller asked for, with visibility already applied to ``account_id``."""

    account_id: str | None = None
    server_id: str | None = None
    warning: bool | None = None
    reason: str | None = None
    prefix: str | None = None
    q: str | None = None
    nothing: bool = False  # a customer naming another account: no rows (nothing is learnt)


class DomainTlsFacts(NamedTuple):
    """One domain's inputs to the rules: what each service presents and whether bound (a tuple:
    built 10,000 times per export)."""

    name: str
    server_id: str
    account_id: str
    presented: dict[str, RowCertificate]
    bound: dict[str, bool]

    @property
    def soonest(self) -> datetime:
        """The earlier ``not_after`` of the two presented (what ``sort=not_after`` orders by)."""
        webmail, mail = self.presented["webmail"].not_after, self.presented["mail"].not_after
        return min(webmail, mail)


@dataclass(frozen=True)
class ServerTlsFacts:
    server: ServerFacts
    certificate: CertificateFacts  # the server-wide mail certificate
    failed_names: list[dict]


@functools.cache
def _parts() -> SimpleNamespace:
    """The aliases and the base statement, built on first use (aliasing every certificate
    column costs more than a page)."""
    webmail, mail = aliased(Binding), aliased(Binding)
    certs = {"webmail": aliased(Certificate), "mail": aliased(Certificate)}
    soonest = type_coerce(
        case((certs["webmail"].not_after <= certs["mail"].not_after, certs["webmail"].not_after),
             else_=certs["mail"].not_after),
        UTCDateTime(),
    ).label("soonest")
    base = (
        select(Domain.name, Domain.server_id, Domain.account_id, webmail.id, mail.id,
               *(getattr(certs[s], c) for s in SERVICES for c in ROW_CERTIFICATE_COLUMNS), soonest)
        .select_from(Domain)
        .join(Server, Server.id == Domain.server_id)
        .outerjoin(webmail, and_(webmail.domain_id == Domain.id, webmail.service == "webmail"))
        .outerjoin(mail, and_(mail.domain_id == Domain.id, mail.service == "mail"))
        .join(certs["webmail"],
              certs["webmail"].id == func.coalesce(webmail.certificate_id, Server.default_certificate_id))
        .join(certs["mail"], certs["mail"].id == func.coalesce(mail.certificate_id, Server.mail_certificate_id))
    )
    # The rows themselves: ids only, each certificate read once by ``certificates`` (decoding
    # its names and times per row was a quarter of an export, docs/performance.md section 11).
    rows = (
        select(Domain.name, Domain.server_id, Domain.account_id, webmail.id, mail.id,
               func.coalesce(webmail.certificate_id, Server.default_certificate_id),
               func.coalesce(mail.certificate_id, Server.mail_certificate_id))
        .select_from(Domain)
        .join(Server, Server.id == Domain.server_id)
        .outerjoin(webmail, and_(webmail.domain_id == Domain.id, webmail.service == "webmail"))
        .outerjoin(mail, and_(mail.domain_id == Domain.id, mail.service == "mail"))
    )
    certificates = (select(*(getattr(Certificate, c) for c in ROW_CERTIFICATE_COLUMNS))
                    .where(Certificate.id.in_(bindparam("ids", expanding=True))))
    return SimpleNamespace(certs=certs, soonest=soonest, base=base, rows=rows, certificates=certificates)


def _covered(service: str, cert) -> Any:
    """SQL for ``kit.coverage.covers(cert.sans, "<service>.<domain>")``: one of the two names
    that can cover it (``candidate_sans``: itself, and the wildcard one label up, which covers
    it because a registered domain is never a public suffix) is among the certificate's names;
    a primary-key lookup in ``certificate_names``."""
    return exists().where(
        CertificateName.certificate_id == cert.id,
        CertificateName.name.in_([literal(f"{service}.") + Domain.name, literal("*.") + Domain.name]),
    )


def reason_predicate(reason: str, service: str, now: datetime) -> Any:
    """SQL true exactly when ``reason`` is in ``rules.client_warning_reasons`` for the service."""
    cert = _parts().certs[service]
    second = now.replace(microsecond=0)  # kit.time.expired compares whole seconds
    if reason == "hostname_not_covered":
        return not_(_covered(service, cert))
    if reason == "self_signed":
        return cert.self_signed == true()
    if reason == "certificate_untrusted":
        return and_(cert.self_signed == false(), cert.trusted == false())
    if reason == "certificate_expired":
        return cert.not_after < second
    if reason == "certificate_not_yet_valid":
        return and_(cert.not_after >= second, cert.not_before > now)
    raise ValueError(reason)


REASONS = ("hostname_not_covered", "self_signed", "certificate_untrusted", "certificate_expired",
           "certificate_not_yet_valid")


def warning_predicate(service: str, now: datetime) -> Any:
    """SQL true exactly when a client of the service would warn (any reason)."""
    cert = _parts().certs[service]
    return or_(cert.trusted == false(), cert.self_signed == true(), cert.not_after < now.replace(microsecond=0),
               cert.not_before > now, not_(_covered(service, cert)))


def _where(stmt, f: TlsFilter, now: datetime):
    if f.nothing:
        return stmt.where(false())
    if f.server_id is not None:
        stmt = stmt.where(Domain.server_id == f.server_id)
    if f.account_id is not None:
        stmt = stmt.where(Domain.account_id == f.account_id)
    if f.prefix:
        stmt = stmt.where(Domain.name.startswith(f.prefix, autoescape=True))
    if f.q:
        stmt = stmt.where(Domain.name.contains(f.q, autoescape=True))
    if f.reason is not None:
        stmt = stmt.where(or_(*(reason_predicate(f.reason, s, now) for s in SERVICES)))
    if f.warning is not None:
        warns = or_(*(warning_predicate(s, now) for s in SERVICES))
        stmt = stmt.where(warns if f.warning else not_(warns))
    return stmt


@dataclass(frozen=True)
class SortOrder:
    """``name`` (unique) or ``not_after`` (the earlier of the two presented, then name)."""

    key: str  # "name" | "not_after"
    descending: bool

    @classmethod
    def parse(cls, sort: str) -> SortOrder:
        return cls(sort.lstrip("-"), sort.startswith("-"))

    def columns(self) -> list:
        return [_parts().soonest, Domain.name] if self.key == "not_after" else [Domain.name]

    def order_by(self) -> list:
        return [c.desc() if self.descending else c.asc() for c in self.columns()]

    def after(self, key: tuple) -> Any:
        """Rows strictly after ``key`` in this order (keyset, written out term by term)."""
        cols = self.columns()
        terms = []
        for i, column in enumerate(cols):
            beyond = column < key[i] if self.descending else column > key[i]
            terms.append(and_(*[cols[j] == key[j] for j in range(i)], beyond))
        return or_(*terms)

    def key_of(self, row: DomainTlsFacts) -> tuple:
        return (row.soonest, row.name) if self.key == "not_after" else (row.name,)


@functools.cache
def _servers_statement():
    """Built once: aliasing a certificate's columns costs more than running the statement."""
    cert = aliased(Certificate)
    return (
        select(Server.id, Server.hostname, Server.software, Server.agent_url, Server.desired_generation,
               Server.applied_generation, Server.mail_certificate_id, Server.default_certificate_id,
               Server.mail_certificate_count, Deployment.failed_names,
               *(getattr(cert, c.key) for c in PRESENTED_COLUMNS), Server.tls_front)
        .join(cert, cert.id == Server.mail_certificate_id)
        .outerjoin(Deployment, and_(Deployment.server_id == Server.id,
                                    Deployment.generation == Server.applied_generation))
        .where(Server.id.in_(bindparam("ids", expanding=True)))
    )


async def _facts(connection, rows: list) -> list[DomainTlsFacts]:
    """The rows' facts, each distinct certificate read and decoded once (one statement).

    The ids are padded to a power of two (repeating the last): an expanding ``IN`` is a new
    statement for each length, which PostgreSQL would prepare again and again (asyncpg's
    statement cache); a dozen lengths cover every page and batch. A row whose certificate is
    gone by the second statement (rebound and deleted in between) is left out, as the inner
    join of the single statement did before."""
    ids = sorted({cert_id for row in rows for cert_id in row[5:7]})
    if not ids:
        return []
    ids += [ids[-1]] * ((1 << (len(ids) - 1).bit_length()) - len(ids))
    certs = {row[0]: RowCertificate.of(row)
             for row in await connection.execute(_parts().certificates, {"ids": ids})}
    return [DomainTlsFacts(r[0], r[1], r[2], {"webmail": certs[r[5]], "mail": certs[r[6]]},
                           {"webmail": r[3] is not None, "mail": r[4] is not None})
            for r in rows if r[5] in certs and r[6] in certs]


class DomainTlsRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def page(self, f: TlsFilter, order: SortOrder, after: tuple | None, limit: int,
                   now: datetime) -> list[DomainTlsFacts]:
        """Up to ``limit`` rows after ``after`` in ``order``.

        In name order without a warning or reason filter the index on (server_id or
        account_id, name) yields the page and the statement stops there. Otherwise every
        candidate domain is examined (a filter on what certificates present, or a sort on their
        expiry, has no index to follow), so the page's names are chosen first by a narrow
        statement (only the sort key travels through the scan and the sort) and their rows read
        by a second one, by name. Either way the certificates the rows present are read by one
        more statement, each once (``_facts``).
        """
        return await _facts(await self.session.connection(), await self._rows(f, order, after, limit, now))

    async def _rows(self, f: TlsFilter, order: SortOrder, after: tuple | None, limit: int, now: datetime) -> list:
        """``page``'s rows as the first statement returns them (ids, before ``_facts``)."""
        connection = await self.session.connection()
        if order.key == "name" and f.warning is None and f.reason is None:
            # Core execution on the session's connection: no ORM row loading, plain tuples.
            stmt = _where(_parts().rows, f, now)
            if after is not None:
                stmt = stmt.where(order.after(after))
            return list(await connection.execute(stmt.order_by(*order.order_by()).limit(limit)))
        stmt = _where(_parts().base, f, now)
        if after is not None:
            stmt = stmt.where(order.after(after))
        keys = stmt.with_only_columns(Domain.name).order_by(*order.order_by()).limit(limit)
        names = list(await connection.scalars(keys))
        if not names:
            return []
        rows = {row[0]: row for row in await connection.execute(_parts().rows.where(Domain.name.in_(names)))}
        return [rows[name] for name in names if name in rows]

    async def count(self, f: TlsFilter, now: datetime) -> int:
        """How many domains match, over all pages. Without a warning or reason filter the
        joins cannot drop a domain (foreign keys: its server, and the certificates each service
        presents, exist), so only ``domains`` and its index are read."""
        if f.warning is None and f.reason is None:
            inner = _where(select(Domain.id), f, now).subquery()
        else:
            inner = _where(_parts().base, f, now).with_only_columns(Domain.id).subquery()
        return int(await self.session.scalar(select(func.count()).select_from(inner)) or 0)

    async def batches(self, f: TlsFilter, now: datetime, size: int) -> AsyncIterator[list[DomainTlsFacts]]:
        """Every matching row in name order, ``size`` at a time (keyset: each batch one
        statement after the last name of the previous, plus its certificates; memory bounded by
        ``size``)."""
        order = SortOrder("name", False)
        after = None
        connection = await self.session.connection()
        while True:
            rows = await self._rows(f, order, after, size, now)
            facts = await _facts(connection, rows)
            if facts:
                yield facts
            if len(rows) < size:
                return
            after = (rows[-1][0],)

    async def servers(self, ids: set[str]) -> dict[str, ServerTlsFacts]:
        """The servers of a page: their facts, server-wide mail certificate and the names their
        applied generation held back (one prebuilt statement, primary-key lookups)."""
        if not ids:
            return {}
        connection = await self.session.connection()
        rows = await connection.execute(_servers_statement(), {"ids": sorted(ids)})
        return {
            row[0]: ServerTlsFacts(ServerFacts(*row[:9], row[-1]), CertificateFacts(*row[10:-1]), list(row[9] or []))
            for row in rows
        }

    async def warning_counts(self, now: datetime) -> dict[tuple[str, str], int]:
        """Over every domain, how many of its service names a client would warn for, per
        (service, reason), and per (service, ``"any"``) and (service, ``"all"``): one statement
        whatever the number of domains, the same predicates as the list's filters (the
        Prometheus gauges, app/metrics)."""
        columns = [func.count().label("all")]
        keys = []
        for service in SERVICES:
            keys.append((service, "all"))
            for reason in (*REASONS, "any"):
                predicate = warning_predicate(service, now) if reason == "any" else reason_predicate(reason, service, now)
                columns.append(func.coalesce(func.sum(case((predicate, 1), else_=0)), 0))
                keys.append((service, reason))
        stmt = _parts().base.with_only_columns(*columns)
        connection = await self.session.connection()
        row = (await connection.execute(stmt)).one()
        total = int(row[0])
        values = iter(row[1:])
        return {key: total if key[1] == "all" else int(next(values)) for key in keys}

    async def server_exists(self, server_id: str) -> bool:
        return await self.session.scalar(select(Server.id).where(Server.id == server_id)) is not None

    async def hosts_account(self, server_id: str, account_id: str) -> bool:
        """Whether the server hosts a domain of the account (what a customer may know of a server)."""
        stmt = select(Domain.id).where(Domain.server_id == server_id, Domain.account_id == account_id).limit(1)
        return await self.session.scalar(stmt) is not None

