"""The scheduler's webhook job: fan new events out into deliveries, then send what is due.

A webhook is one leased job (``app.scheduler.lease`` on the webhook row): the worker that holds
it turns new events into delivery rows, moves ``after_event_id`` on, and sends the due
deliveries, at most ``webhook_concurrency`` requests at once, each bounded by
``webhook_timeout_seconds``. One worker per webhook means each event is queued once and each
delivery sent by one worker (the unique (webhook, event) pair is the second net); one task per
webhook in slots of their own means a slow or dead receiver delays only itself.

Every attempt is a row (``webhook_attempts``) written with the delivery's new state in one
transaction. Failure handling follows Standard Webhooks (``policy.py``): retry on the schedule,
honour ``Retry-After``, disable on ``410 Gone``, and disable an endpoint whose attempts have all
failed for ``webhook_disable_after_seconds``, with a ``webhook.disabled`` event.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.context import AppContext
from app.db import new_id
from app.kit.time import utc_now
from app.outbound import OutboundGuard
from app.scheduler.heartbeat import Heartbeat, LeaseLost
from app.scheduler.lease import Lease
from app.webhooks import feed, policy, sender, signing
from app.webhooks.models import Webhook, WebhookAttempt, WebhookDelivery
from app.webhooks.repository import UNDELIVERED, WebhookRepository
from app.webhooks.service import guarded, webhook_secret

log = logging.getLogger("certpost.webhooks")

WEBHOOK_LEASE = Lease(Webhook, Webhook.lease_until, Webhook.lease_owner)
FAN_OUT_BATCH = 500
SEND_BATCH = 100  # deliveries per claim; more wait for the next round


async def claim_webhooks(session: AsyncSession, owner: str, now: datetime, lease: timedelta, limit: int) -> list[str]:
    """Enabled webhooks with new events or a due delivery and no live lease; one winner each.

    The one furthest behind in the event log first: by creation, the oldest webhooks, due again
    after every run while events keep coming, took every slot and starved the rest."""
    top = await feed.last_event_id(session)
    due = WebhookRepository.due_clause(now, top)
    ids = list(await session.scalars(
        select(Webhook.id).where(due, WEBHOOK_LEASE.free(now))
        .order_by(Webhook.after_event_id, Webhook.created_at, Webhook.id).limit(limit)))
    return await WEBHOOK_LEASE.claim_many(session, ids, owner, now + lease, claimable=WEBHOOK_LEASE.free(now))


async def run_webhook(ctx: AppContext, webhook_id: str, owner: str) -> None:
    async def keep(session: AsyncSession, until: datetime) -> bool:
        return await WEBHOOK_LEASE.renew(session, webhook_id, owner, until)

    try:
        async with Heartbeat(ctx, keep, name=f"webhook:{webhook_id}"):
            await _fan_out(ctx, webhook_id, owner)
            await _send_due(ctx, webhook_id, owner)
    except LeaseLost:
        return
    async with ctx.sessionmaker() as session:
        await WEBHOOK_LEASE.release(session, webhook_id, owner)
        await session.commit()


async def _fan_out(ctx: AppContext, webhook_id: str, owner: str) -> None:
    """Queue a delivery for each new matching event, in batches, moving the webhook's place."""
    while True:
        async with ctx.sessionmaker() as session:
            webhook = await session.get(Webhook, webhook_id)
            if webhook is None or not webhook.enabled or webhook.lease_owner != owner:
                return
            batch = await feed.new_events(session, after=webhook.after_event_id, kinds=webhook.kinds,
                                          account_id=webhook.account_id, limit=FAN_OUT_BATCH)
            if batch.seen_up_to == webhook.after_event_id:
                return
            now = utc_now()
            detail = webhook.account_id is None  # a platform webhook reads events as an admin does
            for event in batch.events:
                body = signing.payload(event.kind, event.occurred_at, feed.payload_data(event, detail=detail))
                session.add(WebhookDelivery(
                    id=new_id(), webhook_id=webhook_id, event_id=event.id, event_kind=event.kind,
                    body=body.decode(), status="pending", attempts=0, next_attempt_at=now))
            moved = await session.execute(
                update(Webhook).where(Webhook.id == webhook_id, Webhook.lease_owner == owner,
                                      Webhook.after_event_id == webhook.after_event_id)
                .values(after_event_id=batch.seen_up_to).execution_options(synchronize_session=False))
            if moved.rowcount != 1:
                await session.rollback()
                return
            await session.commit()
            if len(batch.events) < FAN_OUT_BATCH:
                return


