"""Retention (app/retention): old events, finished webhook deliveries and deployment history are
pruned in batches by one worker at a time; what is recent, undelivered or still referenced stays."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, update

from app.deployments.models import Deployment, DeploymentAttempt
from app.events.models import Event, EventSubject
from app.kit.time import utc_now
from app.metrics.controller import read_snapshot
from app.retention import jobs
from app.retention.jobs import TASK_ID, claim_retention, prune
from app.retention.models import ScheduledTask
from app.retention.rules import retention
from app.scheduler.worker import Worker
from app.servers.models import Server
from app.webhooks.models import Webhook, WebhookAttempt, WebhookDelivery
from tests.support.api import create_server, list_all

OLD = timedelta(days=400)
HELD = {"name": "mail.held.test", "service": "mail", "fingerprint": "ab" * 32, "code": "verify_failed",
        "message": "held back"}


@pytest.fixture
def retention_on(settings):
    saved = (settings.retention_check_seconds, settings.deployment_history_keep)
    settings.retention_check_seconds, settings.deployment_history_keep = 3600, 4
    yield settings
    settings.retention_check_seconds, settings.deployment_history_keep = saved


async def count(context, stmt) -> int:
    async with context.sessionmaker() as session:
        return int(await session.scalar(stmt))


async def test_old_events_go_and_a_cursor_past_them_still_pages(client, admin, context, settings, monkeypatch):
    for n in range(3):
        await create_server(client, admin, name=f"mx{n}", hostname=f"mx{n}.hosting.test")
    events = await list_all(client, "/v1/events", admin)
    assert len(events) >= 4
    old_ids = [e["id"] for e in events[: len(events) // 2]]
    kept_ids = [e["id"] for e in events[len(events) // 2:]]
    first_page = (await client.get("/v1/events", params={"limit": 1}, headers=admin)).json()
    cursor = first_page["next_cursor"]  # after the oldest event, which is about to go
    async with context.sessionmaker() as session:
        await session.execute(update(Event).where(Event.id.in_(old_ids)).values(occurred_at=utc_now() - OLD))
        await session.commit()

    monkeypatch.setattr(jobs, "PRUNE_BATCH", 1)  # one event per transaction: the batches follow each other
    pruned = await prune(context, retention(settings, utc_now()))

    assert pruned["events"] == len(old_ids)
    assert [e["id"] for e in await list_all(client, "/v1/events", admin)] == kept_ids
    assert [e["id"] for e in await list_all(client, "/v1/events", admin, cursor=cursor)] == kept_ids
    assert await count(context, select(func.count()).select_from(EventSubject)
                       .where(EventSubject.event_id.in_(old_ids))) == 0
    assert (await client.get(f"/v1/events/{old_ids[0]}", headers=admin)).status_code == 404
    # New events still get higher ids than every pruned one.
    await create_server(client, admin, name="mx9", hostname="mx9.hosting.test")
    newest = await list_all(client, "/v1/events", admin, cursor=cursor)
    assert newest[: len(kept_ids)] == [e for e in newest if e["id"] in kept_ids] and newest[-1]["id"] > kept_ids[-1]


async def _webhook(session) -> str:
    row = Webhook(id="00000000-0000-4000-8000-000000000001", url="https://hooks.example/x", kinds=["server.created"],
                  secret_ciphertext=b"x", secret_wrapped=b"x", master_key_id="k", enabled=True)
    session.add(row)
    await session.flush()
    return row.id


async def test_finished_deliveries_go_with_their_attempts_and_undelivered_ones_stay(context, settings):
    now = utc_now()
    cases = {  # name: (status, last changed)
        "old-delivered": ("delivered", now - OLD), "old-failed": ("failed", now - OLD),
        "old-retrying": ("retrying", now - OLD), "old-pending": ("pending", now - OLD),
        "new-delivered": ("delivered", now - timedelta(days=1)), "new-failed": ("failed", now),
    }
    ids = {}
    async with context.sessionmaker() as session:
        webhook_id = await _webhook(session)
        for n, (name, (status, at)) in enumerate(cases.items()):
            delivery = WebhookDelivery(webhook_id=webhook_id, event_id=n + 1, event_kind="server.created", body="{}",
                                       status=status, attempts=1, created_at=at, updated_at=at)
            session.add(delivery)
            await session.flush()
            ids[name] = delivery.id
            session.add(WebhookAttempt(delivery_id=delivery.id, attempt=1, at=at, status_code=500, duration_ms=3))
        await session.commit()

    pruned = await prune(context, retention(settings, now))

    assert (pruned["webhook_deliveries"], pruned["webhook_attempts"]) == (2, 2)
    assert (pruned["webhook_deliveries.delivered"], pruned["webhook_deliveries.failed"]) == (1, 1)
    async with context.sessionmaker() as session:
        left = set(await session.scalars(select(WebhookDelivery.id)))
        attempts = set(await session.scalars(select(WebhookAttempt.delivery_id)))
    assert left == attempts == {ids[k] for k in ("old-retrying", "old-pending", "new-delivered", "new-failed")}


async def test_deployment_history_keeps_the_newest_the_applied_and_the_undelivered(client, admin, context,
                                                                                   retention_on):
    server = (await create_server(client, admin))["id"]
    other = (await create_server(client, admin, name="mx2", hostname="mx2.hosting.test"))["id"]
    statuses = {1: "applied", 2: "failed", 3: "applied", 4: "superseded", 5: "failed", 6: "applied",
                7: "failed", 8: "applied", 9: "failed", 10: "pending"}
    async with context.sessionmaker() as session:
        await session.execute(delete(Deployment).where(Deployment.server_id == server))
        await session.execute(update(Server).where(Server.id == server).values(applied_generation=3,
                                                                               desired_generation=10))
        rows = {g: Deployment(server_id=server, generation=g, reason="test", status=s,
                              failed_names=[HELD] if g == 3 else None)
                for g, s in statuses.items()}
        session.add_all(rows.values())
        await session.flush()
        session.add_all(DeploymentAttempt(deployment_id=rows[g].id, started_at=utc_now(), outcome="failed")
                        for g in (1, 2, 3))
        await session.commit()
    others_before = await count(context, select(func.count()).select_from(Deployment)
                                .where(Deployment.server_id == other))

    pruned = await prune(context, retention(retention_on, utc_now()))

    # keep 4 newest (7..10); 3 is the applied generation (its held-back names are read); 1, 2, 4, 5, 6 go.
    assert (pruned["deployments"], pruned["deployment_attempts"]) == (5, 2)
    listed = await list_all(client, f"/v1/servers/{server}/deployments", admin)
    assert [d["generation"] for d in listed] == [10, 9, 8, 7, 3]
    assert listed[-1]["failed_names"][0]["name"] == HELD["name"]
    assert await count(context, select(func.count()).select_from(Deployment)
                       .where(Deployment.server_id == other)) == others_before
    assert await count(context, select(func.count()).select_from(DeploymentAttempt)) == 1


async def test_one_worker_prunes_at_a_time_and_only_when_due(context, retention_on, caplog):
    now = utc_now()
    lease = timedelta(seconds=retention_on.lease_seconds)
    async with context.sessionmaker() as a, context.sessionmaker() as b:
        assert await claim_retention(a, "worker-a", now, lease) == [TASK_ID]
        await a.commit()
        assert await claim_retention(b, "worker-b", now, lease) == []
        await b.commit()
    async with context.sessionmaker() as session:
        await session.execute(update(ScheduledTask).values(lease_until=None, lease_owner=None))
        await session.commit()

    first, second = Worker(context, owner="worker-1"), Worker(context, owner="worker-2")
    with caplog.at_level(logging.INFO, logger="certpost.retention"):
        started = await asyncio.gather(first.round(), second.round())
        await asyncio.gather(first.drain(), second.drain())
    # One round started the job and the other did not; a run can finish before round() returns,
    # so the proof that it ran once is its one log line, not the running set.
    assert sorted(started) == [0, 1]
    assert sum("retention: pruned 0 events" in r.getMessage() for r in caplog.records) == 1
    async with context.sessionmaker() as session:
        row = await session.get(ScheduledTask, TASK_ID)
        assert row.lease_owner is None and row.last_pruned["events"] == 0
        assert row.next_run_at >= now + timedelta(seconds=3600)
        assert await claim_retention(session, "worker-b", utc_now(), lease) == []  # not due yet
        assert await claim_retention(session, "worker-b", row.next_run_at + timedelta(seconds=1), lease) == [TASK_ID]
        await session.rollback()
    snapshot = await read_snapshot(context.sessionmaker)
    assert snapshot.pruned["events"] == 0


async def test_each_batch_finds_its_rows_through_an_index(context, backend):
    """The batch selections read an index on what they filter by, not the whole table (SQLite's
    plan; PostgreSQL picks by statistics, which an empty test table does not have)."""
    if backend != "sqlite":
        pytest.skip("PostgreSQL's planner chooses by table statistics")
    from app.db import query_plan
    from app.retention.repository import events_before, finished_deliveries

    now = utc_now()
    async with context.sessionmaker() as session:
        events = "\n".join(await query_plan(session, events_before(now, 1000)))
        deliveries = "\n".join(await query_plan(session, select(WebhookDelivery.id)
                                                .where(finished_deliveries(now)).limit(1000)))
        subjects = "\n".join(await query_plan(session, delete(EventSubject).where(EventSubject.event_id.in_([1, 2]))))
    assert "INDEX ix_events_occurred_at (occurred_at<?)" in events and "TEMP B-TREE" not in events, events
    assert "ix_webhook_deliveries_status_updated_at" in deliveries, deliveries
    assert "ix_event_subjects_event_id" in subjects, subjects
