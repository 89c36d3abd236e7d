"""Keeps each domain's TLS summary (``domains.tls_*``, app/domains/tls_summary.py) equal to what it presents.

The summary is the facts the TLS list sorts and filters by, and which certificate each service
presents and whether it is bound (the list's rows are read from ``domains`` alone).

Every write that changes what a domain presents, or a fact the rules read of a presented
certificate, calls one of these in its own transaction once the change is written:

- a domain added, a binding put or deleted: ``domains``;
- a server's server-wide mail certificate or webmail default chosen or unset: ``unbound_on``
  (only the domains with a service left to the server's default present it);
- a certificate's material replaced (a renewal too) or its trust verdict judged again:
  ``presenting`` (the domains bound to it, and the unbound ones of servers defaulting to it).

A deleted domain takes its row with it. Each call reads the domains in scope with the
certificates they present, in batches of ``BATCH`` by id, recomputes their facts with
``tls_summary.summarize`` (the rules themselves) and writes only the rows that differ.

Callers run it after the write that locks the server's row (``servers_changed``,
``ServerRepository.lock``) or the certificate's: a concurrent writer of the same domains then
waits for this transaction, and reads what it committed, before computing its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from datetime import datetime
from types import SimpleNamespace
from typing import Any, NamedTuple

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.certificates.models import Certificate
from app.domains.models import Binding, Domain
from app.domains.tls_summary import summarize
from app.servers.models import Server

BATCH = 1000
# What a domain row keeps, in the order ``_refresh`` compares it: the summary's facts, then
# which certificate each service presents and whether it is bound (the TLS list's rows).
KEPT = (Domain.tls_soonest, Domain.tls_latest_start, Domain.tls_flags, Domain.tls_webmail_certificate_id,
        Domain.tls_mail_certificate_id, Domain.tls_webmail_bound, Domain.tls_mail_bound)


class _Presented(NamedTuple):
    """What ``rules.identity_reasons`` and the summary read of a certificate."""

    sans: list[str]
    not_before: datetime
    not_after: datetime
    self_signed: bool
    trusted: bool


@functools.cache
def _parts() -> SimpleNamespace:
    webmail, mail = aliased(Binding), aliased(Binding)
    rows = (
        select(Domain.id, Domain.name,
               func.coalesce(webmail.certificate_id, Server.webmail_default_id),
               func.coalesce(mail.certificate_id, Server.mail_certificate_id),
               webmail.id.is_not(None), mail.id.is_not(None),
               *KEPT)
        .select_from(Domain)
        .join(Server, Server.id == Domain.server_id)
        .outerjoin(webmail, and_(webmail.domain_id == Domain.id, webmail.service == "webmail"))
        .outerjoin(mail, and_(mail.domain_id == Domain.id, mail.service == "mail"))
    )
    certificates = (
        select(Certificate.id, Certificate.sans, Certificate.not_before, Certificate.not_after,
               Certificate.self_signed, Certificate.trusted)
        .where(Certificate.id.in_(bindparam("ids", expanding=True)))
    )
    table = Domain.__table__
    write = (
        update(table).where(table.c.id == bindparam("row_id"))
        # updated_at stays: nobody changed the domain (the column's onupdate would move it)
        .values(tls_soonest=bindparam("v_soonest"), tls_latest_start=bindparam("v_start"),
                tls_flags=bindparam("v_flags"), tls_webmail_certificate_id=bindparam("v_webmail"),
                tls_mail_certificate_id=bindparam("v_mail"), tls_webmail_bound=bindparam("v_webmail_bound"),
                tls_mail_bound=bindparam("v_mail_bound"), updated_at=table.c.updated_at)
    )
    return SimpleNamespace(webmail=webmail, mail=mail, rows=rows, certificates=certificates, write=write)


async def _refresh(session: AsyncSession, scope: Callable[[SimpleNamespace], Any]) -> int:
    """Recompute the domains ``scope`` selects; returns how many rows changed."""
    await session.flush()
    parts = _parts()
    connection = await session.connection()
    stmt = parts.rows.where(scope(parts)).order_by(Domain.id).limit(BATCH)
    after, written = None, 0
    while True:
        rows = list(await connection.execute(stmt if after is None else stmt.where(Domain.id > after)))
        if not rows:
            return written
        ids = sorted({row[2] for row in rows} | {row[3] for row in rows})
        certs = {row[0]: _Presented(*row[1:])
                 for row in await connection.execute(parts.certificates, {"ids": ids})}
        changes = []
        for row_id, name, webmail_id, mail_id, webmail_bound, mail_bound, *kept in rows:
            facts = summarize(name, {"webmail": certs[webmail_id], "mail": certs[mail_id]})
            if tuple(kept) != (*facts, webmail_id, mail_id, bool(webmail_bound), bool(mail_bound)):
                changes.append({"row_id": row_id, "v_soonest": facts.soonest, "v_start": facts.latest_start,
                                "v_flags": facts.flags, "v_webmail": webmail_id, "v_mail": mail_id,
                                "v_webmail_bound": bool(webmail_bound), "v_mail_bound": bool(mail_bound)})
        if changes:
            await connection.execute(parts.write, changes)
            written += len(changes)
        if len(rows) < BATCH:
            return written
        after = rows[-1][0]


async def domains(session: AsyncSession, domain_ids: Iterable[str]) -> int:
    """A domain added, or one of its bindings put or deleted."""
    ids = sorted(set(domain_ids))
    return await _refresh(session, lambda p: Domain.id.in_(ids)) if ids else 0


async def unbound_on(session: AsyncSession, server_id: str) -> int:
    """The server's default for a service changed: its domains without a binding for one."""
    return await _refresh(session, lambda p: and_(Domain.server_id == server_id,
                                                  or_(p.webmail.id.is_(None), p.mail.id.is_(None))))


async def presenting(session: AsyncSession, certificate_ids: Iterable[str]) -> int:
    """Certificates whose material or trust verdict changed: every domain presenting one."""
    ids = sorted(set(certificate_ids))
    if not ids:
        return 0
    bound = select(Binding.domain_id).where(Binding.certificate_id.in_(ids))
    written = await _refresh(session, lambda p: Domain.id.in_(bound))
    defaulting = await session.scalars(select(Server.id).where(
        or_(Server.mail_certificate_id.in_(ids), Server.webmail_certificate_id.in_(ids))))
    for server_id in list(defaulting):
        written += await unbound_on(session, server_id)
    return written


async def everything(session: AsyncSession) -> int:
    """Every domain (after writes that went around the application: a bulk seed, a test's
    direct UPDATE of a certificate's dates)."""
    return await _refresh(session, lambda p: Domain.id.is_not(None))
