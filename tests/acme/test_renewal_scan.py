"""The renewal scan: "due now" is one stored instant (``renewal_eligible_at``), kept right by
every write, and the scan is a range scan on its index on SQLite and PostgreSQL."""

import itertools
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, text

from app.acme.renewal import due_query, renewal_due, schedule_due_renewals
from app.certificates.models import Certificate
from app.db import query_plan
from app.kit.renewal import renewal_eligible_at
from app.kit.time import utc_now

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
TIMES = (None, NOW - timedelta(hours=1), NOW, NOW + timedelta(hours=1), NOW + timedelta(hours=2))


def test_the_stored_instant_says_what_renewal_due_says():
    for renewal_at, status, next_at, now in itertools.product(
            TIMES, (None, "scheduled", "renewing", "failed"), TIMES, TIMES[1:]):
        eligible = renewal_eligible_at("acme", renewal_at, status, next_at)
        assert (eligible is not None and eligible <= now) == renewal_due(renewal_at, status, next_at, now)
    assert renewal_eligible_at("upload", NOW, "scheduled", None) is None


def _row(i: int, **renewal) -> dict:
    now = utc_now()
    return {"id": str(uuid.uuid4()), "created_at": now, "updated_at": now, "source": "acme",
            "subject": f"CN=c{i}", "issuer": "CN=CA", "serial": f"{i:x}", "sans": [f"c{i}.test"],
            "not_before": now, "not_after": now + timedelta(days=90), "fingerprint_sha256": f"{i:064x}",
            "key_type": "ec", "key_bits": 256, "self_signed": False, "trusted": True, "chain_length": 1,
            "certificate_pem": "-", "chain_pem": "", "key_ciphertext": b"-", "key_wrapped": b"-",
            "master_key_id": "k", "revision": 1, **renewal}


async def test_every_orm_write_keeps_the_instant(context):
    past, later = utc_now() - timedelta(hours=1), utc_now() + timedelta(hours=3)
    async with context.sessionmaker() as session:
        cert = Certificate(**_row(1, renewal_at=past, renewal_status="scheduled"))
        session.add(cert)
        await session.commit()
        assert cert.renewal_eligible_at == past
        cert.renewal_status, cert.next_renewal_attempt_at = "failed", later  # a failed renewal backs off
        await session.commit()
        assert cert.renewal_eligible_at == later
        cert.name = "unrelated"  # touches none of the inputs: left alone
        await session.commit()
        assert cert.renewal_eligible_at == later
        cert.renewal_status = "renewing"
        await session.commit()
        assert cert.renewal_eligible_at is None
        cert.renewal_status, cert.next_renewal_attempt_at = "scheduled", None
        await session.commit()
        assert cert.renewal_eligible_at == past
        cert.source = "upload"
        await session.commit()
        assert cert.renewal_eligible_at is None
        stored = (await session.execute(text("SELECT renewal_eligible_at FROM certificates"))).scalar_one()
        assert stored is None


async def test_backing_off_certificates_are_not_due_and_cost_no_scan(context):
    past, later = utc_now() - timedelta(days=1), utc_now() + timedelta(hours=1)
    async with context.sessionmaker() as session:
        session.add(Certificate(**_row(1, renewal_at=past, renewal_status="failed", next_renewal_attempt_at=later)))
        await session.commit()
    assert await schedule_due_renewals(context) == 0


async def test_the_scan_is_a_range_scan_on_its_index(context, backend):
    """The plan, not a timing: after a DNS outage (all due, all backing off) and with some due."""
    now = utc_now()
    rows = [_row(i, renewal_at=now - timedelta(minutes=i + 1), renewal_status="failed",
                 next_renewal_attempt_at=now + timedelta(minutes=i + 1)) for i in range(2000)]
    rows += [_row(2000 + i, renewal_at=now - timedelta(minutes=i + 1), renewal_status="scheduled") for i in range(20)]
    for row in rows:
        row["renewal_eligible_at"] = renewal_eligible_at(
            "acme", row["renewal_at"], row["renewal_status"], row.get("next_renewal_attempt_at"))
    async with context.sessionmaker() as session:
        await session.execute(insert(Certificate), rows)
        await session.commit()
    async with context.engine.connect() as conn:
        if backend == "postgres":
            await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("ANALYZE certificates"))
        await conn.commit()
    async with context.sessionmaker() as session:
        plan = "\n".join(await query_plan(session, due_query(utc_now(), 50)))
        found = (await session.scalars(due_query(utc_now(), 50))).all()
    assert len(found) == 20
    assert "ix_certificates_renewal_eligible_at" in plan, plan
    if backend == "sqlite":
        assert "SEARCH certificates USING INDEX ix_certificates_renewal_eligible_at" in plan, plan
        assert "TEMP B-TREE" not in plan, plan  # the index gives the order too
    else:
        assert "Index Scan using ix_certificates_renewal_eligible_at" in plan, plan
        assert "Index Cond: (renewal_eligible_at <=" in plan, plan
        assert "Sort" not in plan and "Seq Scan" not in plan, plan
