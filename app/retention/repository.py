"""The pruning statements: one bounded batch each, a handful of statements whatever its size.

Each batch picks at most ``limit`` ids through an index on what it filters by, deletes their
children explicitly (so neither database walks a cascade row by row, and the counts are
known), then the rows themselves with the condition re-checked, so a row that changed between
the two statements (a delivery asked to be redelivered) stays. The caller commits each batch
on its own: no transaction holds locks on more than one batch.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from sqlalchemy import and_, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.deployments.models import DUE, STATUSES, Deployment, DeploymentAttempt
from app.events.models import Event, EventSubject
from app.servers.models import Server
from app.webhooks.models import WebhookAttempt, WebhookDelivery

FINISHED_DELIVERIES = ("delivered", "failed")
FINISHED_DEPLOYMENTS = tuple(s for s in STATUSES if s not in DUE)  # applied, failed, superseded
_NO_SYNC = {"synchronize_session": False}


def events_before(before: datetime, limit: int):
    """Ids of up to ``limit`` events that occurred before ``before``: ``ix_events_occurred_at``."""
    return select(Event.id).where(Event.occurred_at < before).order_by(Event.occurred_at).limit(limit)


def finished_deliveries(before: datetime):
    """Delivered or failed deliveries last changed before ``before``:
    ``ix_webhook_deliveries_status_updated_at``."""
    return and_(WebhookDelivery.status.in_(FINISHED_DELIVERIES), WebhookDelivery.updated_at < before)


class RetentionRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def _delete(self, stmt) -> int:
        return (await self.session.execute(stmt.execution_options(**_NO_SYNC))).rowcount or 0

    async def prune_events(self, before: datetime, limit: int) -> int:
        """Events that occurred before ``before`` (``ix_events_occurred_at``), with their subject
        rows (``ix_event_subjects_event_id``). Ids are never reused, so a cursor or a webhook's
        ``after_event_id`` past a pruned id still means "everything after it"."""
        ids = list(await self.session.scalars(events_before(before, limit)))
        if not ids:
            return 0
        await self._delete(delete(EventSubject).where(EventSubject.event_id.in_(ids)))
        return await self._delete(delete(Event).where(Event.id.in_(ids), Event.occurred_at < before))

    async def prune_deliveries(self, before: datetime, limit: int) -> tuple[Counter, int]:
        """Delivered or failed webhook deliveries last changed before ``before``
        (``ix_webhook_deliveries_status_updated_at``) and their attempts: (deliveries pruned by
        status, attempts pruned). Pending and retrying ones stay, however old."""
        finished = finished_deliveries(before)
        ids = list(await self.session.scalars(select(WebhookDelivery.id).where(finished).limit(limit)))
        if not ids:
            return Counter(), 0
        still = select(WebhookDelivery.id).where(WebhookDelivery.id.in_(ids), finished)
        attempts = await self._delete(delete(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(still)))
        gone = await self.session.execute(
            delete(WebhookDelivery).where(WebhookDelivery.id.in_(ids), finished)
            .returning(WebhookDelivery.status).execution_options(**_NO_SYNC))
        return Counter(gone.scalars()), attempts

    async def prune_deployments(self, keep: int, limit: int) -> tuple[int, int]:
        """Finished deployments older than each server's ``keep`` newest generations, and their
        attempts: (deployments, attempts) pruned.

        Kept whatever their age: every pending or retrying row (the outbox: the worker delivers
        it); the newest row of each server (``POST .../deployments`` answers with it, /metrics
        reads its status); the row at the server's ``applied_generation`` (its ``failed_names``
        are the names the agent holds back now: TLS status and /metrics join it). Nothing else
        points at a deployment: attempts are its children, and events name it without a key;
        rolling back is the agent's own (it keeps the previous files, app/agent/apply.py), not
        an older row's. The ``keep``-th newest generation is found through the unique
        (server_id, generation) index."""
        newer = aliased(Deployment)
        nth = (select(newer.generation).where(newer.server_id == Deployment.server_id)
               .order_by(newer.generation.desc()).offset(keep - 1).limit(1)
               .correlate(Deployment).scalar_subquery())
        prunable = and_(Deployment.status.in_(FINISHED_DEPLOYMENTS), Deployment.generation < nth,
                        Deployment.generation != Server.applied_generation)
        ids = list(await self.session.scalars(
            select(Deployment.id).join(Server, Server.id == Deployment.server_id).where(prunable).limit(limit)))
        if not ids:
            return 0, 0
        attempts = await self._delete(delete(DeploymentAttempt).where(DeploymentAttempt.deployment_id.in_(ids)))
        rows = await self._delete(delete(Deployment).where(
            Deployment.id.in_(ids), Deployment.status.in_(FINISHED_DEPLOYMENTS)))
        return rows, attempts
