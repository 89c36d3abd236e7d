"""Queries for domains and bindings."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, case, delete, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.certificates.models import Certificate
from app.certificates.repository import PRESENTED_COLUMNS
from app.db import new_id
from app.deployments.models import Deployment
from app.domains.models import Binding, Domain
from app.drift.models import ServedObservation
from app.drift.rules import Seen
from app.paging import Order, PageRequest, Window, fetch
from app.servers.models import Server

DOMAIN_ORDER = Order("domains", (Domain.name,))  # names are unique


class BindingWrite(NamedTuple):
    outcome: str  # "created" | "changed" | "unchanged" | "gone"
    previous: str | None  # the certificate bound before ("changed")


@dataclass(frozen=True)
class ServerFacts:
    """What a domain's TLS status and bindings show of its server (no applied document)."""

    id: str
    hostname: str
    software: str
    agent_url: str | None
    desired_generation: int
    applied_generation: int
    mail_certificate_id: str
    webmail_default_id: str  # Server.webmail_default_id: what an unbound webmail name presents
    mail_certificate_count: int
    tls_front: str | None = None  # Server.tls_front: who serves the implicit-TLS mail ports


class CertificateFacts(NamedTuple):
    """What a TLS status or a binding shows of a certificate (``PRESENTED_COLUMNS``, in order)."""

    id: str
    fingerprint_sha256: str
    subject: str
    issuer: str
    sans: list[str]
    not_before: datetime
    not_after: datetime
    self_signed: bool
    trusted: bool


@dataclass(frozen=True)
class DomainFacts:
    id: str
    name: str
    account_id: str
    server: ServerFacts
    failed_names: list[dict]  # held back in the server's applied generation (rules.name_deployment)
    presented: dict[str, CertificateFacts]  # per service: its binding's certificate, else the default
    bound: dict[str, bool]  # per service: whether a binding chose the certificate
    server_certificate: CertificateFacts  # the server-wide mail certificate
    binding_rows: dict = field(default_factory=dict)  # per service: (binding id, version) or None


def _facts_statement():
    """Built once: its aliases proxy every certificate column, which costs more than running it."""
    webmail, mail = aliased(Binding), aliased(Binding)
    presented = [aliased(Certificate) for _ in range(3)]  # webmail, mail, the server-wide mail
    return (
        select(Domain.id, Domain.name, Domain.account_id, Server.id, Server.hostname, Server.software,
               Server.agent_url, Server.desired_generation, Server.applied_generation,
               Server.mail_certificate_id, Server.webmail_default_id, Server.mail_certificate_count,
               Deployment.failed_names, webmail.id, mail.id,
               *(getattr(cert, c.key) for cert in presented for c in PRESENTED_COLUMNS),
               webmail.version, mail.version, Server.tls_front)
        .join(Server, Server.id == Domain.server_id)
        .outerjoin(Deployment, and_(Deployment.server_id == Server.id,
                                    Deployment.generation == Server.applied_generation))
        .outerjoin(webmail, and_(webmail.domain_id == Domain.id, webmail.service == "webmail"))
        .outerjoin(mail, and_(mail.domain_id == Domain.id, mail.service == "mail"))
        .join(presented[0], presented[0].id == func.coalesce(webmail.certificate_id, Server.webmail_default_id))
        .join(presented[1], presented[1].id == func.coalesce(mail.certificate_id, Server.mail_certificate_id))
        .join(presented[2], presented[2].id == Server.mail_certificate_id)
        .where(Domain.name == bindparam("name")), webmail, mail
    )


