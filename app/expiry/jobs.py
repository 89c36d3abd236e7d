"""The scheduler's expiry scan: one notice per (certificate, threshold), recorded as an event.

Every ``expiry_check_seconds`` the worker lists bound certificates whose ``not_after`` is within
the widest threshold (``rules.HORIZON``) and, one transaction per certificate, inserts the notice
row for its tightest crossed threshold with ON CONFLICT DO NOTHING; only the transaction whose
insert took records ``certificate.expiring`` (or ``certificate.expired``), so two workers scanning
at once tell once, on PostgreSQL (the second insert waits for the first's commit and then finds
the row) as on SQLite (one writer at a time). The insert is the transaction's first statement, a
write, so SQLite takes its lock before anything is read.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.dialects import postgresql, sqlite

from app.accounts.caller import Caller
from app.certificates.models import Certificate
from app.context import AppContext
from app.db import new_id
from app.domains.models import Binding
from app.events import EventKind, record
from app.expiry import rules
from app.expiry.models import ExpiryNotice
from app.kit.time import utc_now
from app.servers.models import Server

log = logging.getLogger("certpost.expiry")

SCAN_LIMIT = 5000


def bound():
    """The certificate is served somewhere: a binding, or a server's mail certificate or webmail default."""
    return or_(
        exists().where(Binding.certificate_id == Certificate.id),
        exists().where(Server.mail_certificate_id == Certificate.id),
        exists().where(Server.webmail_certificate_id == Certificate.id),
    )


def candidates_query(now, after: tuple[datetime, str] | None = None):
    """One page of candidates, by (not_after, id) from ``after``. Paged, not cut at one page:
    a certificate already told at its current threshold stays a candidate until it expires,
    so with more than a page of them within the horizon (a server with thousands of
    domains) a cut would keep the later ones from ever being told."""
    already_expired_noticed = exists().where(
        ExpiryNotice.certificate_id == Certificate.id, ExpiryNotice.not_after == Certificate.not_after,
        ExpiryNotice.threshold_days == rules.EXPIRED)
    stmt = (select(Certificate.id, Certificate.not_after, Certificate.source, Certificate.renewal_status,
                   Certificate.renewal_at)
            .where(Certificate.not_after <= now + rules.HORIZON, bound(), ~already_expired_noticed))
    if after is not None:
        stmt = stmt.where(or_(Certificate.not_after > after[0],
                              and_(Certificate.not_after == after[0], Certificate.id > after[1])))
    return stmt.order_by(Certificate.not_after, Certificate.id).limit(SCAN_LIMIT)


def _insert(dialect: str):
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(ExpiryNotice)


async def record_expiry_notices(ctx: AppContext, owner: str = "expiry-scan", *, now: datetime | None = None) -> int:
    """Record the notices due ``now`` (default: the clock); returns how many events this call recorded."""
    now = now or utc_now()
    rows, after = [], None
    while True:
        async with ctx.sessionmaker() as session:
            page = list(await session.execute(candidates_query(now, after)))
        rows += page
        if len(page) < SCAN_LIMIT:
            break
        after = (page[-1].not_after, page[-1].id)
    recorded = 0
    for row in rows:
        crossed = rules.threshold(row.not_after, now)
        if crossed is None or (crossed != rules.EXPIRED and rules.renewed_in_time(
                row.source, row.renewal_status, row.renewal_at, row.not_after)):
            continue
        async with ctx.sessionmaker() as session:
            insert = _insert(ctx.engine.dialect.name).values(
                id=new_id(), certificate_id=row.id, not_after=row.not_after, threshold_days=crossed, recorded_at=now,
            ).on_conflict_do_nothing(index_elements=["certificate_id", "not_after", "threshold_days"])
            if (await session.execute(insert)).rowcount != 1:
                continue  # told already (by this worker earlier, or another one just now)
            cert = await session.get(Certificate, row.id)
            if cert is None or cert.not_after != row.not_after:
                await session.rollback()  # deleted or replaced since the scan: the next scan judges it again
                continue
            data = {"fingerprint_sha256": cert.fingerprint_sha256, "names": list(cert.sans), "not_after": cert.not_after,
                    "source": cert.source, "renewal_status": cert.renewal_status}
            if crossed == rules.EXPIRED:
                kind = EventKind.CERTIFICATE_EXPIRED
            else:
                kind = EventKind.CERTIFICATE_EXPIRING
                data |= {"days_left": rules.days_left(cert.not_after, now), "threshold_days": crossed}
            record(session, kind, Caller.for_worker(owner), account_id=cert.account_id,
                   subjects={"certificate": cert.id}, data=data)
            await session.commit()
            recorded += 1
            log.info("certificate %s: %s (threshold %d days)", cert.id, kind.value, crossed)
    return recorded
