"""Automatic renewal: which ACME certificates are due, and starting one renewal order each.

``renewal_due`` is the policy (pure); ``schedule_due_renewals`` applies it in the worker. A
certificate moves ``scheduled`` -> ``renewing`` with one conditional UPDATE, so with several
workers on PostgreSQL exactly one of them writes its renewal order (the loser's UPDATE finds
the row already ``renewing``). "Due" is stored as one indexed instant, ``renewal_eligible_at``
(``app.kit.renewal``), so the scan stays one index range scan. A failed renewal waits
``next_renewal_attempt_at`` (exponential backoff, set when the order fails) and never touches
the material still being served.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select, update

from app.accounts.caller import SYSTEM, Caller
from app.acme import transitions
from app.acme.repository import AcmeRepository
from app.acme.service import AcmeService
from app.certificates.models import Certificate
from app.certificates.repository import CertificateRepository
from app.certificates.service import CertificateService
from app.context import AppContext
from app.kit.conditions import condition
from app.kit.renewal import renewal_eligible_at
from app.kit.time import utc_now
from app.problems import AppError

log = logging.getLogger("certpost.renewal")


def renewal_due(renewal_at: datetime | None, status: str | None, next_attempt_at: datetime | None, now: datetime) -> bool:
    eligible_at = renewal_eligible_at("acme", renewal_at, status, next_attempt_at)
    return eligible_at is not None and eligible_at <= now


def _due_clause(now: datetime):
    # One range scan on ix_certificates_renewal_eligible_at, the stored form of ``renewal_due``
    # (kept by the Certificate mapper on every ORM write; the UPDATE below sets it itself).
    return Certificate.renewal_eligible_at <= now


def due_query(now: datetime, limit: int):
    """The scan ``schedule_due_renewals`` runs (the longest-waiting first); bench/renewal_scan.py times it."""
    return select(Certificate.id).where(_due_clause(now)).order_by(Certificate.renewal_eligible_at).limit(limit)


async def schedule_due_renewals(ctx: AppContext, *, limit: int = 50, owner: str | None = None) -> int:
    """Start a renewal order per due certificate; ``owner``: the worker's id, the events' actor."""
    caller = Caller.for_worker(owner) if owner else SYSTEM
    now = utc_now()
    started = 0
    async with ctx.sessionmaker() as session:
        ids = list(await session.scalars(due_query(now, limit)))
    for cert_id in ids:
        async with ctx.sessionmaker() as session:
            won = await session.execute(
                update(Certificate).where(Certificate.id == cert_id, _due_clause(now))
                .values(renewal_status="renewing", renewal_eligible_at=None).execution_options(synchronize_session=False)
            )
            if won.rowcount != 1:
                continue
            certificates = CertificateService(CertificateRepository(session), ctx.master_key)
            service = AcmeService(AcmeRepository(session), ctx.master_key, certificates)
            try:
                order = await service.renew_now(caller, cert_id)
            except AppError as exc:
                await session.rollback()
                await _cannot_renew(ctx, cert_id, exc, caller)
                continue
            await session.commit()
            started += 1
            log.info("renewal order %s started for certificate %s", order.id, cert_id)
    if started:
        ctx.notify_worker()
    return started


async def _cannot_renew(ctx: AppContext, cert_id: str, exc: AppError, caller: Caller) -> None:
    """A renewal that cannot even be ordered (provider deleted, say) shows on the certificate."""
    now = utc_now()
    async with ctx.sessionmaker() as session:
        cert = await session.get(Certificate, cert_id)
        transitions.renewal_failed(session, cert, condition(exc.code, exc.detail, at=now, step="order"), caller,
                                   now=now, base=ctx.settings.renewal_retry_base_seconds,
                                   cap=ctx.settings.renewal_retry_max_seconds)
        await session.commit()
    log.warning("certificate %s cannot be renewed: %s", cert_id, exc.detail)