def _observed_statement():
    """The facts with the latest observations of what the domain's names are served, in one
    statement (issue 8: one round trip on PostgreSQL): one row per observation, the facts
    repeated, or one row with NULL observation columns when there is none. A name without a
    binding is served the default, so its observations are the no-SNI probes (hostname "");
    ``service_observations`` keeps each service's own. A primary-key range of served_observations."""
    facts, webmail, mail = _facts_statement()
    o = ServedObservation
    probed = [case((webmail.id.is_(None), literal("")), else_=bindparam("webmail_host")),
              case((mail.id.is_(None), literal("")), else_=bindparam("mail_host"))]
    return facts.add_columns(o.hostname, o.service, o.daemon, o.port, o.protocol, o.expected, o.served, o.error,
                             o.observed_at).outerjoin(o, and_(o.server_id == Server.id, o.hostname.in_(probed)))


_FACTS = _facts_statement()[0]
_FACTS_OBSERVED = _observed_statement()
_FACTS_WIDTH = len(_FACTS.selected_columns)


def _facts(row) -> DomainFacts:
    width = len(PRESENTED_COLUMNS)
    certs = [CertificateFacts(*row[15 + i * width:15 + (i + 1) * width]) for i in range(3)]
    last = _FACTS_WIDTH - 1
    return DomainFacts(
        row[0], row[1], row[2], ServerFacts(*row[3:12], row[last]), list(row[12] or []),
        presented={"webmail": certs[0], "mail": certs[1]},
        bound={"webmail": row[13] is not None, "mail": row[14] is not None},
        server_certificate=certs[2],
        binding_rows={"webmail": (row[13], row[last - 2]) if row[13] is not None else None,
                      "mail": (row[14], row[last - 1]) if row[14] is not None else None},
    )


class DomainRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, row) -> None:
        self.session.add(row)
        await self.session.flush()

    async def by_name(self, name: str) -> Domain | None:
        return await self.session.scalar(select(Domain).where(Domain.name == name))

    async def facts(self, name: str) -> DomainFacts | None:
        """The domain, its server, the applied generation's failures and the certificates each
        service presents (its binding's, else the server's default), in one query of primary-key
        and unique-index lookups: the same work at 10 domains on the server as at 100,000."""
        row = (await self.session.execute(_FACTS, {"name": name})).first()
        return None if row is None else _facts(row)

    async def facts_observed(self, name: str, hostnames: dict[str, str]) -> tuple[DomainFacts, list[Seen]] | None:
        """``facts`` and the observations of the names it serves (``hostnames``: per service, the
        name clients connect to; see ``_observed_statement``), in one statement: the TLS
        status's one trip to the database."""
        rows = (await self.session.execute(_FACTS_OBSERVED, {
            "name": name, "webmail_host": hostnames["webmail"], "mail_host": hostnames["mail"]})).all()
        if not rows:
            return None
        seen = [Seen(*row[_FACTS_WIDTH:]) for row in rows if row[_FACTS_WIDTH] is not None]
        return _facts(rows[0]), seen

    async def list(self, visible: Any, server_id: str | None, page: PageRequest) -> Window:
        """One page of (id, name, server_id, account_id, created_at) rows, in name order
        (``visible``: ``Caller.visible_rows`` on the domain's account)."""
        stmt = select(Domain.id, Domain.name, Domain.server_id, Domain.account_id, Domain.created_at).where(visible)
        if server_id is not None:
            stmt = stmt.where(Domain.server_id == server_id)
        return await fetch(self.session, stmt, DOMAIN_ORDER, page)

    async def bindings(self, domain_id: str) -> dict[str, Binding]:
        rows = await self.session.scalars(select(Binding).where(Binding.domain_id == domain_id))
        return {row.service: row for row in rows}

    async def delete(self, row) -> None:
        await self.session.delete(row)
        await self.session.flush()

    async def upsert_binding(self, domain_id: str, service: str, certificate_id: str, now: datetime) -> BindingWrite:
        """Bind in one statement per step, safe under concurrent first binds of one service.

        ``INSERT .. ON CONFLICT DO NOTHING`` waits for a concurrent insert of the same
        (domain, service) to finish instead of failing on the unique constraint; the row it then
        sees is updated in place. Returns "created", "changed" (with the certificate bound before:
        exact when the caller holds the server's lock, ``ServerRepository.lock``) or "unchanged", or "gone" when the
        domain or the certificate was deleted by a concurrent request after it was read (the
        foreign key refuses the row; the transaction is then only good for rolling back). The
        loop covers a binding deleted between the two statements.
        """
        dialect = postgresql if self.session.bind.dialect.name == "postgresql" else sqlite
        key = (Binding.domain_id == domain_id, Binding.service == service)
        for _attempt in range(3):
            previous = await self.session.scalar(select(Binding.certificate_id).where(*key))
            try:
                inserted = await self.session.scalar(
                    dialect.insert(Binding)
                    .values(id=new_id(), domain_id=domain_id, service=service,
                            certificate_id=certificate_id, created_at=now, updated_at=now)
                    .on_conflict_do_nothing(index_elements=["domain_id", "service"])
                    .returning(Binding.id)
                )
            except IntegrityError:
                return BindingWrite("gone", None)
            if inserted is not None:
                return BindingWrite("created", None)
            try:
                changed = await self.session.execute(
                    update(Binding).where(*key, Binding.certificate_id != certificate_id)
                    .values(certificate_id=certificate_id, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
            except IntegrityError:
                return BindingWrite("gone", None)
            if changed.rowcount:
                return BindingWrite("changed", previous)
            if await self.session.scalar(select(Binding.id).where(*key)) is not None:
                return BindingWrite("unchanged", certificate_id)
        raise RuntimeError("the binding kept changing under a concurrent writer")

    async def binding_rows(self, domain_id: str) -> dict[str, tuple[str, int]]:
        """Per bound service, the binding's (id, version): what its entity tag is made of."""
        rows = await self.session.execute(
            select(Binding.service, Binding.id, Binding.version).where(Binding.domain_id == domain_id)
        )
        return {service: (row_id, version) for service, row_id, version in rows}

    async def delete_domain(self, domain_id: str) -> bool:
        """Delete (its bindings go by ON DELETE CASCADE); True only for the statement that did."""
        result = await self.session.execute(
            delete(Domain).where(Domain.id == domain_id).execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)

    async def delete_binding(self, domain_id: str, service: str) -> str | None:
        """Delete; the certificate it bound when this statement removed the row (of concurrent
        deletes, one does), else None."""
        return await self.session.scalar(
            delete(Binding).where(Binding.domain_id == domain_id, Binding.service == service)
            .returning(Binding.certificate_id)
            .execution_options(synchronize_session=False)
        )

    async def bound_certificate(self, domain_id: str, service: str) -> str | None:
        return await self.session.scalar(
            select(Binding.certificate_id).where(Binding.domain_id == domain_id, Binding.service == service)
        )

    async def mail_certificate_elsewhere(self, server_id: str, certificate_id: str, domain_id: str) -> bool:
        """Whether another domain of the server has ``certificate_id`` bound as mail.

        Driven by the certificate, always: its bindings are read through
        ``ix_bindings_certificate_id`` (a few rows for a domain's own certificate) and each one's
        server is looked up by primary key in a correlated subquery, which neither PostgreSQL
        nor SQLite turns into a join. A plain join leaves the order to PostgreSQL's estimates:
        right after a bulk import, before autovacuum had analysed ``domains``, it estimated a
        server's 10,000 domains at 10 rows, walked them and probed the bindings once per domain,
        25-130 ms per mail binding PUT (auto_explain; docs/performance.md section 8).
        """
        server_of = select(Domain.server_id).where(Domain.id == Binding.domain_id).scalar_subquery()
        found = await self.session.scalar(
            select(Binding.id)
            .where(Binding.certificate_id == certificate_id, Binding.service == "mail",
                   Binding.domain_id != domain_id, server_of == server_id)
            .limit(1)
        )
        return found is not None
