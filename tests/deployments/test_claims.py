"""Several workers never take the same server, order or renewal at once (also on PostgreSQL)."""

import asyncio
from datetime import timedelta

from app.acme.repository import AcmeRepository
from app.deployments.claims import claim_due_servers
from app.kit.time import utc_now
from tests.support.api import create_domain, create_server


async def test_each_due_server_is_claimed_by_one_worker(client, admin, context):
    servers = [await create_server(client, admin, name=f"s{i}", hostname=f"s{i}.hosting.test",
                                   agent_url="https://agent.invalid", agent_tls_fingerprint="0" * 64)
               for i in range(6)]

    async def claim(owner):
        async with context.sessionmaker() as session:
            won = await claim_due_servers(session, owner, utc_now(), timedelta(seconds=60), 10)
            await session.commit()
            return won

    results = await asyncio.gather(*(claim(f"w{i}") for i in range(4)))
    claimed = [sid for won in results for sid in won]
    assert sorted(claimed) == sorted(s["id"] for s in servers)  # all taken, none twice
    assert await claim("late") == []  # leases held


async def test_each_order_is_claimed_once(client, admin, context, customer_headers):
    from app.acme.models import CertificateOrder

    server = await create_server(client, admin)
    account_id, _ = await customer_headers()
    await create_domain(client, admin, "a.test", server["id"], account_id)
    async with context.sessionmaker() as session:
        for i in range(5):
            session.add(CertificateOrder(account_id=account_id, domain="a.test", names=[f"n{i}.a.test"], challenge="dns-01",
                                         key_type="ec-p256", bind=[], status="pending", authorizations=[]))
        await session.commit()

    async def claim(owner):
        async with context.sessionmaker() as session:
            now = utc_now()
            won = await AcmeRepository(session).claim_orders(owner, now, now + timedelta(seconds=60), 10)
            await session.commit()
            return won

    results = await asyncio.gather(*(claim(f"w{i}") for i in range(4)))
    claimed = [oid for won in results for oid in won]
    assert len(claimed) == len(set(claimed)) == 5


async def test_a_due_renewal_starts_once_with_several_workers(client, admin, context, test_ca, customer_headers):
    from sqlalchemy import func, select

    from app.acme.models import CertificateOrder
    from app.acme.renewal import schedule_due_renewals
    from app.certificates.models import Certificate
    from tests.support.api import upload

    server = await create_server(client, admin)
    account_id, customer = await customer_headers()
    await create_domain(client, admin, "a.test", server["id"], account_id)
    provider = (await client.post("/v1/dns-providers", json={"name": "p", "kind": "rfc2136", "settings": {
        "server": "127.0.0.1", "key_name": "k", "key_secret": "c2VjcmV0"}}, headers=admin)).json()
    cert = await upload(client, customer, test_ca.issue(["a.test"]))
    async with context.sessionmaker() as session:
        previous = CertificateOrder(account_id=account_id, domain="a.test", names=["a.test"], challenge="dns-01",
                                    dns_provider_id=provider["id"], key_type="ec-p256", bind=[], status="valid",
                                    authorizations=[])
        session.add(previous)
        await session.flush()
        row = await session.get(Certificate, cert["id"])
        row.source, row.order_id, row.renewal_status = "acme", previous.id, "scheduled"
        row.renewal_at = utc_now() - timedelta(minutes=1)
        await session.commit()

    started = await asyncio.gather(*(schedule_due_renewals(context) for _ in range(3)))
    assert sum(started) == 1
    async with context.sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(CertificateOrder).where(
            CertificateOrder.certificate_id == cert["id"], CertificateOrder.status == "pending"))
    assert count == 1
    async with context.sessionmaker() as session:  # the conditional UPDATE took it out of the scan
        assert (await session.get(Certificate, cert["id"])).renewal_eligible_at is None
    body = (await client.get(f"/v1/certificates/{cert['id']}", headers=customer)).json()
    assert body["renewal_status"] == "renewing"


async def test_the_claim_is_a_range_scan_of_due_rows(client, admin, context):
    """The claim's query, exactly as the driver receives it, uses the partial index of waiting
    rows: delivered history and servers without an agent are never walked (a plan, not a
    timing; bench/changes.py measures it with 100,000 rows of history)."""
    from sqlalchemy import event

    await create_server(client, admin, agent_url="https://agent.invalid", agent_tls_fingerprint="0" * 64)
    captured = []

    def grab(_conn, _cursor, statement, parameters, _context, _many):
        if "FROM deployments JOIN servers" in statement:
            captured.append((statement, parameters))

    event.listen(context.engine.sync_engine, "before_cursor_execute", grab)
    try:
        async with context.sessionmaker() as session:
            assert len(await claim_due_servers(session, "w", utc_now(), timedelta(seconds=5), 4)) == 1
            await session.rollback()
    finally:
        event.remove(context.engine.sync_engine, "before_cursor_execute", grab)
    statement, parameters = captured[0]
    async with context.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            await conn.exec_driver_sql("SET enable_seqscan = off")  # a few rows: ask whether it CAN use it
            rows = (await conn.exec_driver_sql("EXPLAIN " + statement, parameters)).all()
        else:
            rows = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)).all()
    plan = " | ".join(str(row[-1]) for row in rows)
    assert "ix_deployments_due_at" in plan, plan
