"""HTTP for the event log: list with filters, get one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from app.accounts.caller import Caller
from app.deps import CurrentCaller, Session
from app.events.kinds import EventKind
from app.events.models import Event
from app.events.repository import EventRepository
from app.events.schemas import ActorOut, EventOut, EventPage
from app.events.service import EventService
from app.events.views import data_for
from app.paging import InvalidCursor, PageParams
from app.problems import NotFound, responses
from app.schemas import Instant

router = APIRouter(prefix="/v1", tags=["events"])


async def get_service(session: Session) -> EventService:
    return EventService(EventRepository(session))


Events = Annotated[EventService, Depends(get_service)]


def event_out(row: Event, caller: Caller) -> EventOut:
    """The event as ``caller`` may read it (``app.events.views``: drift errors in detail for admins only)."""
    return EventOut(id=row.id, kind=row.kind, occurred_at=row.occurred_at,
                    actor=ActorOut(type=row.actor_type, id=row.actor_id, role=row.actor_role),
                    account_id=row.account_id, subjects=row.subjects,
                    data=data_for(row.kind, row.data, detail=caller.is_admin))


@router.get("/events", operation_id="listEvents", response_description="A page of events, oldest first",
    summary="List events (the audit trail)", response_model=EventPage, responses=responses(InvalidCursor))
async def list_events(
    caller: CurrentCaller, events: Events, page: PageParams,
    kind: Annotated[list[EventKind] | None, Query(
        description="Only events of these kinds; repeat it (`kind=binding.set&kind=binding.removed`) for several.",
    )] = None,
    subject: Annotated[str | None, Query(
        max_length=255,
        description="Only events about this id, in any role: a certificate's, server's, order's, deployment's or "
        "token's id, or a domain's name (`example.com`).",
    )] = None,
    account_id: Annotated[str | None, Query(
        description="Only this account's events. A customer token sees its own account's events only: "
        "another account's id lists nothing.",
    )] = None,
    since: Annotated[Instant | None, Query(
        description="Only events that occurred at or after this instant (RFC 3339; UTC when no offset).",
    )] = None,
):
    """Every change a token or the worker made, oldest first (by `id`): what, when, who, for which
    account and about what. A customer token sees its own account's events; an admin token sees all,
    the platform's too (servers, server-level certificates, deployments; `account_id` null).

    To follow the log, keep the last `id` handled, or keep paging with `next_cursor`: ids become visible
    in increasing order, so nothing committed later appears before a cursor already passed."""
    window = await events.list(caller, kinds=[k.value for k in kind or ()], subject=subject,
                               account_id=account_id, since=since, page=page)
    return EventPage.of(window, [event_out(r, caller) for r in window.rows])


@router.get("/events/{event_id}", operation_id="getEvent", response_description="The event",
    summary="Get an event", response_model=EventOut, responses=responses(NotFound))
async def get_event(event_id: Annotated[int, Path(ge=1, le=2**63 - 1)], caller: CurrentCaller, events: Events):
    """One event by its id; 404 for an event of another account (a customer token), as for one that does not exist."""
    return event_out(await events.get(caller, event_id), caller)
