"""Row versions: a counter every UPDATE of the row raises, the basis of entity tags.

``version_column()`` is an integer whose ``onupdate`` is ``version + 1`` in SQL, so every
UPDATE of the row raises it, from the ORM or from a Core statement (the outbox's generation
bump, a renewal, a lease), and two concurrent writers each count. The no-op lock ``UPDATE``s
(``ServerRepository.lock``, ``CertificateRepository.lock``) set it to itself, so taking a lock
is not a change. Being computed in SQL, the attribute of an ORM object that was just flushed
is expired: read it with ``row_version`` (a fresh column read, never the identity map).
"""

from __future__ import annotations

from sqlalchemy import Integer, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import mapped_column


def version_column():
    return mapped_column(Integer, default=1, server_default="1", onupdate=literal_column("version") + 1)


async def row_version(session: AsyncSession, model, row_id: str) -> int | None:
    """The row's committed-or-ours version, after flushing pending ORM changes; None if gone."""
    await session.flush()
    return await session.scalar(select(model.version).where(model.id == row_id))
