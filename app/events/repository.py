"""Queries of the event log (writes go through ``recorder.record`` only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.events.models import Event, EventSubject
from app.paging import Order, PageRequest, Window, fetch

EVENT_ORDER = Order("events", (Event.id,))
"""Oldest first, by id: the order ids become visible in (recorder.py), so a page's
``next_cursor`` taken later also finds every event committed since."""


@dataclass(frozen=True)
class EventFilter:
    visible: Any  # Caller.visible_rows(Event.account_id, requested=account_id)
    kinds: tuple[str, ...] = ()
    subject: str | None = None
    since: datetime | None = None


class EventRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def list(self, flt: EventFilter, page: PageRequest) -> Window[Event]:
        """One page. Each filter has its index: (kind, id), (account_id, id), occurred_at, and
        the subject table's primary key (subject_id, event_id)."""
        stmt = select(Event).where(flt.visible)
        if flt.kinds:
            stmt = stmt.where(Event.kind.in_(flt.kinds))
        if flt.subject is not None:
            stmt = stmt.where(Event.id.in_(select(EventSubject.event_id).where(EventSubject.subject_id == flt.subject)))
        if flt.since is not None:
            stmt = stmt.where(Event.occurred_at >= flt.since)
        return await fetch(self.session, stmt, EVENT_ORDER, page)

    async def get(self, event_id: int) -> Event | None:
        return await self.session.get(Event, event_id)
