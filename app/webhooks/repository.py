"""Queries for webhooks, their deliveries and attempts."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.paging import Order, PageRequest, Window, fetch
from app.webhooks.models import Webhook, WebhookAttempt, WebhookDelivery

WEBHOOK_ORDER = Order("webhooks", (Webhook.created_at, Webhook.id))
DELIVERY_ORDER = Order("webhook-deliveries", (WebhookDelivery.event_id, WebhookDelivery.id), descending=True)
UNDELIVERED = ("pending", "retrying")


class WebhookRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def add(self, row) -> None:
        self.session.add(row)
        await self.session.flush()

    async def delete(self, row) -> None:
        await self.session.delete(row)
        await self.session.flush()

    async def webhook(self, webhook_id: str) -> Webhook | None:
        return await self.session.get(Webhook, webhook_id)

    async def webhooks(self, visible: Any, page: PageRequest) -> Window[Webhook]:
        return await fetch(self.session, select(Webhook).where(visible), WEBHOOK_ORDER, page)

    async def delivery(self, webhook_id: str, delivery_id: str) -> WebhookDelivery | None:
        row = await self.session.get(WebhookDelivery, delivery_id)
        return row if row is not None and row.webhook_id == webhook_id else None

    async def deliveries(self, webhook_id: str, status: str | None, page: PageRequest) -> Window[WebhookDelivery]:
        stmt = select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
        if status:
            stmt = stmt.where(WebhookDelivery.status == status)
        return await fetch(self.session, stmt, DELIVERY_ORDER, page)

    async def attempts(self, delivery_ids: list[str]) -> dict[str, list[WebhookAttempt]]:
        found: dict[str, list[WebhookAttempt]] = defaultdict(list)
        if delivery_ids:
            rows = await self.session.scalars(
                select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(delivery_ids))
                .order_by(WebhookAttempt.attempt))
            for row in rows:
                found[row.delivery_id].append(row)
        return found

    # -- the worker's side --------------------------------------------------------------------
    @staticmethod
    def due_clause(now: datetime, last_event_id: int):
        """A webhook has work: events it has not looked at yet, or a delivery due now."""
        due_delivery = exists().where(
            WebhookDelivery.webhook_id == Webhook.id,
            WebhookDelivery.status.in_(UNDELIVERED),
            WebhookDelivery.next_attempt_at <= now,
        )
        return and_(Webhook.enabled.is_(True), or_(Webhook.after_event_id < last_event_id, due_delivery))

    async def due_deliveries(self, webhook_id: str, now: datetime, limit: int) -> list[WebhookDelivery]:
        return list(await self.session.scalars(
            select(WebhookDelivery).where(
                WebhookDelivery.webhook_id == webhook_id,
                WebhookDelivery.status.in_(UNDELIVERED),
                WebhookDelivery.next_attempt_at <= now,
            ).order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.event_id).limit(limit)
        ))
