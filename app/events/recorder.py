"""Recording an event: the one call every state change makes, inside its own transaction.

    from app.events import EventKind, record
    record(session, EventKind.BINDING_SET, caller, account_id=domain.account_id,
           subjects={"domain": domain.name, "server": server.id, "certificate": cert.id},
           data={"service": "mail", "fingerprint_sha256": cert.fingerprint_sha256})

``record`` checks the payload and queues it on the session's current transaction; the rows are
written by a before-commit hook (``app.db.before_commit``) of that same transaction, so a change
that rolls back leaves no event, and an event is never stored without its change.

Why at commit rather than at once: the order in which ids become visible. An autoincrement id is
taken at INSERT, but transactions commit in another order on PostgreSQL, so a reader asking for
``id > 41`` could see 42 while 41 is still uncommitted, and then never see 41. So, on PostgreSQL,
the hook takes a transaction-scoped advisory lock (``pg_advisory_xact_lock``, held to COMMIT)
before it inserts: between taking an id and committing, no other transaction can take one, so
ids are visible in increasing order. The hook flushes the session's other pending writes first,
so while it holds the lock it waits for nothing else (no deadlock), and the lock is held for a
few statements. SQLite has one writer at a time (the first write takes the database lock until
COMMIT), which gives the same order without a lock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from app.accounts.caller import Caller
from app.db import before_commit
from app.events.kinds import EventKind
from app.events.models import Event, EventSubject
from app.kit.time import utc_now

PENDING = "events"
# pg_advisory_xact_lock key: "certpost events" (any constant; only this module takes it)
ADVISORY_LOCK_KEY = 0x6365727470737431

# What key material looks like in text: PEM armour of any kind. An event's data is read by
# everyone the event is visible to, and by webhook receivers.
_KEY_MARKERS = ("-----begin", "private key")
REDACTED = "[redacted]"


@dataclass(frozen=True)
class Actor:
    """Who made the change: an API token (its id and role), the worker (its id), or an operator
    at the `certpost` command (id "cli")."""

    type: str  # "token" | "worker" | "operator"
    id: str
    role: str | None = None

    @classmethod
    def of(cls, caller: Caller) -> Actor:
        return cls(caller.actor, caller.token_id, caller.role if caller.actor == "token" else None)


def record(session, kind: EventKind, caller: Caller, *, account_id: str | None,
           subjects: Mapping[str, str | None], data: Mapping[str, Any] | None = None) -> None:
    """Queue one event on ``session``'s transaction; it is written when that transaction commits.

    ``caller``: the request's ``Caller``, or ``Caller.for_worker(id)`` in the worker.
    ``account_id``: whose event it is (a customer sees only its own); None for the platform's.
    ``subjects``: role -> id of everything the event is about (None values are dropped).
    ``data``: JSON-ready facts for consumers: names, fingerprints, codes; never key material.
    """
    kind = EventKind(kind)
    dumped = json.dumps(_scrub(dict(data or {})), default=str)
    actor = Actor.of(caller)
    row = {
        "kind": kind.value, "occurred_at": utc_now(), "actor_type": actor.type, "actor_id": actor.id,
        "actor_role": actor.role, "account_id": account_id,
        "subjects": {k: str(v) for k, v in subjects.items() if v is not None},
        "data": json.loads(dumped),  # JSON types only (datetimes as ISO text), as it will be read back
    }
    sync = getattr(session, "sync_session", session)
    info = sync.info.setdefault("transaction", {})
    info.setdefault(PENDING, []).append(row)
    before_commit(sync, PENDING, _write_pending)


def _scrub(value: Any) -> Any:
    """``value`` with every string that looks like key material replaced by ``REDACTED``.

    Services put names, fingerprints and codes here, never PEM; this is the net under that rule
    for text a user typed (a token's description) or an error message that quoted a file:
    redacted rather than refused, so a hostile description is not a 500.
    """
    if isinstance(value, str):
        return REDACTED if any(m in value.lower() for m in _KEY_MARKERS) else value
    if isinstance(value, Mapping):
        return {str(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrub(v) for v in value]
    return value


def pending(session) -> list[dict]:
    """The events queued on ``session``'s open transaction (not yet written)."""
    sync = getattr(session, "sync_session", session)
    return list(sync.info.get("transaction", {}).get(PENDING, []))


def _write_pending(session: Session) -> None:
    rows = session.info.get("transaction", {}).pop(PENDING, [])
    if not rows:
        return
    session.flush()  # the change itself first: from here on this transaction waits for nothing but the lock
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(ADVISORY_LOCK_KEY)))
    for row in rows:
        event_id = session.execute(insert(Event).values(**row).returning(Event.id)).scalar_one()
        ids = sorted(set(row["subjects"].values()))
        if ids:
            session.execute(insert(EventSubject), [{"subject_id": s, "event_id": event_id} for s in ids])


__all__ = ["ADVISORY_LOCK_KEY", "REDACTED", "Actor", "pending", "record"]
