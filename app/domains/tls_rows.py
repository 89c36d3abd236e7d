"""Queries of the TLS status list: many domains' TLS facts in keyset pages, filtered in SQL.

A page is two statements whatever its size: the domains, each with the ids of the two
certificates it presents and whether each is bound (kept on the domain by
app/domains/tls_upkeep.py: its binding's, else the server's default, as
``DomainRepository.facts`` decides for one domain), then those certificates, each read and
decoded once however many rows present it (none when an earlier page decoded them at the
row version the page's rows carry); plus one statement for the servers on the page (and one
for its drifted names, app/domains/tls_list.py). Nothing is read per row.

Sorting by expiry and filtering by client warning or reason run on what each domain keeps of
its presented certificates (``domains.tls_soonest``, ``tls_latest_start``, ``tls_flags``;
app/domains/tls_summary.py, kept by app/domains/tls_upkeep.py), through indexes that start
with the server or the account: the expiry order is an index order, and a filter reads the
few domains with something to warn about, not every domain of the server. What depends on
the moment is decided against ``now`` here, exactly as the rules decide it:

- ``certificate_expired`` for some service: ``tls_soonest`` before the current second
  (``kit.time.expired`` compares whole seconds);
- ``certificate_not_yet_valid``: only where ``tls_latest_start`` is after ``now``, and there
  by the presented certificates themselves (``reason_predicate``: the other one may be expired);
- a client warning for some service: a lasting reason (``tls_flags``), or expired, or a
  ``notBefore`` after ``now`` (then that service is expired or not yet valid: a warning either way).

The value of each row is still computed by the pure rules from the certificates; the tests
check on every reason that the rows a filter returns are exactly the rows whose computed reasons
contain it, and that the kept facts equal ``summarize`` after every write that can change them.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, NamedTuple

from sqlalchemy import (
    Integer,
    String,
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
    union,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.functions import FunctionElement

from app.certificates.models import Certificate, CertificateName
from app.certificates.repository import PRESENTED_COLUMNS
from app.deployments.models import Deployment
from app.domains.models import SERVICES, Domain
from app.domains.repository import CertificateFacts, ServerFacts
from app.domains.tls_summary import FLAGS
from app.drift.models import ServedObservation
from app.kit.bounded import keep
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
    drifted: bool = True  # whether any of its names drifted (False: a page need not look them up)


@functools.cache
def _parts() -> SimpleNamespace:
    """The aliases and the statements, built on first use (aliasing every certificate column
    costs more than a page). Each row is read from ``domains`` alone: what each service
    presents (its binding's certificate, else the server's default for it, as
    ``DomainRepository.facts`` decides for the single domain) and whether it is bound are kept
    on the domain (``tls_upkeep``), so a page is one index range, no lookup per row."""
    certs = {"webmail": aliased(Certificate), "mail": aliased(Certificate)}
    # The rows themselves: ids only, each certificate read once by ``certificates`` (decoding
    # its names and times per row was a quarter of an export, docs/performance.md section 11),
    # or taken from the pages' ``CertificateCache`` while its version is the one a page's rows
    # carry (``rows``: two primary-key lookups a row, in the database's C code; the export,
    # which keeps no certificate between batches, reads ``ids``).
    ids = select(Domain.name, Domain.server_id, Domain.account_id, Domain.tls_webmail_bound, Domain.tls_mail_bound,
                 Domain.tls_webmail_certificate_id, Domain.tls_mail_certificate_id, Domain.tls_soonest)
    rows = ids.add_columns(*_versions(Domain.tls_webmail_certificate_id, Domain.tls_mail_certificate_id))
    # Joined to the presented certificates, whose columns ``reason_predicate`` (not-yet-valid)
    # and the metrics' counts over every domain read.
    base = (
        ids.join(certs["webmail"], certs["webmail"].id == Domain.tls_webmail_certificate_id)
        .join(certs["mail"], certs["mail"].id == Domain.tls_mail_certificate_id)
    )
    certificates = (select(*(getattr(Certificate, c) for c in ROW_CERTIFICATE_COLUMNS), Certificate.version)
                    .where(Certificate.id.in_(bindparam("ids", expanding=True))))
    return SimpleNamespace(certs=certs, base=base, ids=ids, rows=rows, certificates=certificates)


def _versions(*certificate_ids) -> list:
    """The row version of each certificate, as a correlated lookup of its primary key: a
    planner cannot turn it into a join that reads every certificate (PostgreSQL hash-joined a
    whole table for a page's hundred rows when the page joined it instead). NULL for a
    certificate that is gone (``_facts`` leaves its rows out)."""
    return [select(Certificate.version).where(Certificate.id == column).scalar_subquery()
            for column in certificate_ids]


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
    """SQL true exactly when ``reason`` is in ``rules.client_warning_reasons`` for the service,
    on the presented certificate's own columns (``_parts().base``)."""
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


class Arm(NamedTuple):
    """One index-led way to the domains a filter keeps (``_arms``): a condition on the domain's
    kept facts (None: none but the name filters), and whether it also needs the presented
    certificates' columns."""

    where: Any
    joined: bool = False


def _arms(f: TlsFilter, now: datetime) -> list[Arm] | None:
    """The filter's warning and reason conditions as arms whose union is exactly what they
    keep, each led by an index on the kept facts (a few rows however many domains the server
    has); None without either. ``warning=false`` is one arm over the server in name order:
    what it keeps is what a server mostly holds, so the name order finds a page quickly."""
    if f.reason is None and f.warning is None:
        return None
    second = now.replace(microsecond=0)
    expired = Domain.tls_soonest < second
    starts_later = Domain.tls_latest_start > now
    lasting = Domain.tls_flags > 0
    arms: list[Arm] | None = None
    if f.reason is not None:
        if f.reason in FLAGS:
            # The flag values that have the reason's bit, as a list (a bitwise test left
            # PostgreSQL's planner guessing; at 100,000 domains it read them all), and the range
            # (without it SQLite's planner reads the server in name order).
            bit = FLAGS[f.reason]
            arms = [Arm(and_(lasting, Domain.tls_flags.in_([v for v in range(1, 2 * max(FLAGS.values())) if v & bit])))]
        elif f.reason == "certificate_expired":
            arms = [Arm(expired)]
        elif f.reason == "certificate_not_yet_valid":
            reason = f.reason
            arms = [Arm(and_(starts_later, or_(*(reason_predicate(reason, s, now) for s in SERVICES))), True)]
        else:
            raise ValueError(f.reason)
    if f.warning is True:
        if arms is None:
            arms = [Arm(lasting), Arm(expired), Arm(starts_later)]
        else:
            arms = [Arm(and_(arm.where, or_(lasting, expired, starts_later)), arm.joined) for arm in arms]
    elif f.warning is False:
        # Most domains: read in the page's order from (server_id, tls_flags, name), leaving out
        # the few expired or not valid yet, picked by their own indexes (a range on either time
        # column would otherwise lead SQLite's planner to read and sort every quiet domain).
        other = aliased(Domain)
        timed = [_where(select(other.name), f, other).where(when)
                 for when in (other.tls_soonest < second, other.tls_latest_start > now)]
        quiet = and_(Domain.tls_flags == 0, *(Domain.name.not_in(t) for t in timed))
        arms = [Arm(and_(arm.where, quiet), arm.joined) for arm in arms] if arms is not None else [Arm(quiet)]
    return arms


def _select(arm: Arm, *columns) -> Any:
    """``columns`` of the domains, with the presented certificates joined when the arm needs them."""
    return _parts().base.with_only_columns(*columns) if arm.joined else select(*columns).select_from(Domain)


def _where(stmt, f: TlsFilter, domain: Any = Domain):
    """The filters that are not about warnings: the caller's visibility, server, name (on
    ``domain``: the table, or an alias of it in a subquery)."""
    if f.nothing:
        return stmt.where(false())
    if f.server_id is not None:
        stmt = stmt.where(domain.server_id == f.server_id)
    if f.account_id is not None:
        stmt = stmt.where(domain.account_id == f.account_id)
    if f.prefix:
        stmt = stmt.where(domain.name.startswith(f.prefix, autoescape=True))
        bounds = _prefix_bounds(domain.name, f.prefix)
        if bounds is not None:
            stmt = stmt.where(bounds)
    if f.q:
        stmt = stmt.where(domain.name.contains(f.q, autoescape=True))
    return stmt


@dataclass(frozen=True)
class SortOrder:
    """``name`` (unique) or ``not_after`` (the earlier of the two presented, as each domain
    keeps it in ``tls_soonest``, then name)."""

    key: str  # "name" | "not_after"
    descending: bool

    @classmethod
    def parse(cls, sort: str) -> SortOrder:
        return cls(sort.lstrip("-"), sort.startswith("-"))

    def columns(self) -> list:
        return [Domain.tls_soonest, Domain.name] if self.key == "not_after" else [Domain.name]

    def order_by(self, columns=None) -> list:
        """ORDER BY terms in this order's direction, of its own columns or of ``columns`` (the
        same keys as a subquery names them)."""
        return [c.desc() if self.descending else c.asc() for c in (self.columns() if columns is None else columns)]

    def after(self, key: tuple) -> Any:
        """Rows strictly after ``key`` in this order (keyset). Written as a bound on the first
        column and the tie broken by the second, so both databases start the index range
        there instead of filtering the rows before it."""
        if self.key == "name":
            return Domain.name < key[0] if self.descending else Domain.name > key[0]
        soonest, name = key
        if self.descending:
            return and_(Domain.tls_soonest <= soonest, or_(Domain.tls_soonest < soonest, Domain.name < name))
        return and_(Domain.tls_soonest >= soonest, or_(Domain.tls_soonest > soonest, Domain.name > name))

    def key_of(self, row) -> tuple:
        """The key of a row as the rows statement returns it (name first, ``tls_soonest`` at 7:
        the expiry sort's key as stored)."""
        return (row[7], row[0]) if self.key == "not_after" else (row[0],)


class TlsPage(NamedTuple):
    rows: list[DomainTlsFacts]
    after: tuple | None  # the key the next page starts after; None: this was the last


@functools.cache
def _plain_statement(server: bool, account: bool, order: SortOrder, after: bool, versions: bool = True):
    """The rows of a page filtered by server and account alone, in ``order``, after the key
    bound as ``after_0`` (and ``after_1``), ``limit`` of them: built once per shape. Without
    ``versions``, the rows lack their certificates' versions (two lookups a row fewer)."""
    stmt = _parts().rows if versions else _parts().ids
    if server:
        stmt = stmt.where(Domain.server_id == bindparam("server_id"))
    if account:
        stmt = stmt.where(Domain.account_id == bindparam("account_id"))
    if after:
        columns = order.columns()
        stmt = stmt.where(order.after(tuple(bindparam(f"after_{i}", type_=c.type) for i, c in enumerate(columns))))
    return stmt.order_by(*order.order_by()).limit(bindparam("limit", type_=Integer()))


@functools.cache
def _count_statement(server: bool, account: bool):
    """``count`` of the domains of a server or account (bound), read from their indexes alone."""
    stmt = select(func.count()).select_from(Domain)
    if server:
        stmt = stmt.where(Domain.server_id == bindparam("server_id"))
    if account:
        stmt = stmt.where(Domain.account_id == bindparam("account_id"))
    return stmt


class prefix_range(FunctionElement):
    """``column`` within the code-point range of the strings that start with ``low`` (``high``:
    ``low`` with its last character's successor): what ``LIKE 'low%'`` keeps, as an index range.
    On SQLite the column's BINARY collation compares code points; on PostgreSQL the pattern
    operators ``~>=~`` / ``~<~`` do whatever the database's collation (a glibc or ICU collation
    may ignore punctuation, and then a plain range would leave out names that match), read from
    the ``text_pattern_ops`` index of migration 0021. A bound, never the whole condition: the
    ``LIKE`` stays beside it. Untyped: SQLite would compare a boolean-typed one to 1, which no
    index serves."""

    inherit_cache = True
    name = "prefix_range"


@compiles(prefix_range)
def _prefix_range(element, compiler, **kw):
    column, low, high = (compiler.process(c, **kw) for c in element.clauses)
    return f"({column} >= {low} AND {column} < {high})"


@compiles(prefix_range, "postgresql")
def _prefix_range_pg(element, compiler, **kw):
    column, low, high = (compiler.process(c, **kw) for c in element.clauses)
    return f"({column} ~>=~ {low} AND {column} ~<~ {high})"


def _prefix_bounds(column, prefix: str) -> Any:
    """``prefix_range`` of ``prefix``; None when its last character has no successor."""
    last = ord(prefix[-1])
    if last >= 0x10FFFF:
        return None
    return prefix_range(column, literal(prefix, String()), literal(prefix[:-1] + chr(last + 1), String()))


@functools.cache
def _servers_statement():
    """Built once: aliasing a certificate's columns costs more than running the statement."""
    cert = aliased(Certificate)
    return (
        select(Server.id, Server.hostname, Server.software, Server.agent_url, Server.desired_generation,
               Server.applied_generation, Server.mail_certificate_id, Server.webmail_default_id,
               Server.mail_certificate_count, Deployment.failed_names,
               *(getattr(cert, c.key) for c in PRESENTED_COLUMNS), Server.tls_front,
               exists().where(ServedObservation.server_id == Server.id, ServedObservation.drifted.is_(True)))
        .join(cert, cert.id == Server.mail_certificate_id)
        .outerjoin(Deployment, and_(Deployment.server_id == Server.id,
                                    Deployment.generation == Server.applied_generation))
        .where(Server.id.in_(bindparam("ids", expanding=True)))
    )


class CertificateCache:
    """Decoded ``RowCertificate``s of recent pages by id, each with the row ``version`` it was
    read at (app/versioning.py: every UPDATE of a certificate raises it, from the ORM or a Core
    statement: a replace of the material, a new trust verdict). A page's rows carry the
    current version of each certificate they present, so an entry is used only while it is
    still the row's; ids are UUIDs, never reused. Bounded: the oldest entries go first."""

    def __init__(self, size: int = 10_000):
        self.size = size
        self._entries: dict[str, list] = {}  # id -> [version, RowCertificate, its JSON text or None]

    def get(self, cert_id: str, version: int | None) -> RowCertificate | None:
        found = self._entries.get(cert_id)
        return found[1] if found is not None and found[0] == version else None

    def put(self, cert_id: str, version: int, cert: RowCertificate) -> None:
        keep(self._entries, cert_id, [version, cert, None], self.size)

    def text(self, cert: RowCertificate):
        """What ``tls_lines`` wrote of this very certificate (the object the cache holds), or None."""
        found = self._entries.get(cert.id)
        return found[2] if found is not None and found[1] is cert else None

    def keep_text(self, cert: RowCertificate, text) -> None:
        found = self._entries.get(cert.id)
        if found is not None and found[1] is cert:
            found[2] = text

    def clear(self) -> None:
        self._entries.clear()


def _padded(values: list) -> list:
    """``values`` padded to a power of two (repeating the last): an expanding ``IN`` is a new
    statement for each length, which PostgreSQL would prepare again and again (asyncpg's
    statement cache); a dozen lengths cover every page and batch."""
    return values + [values[-1]] * ((1 << (len(values) - 1).bit_length()) - len(values))


async def _facts(connection, rows: list, cache: CertificateCache | None = None) -> list[DomainTlsFacts]:
    """The rows' facts, each distinct certificate read and decoded once (one statement), or
    none read when ``cache`` holds every one at the version the rows carry (``r[8]``, ``r[9]``).
    A row whose certificate is gone by the second statement (rebound and deleted in between),
    or presents none (a domain written around the application and never summarised), is left
    out."""
    certs: dict[str, RowCertificate] = {}
    missing: set[str] = set()
    for row in rows:
        pairs = zip(row[5:7], row[8:10] if cache is not None else (None, None), strict=True)
        for cert_id, version in pairs:
            if cert_id is None or cert_id in certs:
                continue
            found = cache.get(cert_id, version) if cache is not None else None
            if found is None:
                missing.add(cert_id)
            else:
                certs[cert_id] = found
    if missing:
        for row in await connection.execute(_parts().certificates, {"ids": _padded(sorted(missing))}):
            cert = certs[row[0]] = RowCertificate.of(row[:-1])
            if cache is not None:
                cache.put(row[0], row[-1], cert)
    return [DomainTlsFacts(r[0], r[1], r[2], {"webmail": certs[r[5]], "mail": certs[r[6]]},
                           {"webmail": bool(r[3]), "mail": bool(r[4])})
            for r in rows if r[5] in certs and r[6] in certs]


class DomainTlsRepository:
    """The list's statements on ``db``: anything with ``AsyncConnection``'s ``execute`` whose
    result iterates into rows and has ``scalar()`` and ``first()``: the page's read-only
    ``app.reads.Reads`` (one trip per statement, no transaction), the export's session
    connection, or a session (the tests, the metrics)."""

    def __init__(self, db: AsyncSession | AsyncConnection | Any):
        self.db = db

    async def page(self, f: TlsFilter, order: SortOrder, after: tuple | None, limit: int,
                   now: datetime, cache: CertificateCache | None = None) -> TlsPage:
        """Up to ``limit`` rows after ``after`` in ``order``, and the key to continue after
        when there are more: the key of the last row read, so a row ``_facts`` leaves out
        does not end the paging early.

        Without a filter but the server or account, one statement yields the page from an
        index in the page's order (server or account, then name, or the kept expiry and name)
        and stops there. A name filter or a single reason is one such range in the page's
        order. Several arms (``warning``, ``_arms``) each read their first ``limit`` keys after
        ``after`` from their own index, their union sorted and cut in SQL, and the rows of those
        keys joined by name, in the same statement. Either way the certificates the rows
        present are read by one more statement, each once (``_facts``), unless ``cache`` holds
        them all at their current version.
        """
        rows = await self._rows(f, order, after, limit + 1, now)
        more = len(rows) > limit
        return TlsPage(await _facts(self.db, rows[:limit], cache), order.key_of(rows[limit - 1]) if more else None)

    async def _rows(self, f: TlsFilter, order: SortOrder, after: tuple | None, limit: int, now: datetime,
                    versions: bool = True) -> list:
        """``page``'s rows as the first statement returns them (ids, before ``_facts``); without
        ``versions`` they lack their certificates' versions (``_facts`` without a cache)."""
        connection = self.db
        if f.nothing:
            return []
        arms = _arms(f, now)
        if arms is None and not (f.q or f.prefix):
            # Built once per shape, the values bound (building and keying the statement cost
            # more than SQLite running it).
            stmt = _plain_statement(f.server_id is not None, f.account_id is not None, order, after is not None,
                                    versions)
            params = {"server_id": f.server_id, "account_id": f.account_id, "limit": limit}
            if after is not None:
                params.update(zip(("after_0", "after_1"), after, strict=False))
            return list(await connection.execute(stmt, params))
        arms = arms or [Arm(None)]
        # One arm reads whole rows; several read their keys only (from the index alone), and
        # the rows of the page's keys are then joined by name.
        columns = _parts().ids.selected_columns if len(arms) == 1 else order.columns()
        picks = []
        for arm in arms:
            stmt = _where(_select(arm, *columns), f)
            if arm.where is not None:
                stmt = stmt.where(arm.where)
            if after is not None:
                stmt = stmt.where(order.after(after))
            picks.append(stmt.order_by(*order.order_by()).limit(limit))
        presented = (Domain.tls_webmail_certificate_id, Domain.tls_mail_certificate_id)
        if len(picks) > 1:
            # Merged in SQL, in the database's own collation (which the keyset compares in).
            both = union(*(select(*pick.subquery().c) for pick in picks)).subquery()
            chosen = (select(*both.c).order_by(*order.order_by([both.c[c.key] for c in order.columns()]))
                      .limit(limit).subquery())
            stmt = (_parts().ids.join(chosen, chosen.c.name == Domain.name)
                    .order_by(*order.order_by([chosen.c[c.key] for c in order.columns()])))
        else:
            stmt = picks[0]
        if versions:
            stmt = stmt.add_columns(*_versions(*presented))
        return list(await connection.execute(stmt))

    async def count(self, f: TlsFilter, now: datetime) -> int:
        """How many domains match, over all pages: without a warning or reason filter from
        ``domains`` and its index alone; with one, the union of the filter's arms (each a few
        rows from its index, but for ``warning=false``). A domain written around the
        application and never summarised is counted, though the pages leave it out."""
        if f.nothing:
            return 0
        arms = _arms(f, now)
        if arms is None and not (f.q or f.prefix):
            stmt = _count_statement(f.server_id is not None, f.account_id is not None)
            return int((await self.db.execute(stmt, {"server_id": f.server_id, "account_id": f.account_id})).scalar()
                       or 0)
        if arms is None:
            inner = _where(select(Domain.id), f).subquery()
        else:
            parts = [_where(_select(arm, Domain.id), f).where(arm.where) for arm in arms]
            inner = (parts[0] if len(parts) == 1 else union(*parts)).subquery()
        return int((await self.db.execute(select(func.count()).select_from(inner))).scalar() or 0)

    async def batches(self, f: TlsFilter, now: datetime, size: int) -> AsyncIterator[list[DomainTlsFacts]]:
        """Every matching row in name order, ``size`` at a time (keyset: each batch one
        statement after the last name of the previous, plus its certificates; memory bounded by
        ``size``)."""
        order = SortOrder("name", False)
        after = None
        connection = self.db
        while True:
            rows = await self._rows(f, order, after, size, now, versions=False)
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
        rows = await self.db.execute(_servers_statement(), {"ids": sorted(ids)})
        return {
            row[0]: ServerTlsFacts(ServerFacts(*row[:9], row[-2]), CertificateFacts(*row[10:-2]), list(row[9] or []),
                                   bool(row[-1]))
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
        row = (await self.db.execute(stmt)).first()
        total = int(row[0])
        values = iter(row[1:])
        return {key: total if key[1] == "all" else int(next(values)) for key in keys}

    async def server_exists(self, server_id: str) -> bool:
        return (await self.db.execute(select(Server.id).where(Server.id == server_id))).scalar() is not None

    async def hosts_account(self, server_id: str, account_id: str) -> bool:
        """Whether the server hosts a domain of the account (what a customer may know of a server)."""
        stmt = select(Domain.id).where(Domain.server_id == server_id, Domain.account_id == account_id).limit(1)
        return (await self.db.execute(stmt)).scalar() is not None

