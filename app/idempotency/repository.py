"""Every query on ``idempotency_keys``: claim a key, store the first response, release it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.db import new_id
from app.idempotency.models import IdempotencyKey

PURGE_BATCH = 100


@dataclass(frozen=True)
class Claimed:
    """What claiming a key found: ``claimed`` (ours to run), ``stored`` (replay ``row``),
    ``reused`` (another request's key) or ``in_flight`` (its first request still runs)."""

    outcome: str
    row_id: str | None = None
    row: IdempotencyKey | None = None


class IdempotencyRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def purge_expired(self, now: datetime) -> None:
        """Drop a batch of expired keys (an index range on ``expires_at``): every claim does a
        little, so the table holds about one day of creations and needs no job of its own."""
        ids = select(IdempotencyKey.id).where(IdempotencyKey.expires_at <= now).limit(PURGE_BATCH)
        await self.session.execute(delete(IdempotencyKey).where(IdempotencyKey.id.in_(ids.scalar_subquery())))

    async def claim(self, scope: str, key: str, fingerprint: str, owner: str, now: datetime,
                    lease: timedelta, ttl: timedelta) -> Claimed:
        """Insert the key as in flight for ``owner``, or say what holds it.

        ``INSERT .. ON CONFLICT DO NOTHING`` on the unique (scope, key): of concurrent claims one
        inserts, on PostgreSQL as on SQLite. A key whose request died (lease run out, nothing
        stored) is taken over by one conditional ``UPDATE``.
        """
        await self.purge_expired(now)
        dialect = postgresql if self.session.bind.dialect.name == "postgresql" else sqlite
        row_id = new_id()
        inserted = await self.session.scalar(
            dialect.insert(IdempotencyKey)
            .values(id=row_id, scope=scope, key=key, fingerprint=fingerprint, owner=owner,
                    lease_until=now + lease, created_at=now, expires_at=now + ttl)
            .on_conflict_do_nothing(index_elements=["scope", "key"])
            .returning(IdempotencyKey.id)
        )
        if inserted is not None:
            return Claimed("claimed", row_id)
        row = (await self.session.execute(
            select(IdempotencyKey).where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
            .execution_options(populate_existing=True)
        )).scalar_one_or_none()
        if row is None:  # purged between the two statements: the caller tries again
            return Claimed("in_flight")
        if row.fingerprint != fingerprint:
            return Claimed("reused", row.id)
        if row.status is not None:
            return Claimed("stored", row.id, row)
        taken = await self.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == row.id, IdempotencyKey.status.is_(None), IdempotencyKey.lease_until < now)
            .values(owner=owner, lease_until=now + lease)
            .execution_options(synchronize_session=False)
        )
        return Claimed("claimed", row.id) if taken.rowcount else Claimed("in_flight", row.id)

    async def store(self, row_id: str, owner: str, status: int, headers: dict[str, str],
                    ciphertext: bytes, wrapped: bytes, master_key_id: str) -> bool:
        """The first response, in the transaction that created the resource; False when the
        lease was lost (another request took the key over), so the creation must not commit."""
        result = await self.session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == row_id, IdempotencyKey.owner == owner, IdempotencyKey.status.is_(None))
            .values(status=status, headers=headers, body_ciphertext=ciphertext, body_wrapped=wrapped,
                    master_key_id=master_key_id, owner=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)

    async def release(self, row_id: str, owner: str) -> None:
        """Forget a claim whose request failed: nothing was created, the key may be used again."""
        await self.session.execute(
            delete(IdempotencyKey)
            .where(IdempotencyKey.id == row_id, IdempotencyKey.owner == owner, IdempotencyKey.status.is_(None))
        )
