"""What a webhook reads from the event log (``app.events``), and the one event it records.

The log's ids become visible in increasing order (``app.events.recorder``), so a webhook keeps
one number, ``after_event_id``: every event with a larger id is new to it. Fan-out reads the
highest id first and then the matching events up to it; if fewer than a batch match, the webhook
has seen everything up to that id, whatever the kinds, and moves there in one step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.caller import Caller
from app.events import KINDS, EventKind, record
from app.events.models import Event
from app.events.views import data_for


def known_kinds() -> frozenset[str]:
    return frozenset(kind.value for kind in KINDS)


async def last_event_id(session: AsyncSession) -> int:
    return int(await session.scalar(select(func.max(Event.id))) or 0)


@dataclass(frozen=True)
class Batch:
    events: list[Event]
    seen_up_to: int  # the webhook's new ``after_event_id`` once these are queued


async def new_events(session: AsyncSession, *, after: int, kinds: list[str], account_id: str | None,
                     limit: int) -> Batch:
    """The next events for a webhook: of its kinds, of its account (all accounts' when None)."""
    top = await last_event_id(session)
    if top <= after:
        return Batch([], after)
    stmt = select(Event).where(Event.id > after, Event.id <= top, Event.kind.in_(kinds))
    if account_id is not None:
        stmt = stmt.where(Event.account_id == account_id)
    events = list(await session.scalars(stmt.order_by(Event.id).limit(limit)))
    return Batch(events, events[-1].id if len(events) == limit else top)


def payload_data(event: Event, *, detail: bool) -> dict[str, Any]:
    """The ``data`` of the webhook body: the event's own data with its id, account and subjects.
    ``detail``: as an admin reads it (a platform webhook); an account's webhook gets what that
    account's tokens read (``app.events.views``)."""
    return {**data_for(event.kind, event.data, detail=detail), "event_id": event.id, "account_id": event.account_id,
            "subjects": event.subjects,
            "actor": {"type": event.actor_type, "id": event.actor_id, "role": event.actor_role}}


def record_disabled(session: AsyncSession, worker: str, webhook, reason: str, at: datetime) -> None:
    # An admin's webhook may name an internal URL: its event is the platform's, not the account's.
    account_id = None if webhook.admin_owned else webhook.account_id
    record(session, EventKind.WEBHOOK_DISABLED, Caller.for_worker(worker), account_id=account_id,
           subjects={"webhook": webhook.id},
           data={"url": public_url(webhook.url), "reason": reason, "consecutive_failures": webhook.consecutive_failures,
                 "failing_since": webhook.failing_since, "disabled_at": at})


def public_url(url: str) -> str:
    """The URL without its query: receivers often carry a shared key there (``?key=…``), and an
    event is read by every token of the account and by every webhook subscribed to it."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
