"""The recording API: an event is written by the transaction that makes the change, or not at all."""

from sqlalchemy import select

from app.accounts.caller import Caller
from app.events import EventKind, record
from app.events.models import Event, EventSubject
from app.events.recorder import REDACTED

ADMIN = Caller(token_id="tok-1", role="admin", account_id=None)
WORKER = Caller.for_worker("host:1:abcd")


async def _events(context) -> list[Event]:
    async with context.sessionmaker() as session:
        return list(await session.scalars(select(Event).order_by(Event.id)))


async def test_an_event_is_written_when_its_transaction_commits(context):
    async with context.sessionmaker() as session:
        await session.execute(select(1))
        record(session, EventKind.CERTIFICATE_UPLOADED, ADMIN, account_id="acct-1",
               subjects={"certificate": "cert-1", "server": None}, data={"names": ["a.example"]})
        record(session, EventKind.TOKEN_CREATED, WORKER, account_id=None, subjects={"token": "tok-2"})
        assert await session.scalar(select(Event.id)) is None  # queued, not yet written
        await session.commit()
    first, second = await _events(context)
    assert first.id < second.id
    assert (first.kind, first.actor_type, first.actor_id, first.actor_role) == ("certificate.uploaded", "token", "tok-1", "admin")
    assert first.subjects == {"certificate": "cert-1"} and first.data == {"names": ["a.example"]}
    assert (second.actor_type, second.actor_id, second.actor_role) == ("worker", "host:1:abcd", None)
    async with context.sessionmaker() as session:
        assert list(await session.scalars(select(EventSubject.event_id).where(EventSubject.subject_id == "cert-1"))) == [first.id]


async def test_a_rolled_back_transaction_leaves_no_event(context):
    async with context.sessionmaker() as session:
        await session.execute(select(1))
        record(session, EventKind.BINDING_SET, ADMIN, account_id=None, subjects={"domain": "d.example"})
        await session.rollback()
        await session.commit()  # a new (empty) transaction: the rolled-back event is not carried over
    assert await _events(context) == []


async def test_key_material_never_reaches_an_event(context):
    async with context.sessionmaker() as session:
        await session.execute(select(1))
        record(session, EventKind.TOKEN_CREATED, ADMIN, account_id=None, subjects={"token": "t"},
               data={"description": "-----BEGIN PRIVATE KEY-----MIGHAgEAMBMG", "nested": [{"x": "my private key"}],
                     "fine": "control panel"})
        await session.commit()
    (event,) = await _events(context)
    assert event.data == {"description": REDACTED, "nested": [{"x": REDACTED}], "fine": "control panel"}


async def test_every_kind_is_documented_with_an_example():
    from app.events.kinds import KINDS
    assert set(KINDS) == set(EventKind)
    assert all(info.description and info.subjects for info in KINDS.values())


async def test_ids_follow_the_commit_order_not_the_order_of_recording(context):
    """A reader resuming "after id X" must not find a smaller id committed later: the id is
    taken when the transaction commits (under a lock on PostgreSQL), not when ``record`` is called."""
    async with context.sessionmaker() as first, context.sessionmaker() as second:
        await first.execute(select(1))
        record(first, EventKind.TOKEN_CREATED, ADMIN, account_id=None, subjects={"token": "recorded-first"})
        await second.execute(select(1))
        record(second, EventKind.TOKEN_CREATED, ADMIN, account_id=None, subjects={"token": "recorded-second"})
        await second.commit()
        await first.commit()
    events = await _events(context)
    assert [e.subjects["token"] for e in events] == ["recorded-second", "recorded-first"]
