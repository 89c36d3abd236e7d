"""Expiry notices: bound certificates that will not be renewed in time are announced at 30, 14, 7
and 1 days before not_after and once expired, once per threshold, whatever the number of workers."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from app.certificates.models import Certificate
from app.events.models import Event
from app.expiry import rules
from app.expiry.jobs import record_expiry_notices
from app.scheduler.worker import Worker
from tests.support.api import create_domain, create_server, upload
from tests.support.worker import work_until
from tests.webhooks.verify import verify


async def hosted_certificate(client, admin, customer_headers, test_ca, days: float, *, domain="a.test", bind=True):
    server = await create_server(client, admin, name=f"mx-{domain}", hostname=f"mx.{domain}")
    account_id, customer = await customer_headers()
    await create_domain(client, admin, domain, server["id"], account_id)
    cert = await upload(client, customer, test_ca.issue([f"webmail.{domain}"], days=days))
    if bind:
        response = await client.put(f"/v1/domains/{domain}/bindings/webmail", json={"certificate_id": cert["id"]},
                                    headers=customer)
        assert response.status_code in (200, 201), response.text
    return cert, account_id


async def events(ctx, kind=None) -> list[Event]:
    async with ctx.sessionmaker() as session:
        stmt = select(Event).where(Event.kind.in_(("certificate.expiring", "certificate.expired")))
        return list(await session.scalars(stmt.order_by(Event.id)))


def test_the_tightest_threshold_crossed_is_the_one_told():
    now = datetime(2026, 12, 1, tzinfo=UTC)
    assert rules.threshold(now + timedelta(days=45), now) is None
    assert rules.threshold(now + timedelta(days=30), now) == 30
    assert rules.threshold(now + timedelta(days=20), now) == 30
    assert rules.threshold(now + timedelta(days=5), now) == 7
    assert rules.threshold(now + timedelta(hours=3), now) == 1
    assert rules.threshold(now, now) == 1  # valid for all of its not_after second
    assert rules.threshold(now - timedelta(seconds=1), now) == rules.EXPIRED
    later = now + timedelta(days=60)
    assert not rules.renewed_in_time("upload", None, None, later)
    assert not rules.renewed_in_time("acme", "failed", now, later)
    assert rules.renewed_in_time("acme", "scheduled", now, later)
    assert rules.renewed_in_time("acme", "renewing", None, later)
    assert not rules.renewed_in_time("acme", "scheduled", later + timedelta(days=1), later)


async def test_a_bound_uploaded_certificate_is_told_once_per_threshold(client, admin, customer_headers, test_ca, context):
    cert, account_id = await hosted_certificate(client, admin, customer_headers, test_ca, days=10)
    await hosted_certificate(client, admin, customer_headers, test_ca, days=10, domain="b.test", bind=False)
    assert await record_expiry_notices(context) == 1
    assert await record_expiry_notices(context) == 0  # the same threshold again: nothing
    [event] = await events(context)
    assert (event.kind, event.account_id, event.subjects) == ("certificate.expiring", account_id, {"certificate": cert["id"]})
    assert event.data["threshold_days"] == 14 and event.data["days_left"] == 9
    assert event.data["fingerprint_sha256"] == cert["fingerprint_sha256"] and event.actor_type == "worker"
    not_after = datetime.fromisoformat(cert["not_after"])
    # Time passes: the 7- and 1-day thresholds, then expiry, each once.
    for at, kind, threshold in ((not_after - timedelta(days=6), "certificate.expiring", 7),
                                (not_after - timedelta(hours=2), "certificate.expiring", 1),
                                (not_after + timedelta(seconds=1), "certificate.expired", None)):
        assert await record_expiry_notices(context, now=at) == 1
        assert await record_expiry_notices(context, now=at) == 0
        latest = (await events(context))[-1]
        assert latest.kind == kind and latest.data.get("threshold_days") == threshold
    assert await record_expiry_notices(context, now=not_after + timedelta(days=3)) == 0
    assert len(await events(context)) == 4


async def test_more_candidates_than_a_page_are_all_told(client, admin, customer_headers, test_ca, context,
                                                         monkeypatch):
    """Certificates already told stay candidates until they expire: with more of them than one
    page of the scan, the later ones were never told (the first page was the same every time)."""
    from app.expiry import jobs

    monkeypatch.setattr(jobs, "SCAN_LIMIT", 2)
    for domain, days in (("a.test", 10), ("b.test", 11)):
        await hosted_certificate(client, admin, customer_headers, test_ca, days=days, domain=domain)
    assert await record_expiry_notices(context) == 2
    late, _ = await hosted_certificate(client, admin, customer_headers, test_ca, days=12, domain="c.test")
    assert await record_expiry_notices(context) == 1
    assert [e.subjects["certificate"] for e in await events(context)][-1] == late["id"]
    assert await record_expiry_notices(context) == 0


async def test_an_acme_certificate_is_told_only_when_its_renewal_is_failing(client, admin, customer_headers, test_ca,
                                                                           context):
    cert, _ = await hosted_certificate(client, admin, customer_headers, test_ca, days=20)
    async with context.sessionmaker() as session:  # as app.acme.store leaves an issued certificate
        await session.execute(update(Certificate).where(Certificate.id == cert["id"]).values(
            source="acme", renewal_status="scheduled", renewal_at=datetime.now(UTC) + timedelta(days=1)))
        await session.commit()
    assert await record_expiry_notices(context) == 0
    async with context.sessionmaker() as session:
        await session.execute(update(Certificate).where(Certificate.id == cert["id"]).values(renewal_status="failed"))
        await session.commit()
    assert await record_expiry_notices(context) == 1
    [event] = await events(context)
    assert event.data["threshold_days"] == 30 and event.data["renewal_status"] == "failed"


async def test_two_workers_scanning_at_once_tell_once(client, admin, customer_headers, test_ca, context,
                                                      webhook_context):
    for i in range(6):
        await hosted_certificate(client, admin, customer_headers, test_ca, days=5 + i, domain=f"d{i}.test")
    other = webhook_context()  # a second process's engine and pool
    counts = await asyncio.gather(record_expiry_notices(context, "worker-a"), record_expiry_notices(other, "worker-b"),
                                  record_expiry_notices(context, "worker-c"))
    assert sum(counts) == 6
    told = await events(context)
    assert len(told) == 6 and len({e.subjects["certificate"] for e in told}) == 6


async def test_a_panel_subscribed_to_expiry_hears_it_signed(api, admin, customer_headers, test_ca, receivers):
    client, ctx = api
    receiver = receivers()
    response = await client.post("/v1/webhooks", json={"url": receiver.url, "kinds": ["certificate.expiring"]},
                                 headers=admin)
    secret = response.json()["secret"]
    cert, account_id = await hosted_certificate(client, admin, customer_headers, test_ca, days=3)
    worker = Worker(ctx, owner="scheduler")  # the expiry scan is one of its periodic jobs

    async def heard():
        return receiver.requests[:1]

    [request] = await work_until(ctx, heard, worker=worker)
    verify(secret, request.headers, request.body)
    body = json.loads(request.body)
    assert body["type"] == "certificate.expiring" and body["data"]["subjects"] == {"certificate": cert["id"]}
    assert body["data"]["threshold_days"] == 7 and body["data"]["account_id"] == account_id