async def _send_due(ctx: AppContext, webhook_id: str, owner: str) -> None:
    settings = ctx.settings
    async with ctx.sessionmaker() as session:
        webhook = await session.get(Webhook, webhook_id)
        if webhook is None or not webhook.enabled:
            return
        due = await WebhookRepository(session).due_deliveries(webhook_id, utc_now(), SEND_BATCH)
        secret = webhook_secret(ctx.master_key, webhook) if due else ""
        url, guard = webhook.url, (OutboundGuard.for_webhooks(settings) if guarded(webhook) else None)
    if not due:
        return
    limit = asyncio.Semaphore(settings.webhook_concurrency)
    stop = asyncio.Event()  # set once the webhook is disabled: what has not started yet waits

    async def one(delivery: WebhookDelivery) -> None:
        async with limit:
            if stop.is_set():
                return
            stamp = int(utc_now().timestamp())
            body = delivery.body.encode()
            outcome = await sender.send(client, url, signing.headers(secret, delivery.id, stamp, body), body,
                                        guard=guard, timeout=settings.webhook_timeout_seconds)
            if await _record(ctx, webhook_id, owner, delivery.id, outcome):
                stop.set()

    async with httpx.AsyncClient(verify=sender.client_tls(settings.trust_bundle), trust_env=False) as client:
        await asyncio.gather(*(one(d) for d in due))


async def _record(ctx: AppContext, webhook_id: str, owner: str, delivery_id: str, outcome: sender.Outcome) -> bool:
    """Write one attempt and its consequences in one transaction; True when the webhook is disabled
    now (the rest of the batch then stays unsent)."""
    settings = ctx.settings
    async with ctx.sessionmaker() as session:
        # The webhook row first (a write): it serialises this webhook's attempts' counters on both
        # databases, and refuses to write for a worker that lost the lease.
        held = await session.execute(
            update(Webhook).where(Webhook.id == webhook_id, Webhook.lease_owner == owner)
            .values(lease_owner=owner).execution_options(synchronize_session=False))
        if held.rowcount != 1:
            return False
        webhook = await session.get(Webhook, webhook_id)
        delivery = await session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.status not in UNDELIVERED:
            return False
        now = utc_now()
        delivery.attempts += 1
        session.add(WebhookAttempt(id=new_id(), delivery_id=delivery.id, attempt=delivery.attempts, at=now,
                                   status_code=outcome.status_code, error=outcome.error,
                                   duration_ms=outcome.duration_ms, redelivery=delivery.redelivery))
        delivery.last_status_code, delivery.last_error = outcome.status_code, outcome.error
        redelivery, delivery.redelivery = delivery.redelivery, False
        disabled = None
        if policy.succeeded(outcome.status_code):
            delivery.status, delivery.delivered_at, delivery.next_attempt_at = "delivered", now, None
            webhook.failing_since, webhook.consecutive_failures = None, 0
        else:
            webhook.consecutive_failures += 1
            webhook.failing_since = webhook.failing_since or now
            retry_at = None if redelivery else policy.next_attempt(
                now, delivery.attempts, settings.webhook_retry_delays,
                retry_after=policy.retry_after_seconds(outcome.retry_after))
            delivery.status = "retrying" if retry_at else "failed"
            delivery.next_attempt_at = retry_at
            if policy.gone(outcome.status_code):
                disabled = "gone"
            elif policy.should_disable(webhook.failing_since, now, settings.webhook_disable_after_seconds):
                disabled = "failing"
        if disabled and webhook.enabled:
            webhook.enabled, webhook.disabled_reason = False, disabled
            feed.record_disabled(session, owner, webhook, disabled, now)
            log.warning("webhook %s disabled (%s) after %d failed attempts", webhook.id, disabled,
                        webhook.consecutive_failures)
        await session.commit()
        # Disabled by the worker just now, or by a PATCH while this batch was being sent: what
        # has not started yet waits, as ``enabled: false`` promises.
        return disabled is not None or not webhook.enabled
