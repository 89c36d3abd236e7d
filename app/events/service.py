"""Reading the event log with the caller's visibility: a customer sees its own account's events."""

from __future__ import annotations

from datetime import datetime

from app.accounts.caller import Caller
from app.events.models import Event
from app.events.repository import EventFilter, EventRepository
from app.paging import PageRequest, Window


class EventService:
    def __init__(self, repo: EventRepository):
        self.repo = repo

    async def list(self, caller: Caller, *, kinds: list[str] | None, subject: str | None, account_id: str | None,
                   since: datetime | None, page: PageRequest) -> Window[Event]:
        """Platform events (no account) are for admins only: ``visible_rows`` without ``shared``."""
        flt = EventFilter(visible=caller.visible_rows(Event.account_id, requested=account_id),
                          kinds=tuple(dict.fromkeys(kinds or ())), subject=subject, since=since)
        return await self.repo.list(flt, page)

    async def get(self, caller: Caller, event_id: int) -> Event:
        return caller.visible(await self.repo.get(event_id), "event")
