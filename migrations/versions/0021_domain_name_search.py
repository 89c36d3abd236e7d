"""domain name search: indexes for the TLS list's prefix and substring filters on PostgreSQL

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-01

``GET /v1/domain-tls?prefix=`` and ``?q=`` filter names with ``LIKE``. PostgreSQL reads a
``LIKE 'p%'`` from a btree only in the C collation, and a ``LIKE '%q%'`` from no btree at all:
at 10,000 domains both walked the server's names in order until a page matched (about 30 ms,
docs/performance.md). Here, on PostgreSQL only:

- ``ix_domains_name_pattern``: ``name`` with ``text_pattern_ops``, the index the list's prefix
  bound (``tls_rows.prefix_range``: ``~>=~`` / ``~<~``, code-point order whatever the
  database's collation) is read from;
- ``ix_domains_name_trgm``: a GIN index of ``name``'s trigrams (the ``pg_trgm`` extension,
  postgresql.org/docs/current/pgtrgm.html), which serves ``LIKE '%q%'`` for three characters or
  more. ``CREATE EXTENSION`` needs a role allowed to create it (``pg_trgm`` is a trusted
  extension since PostgreSQL 13: the database's owner may); where it cannot be created the index
  is left out and ``q`` reads as before.

SQLite needs neither: its ``name`` compares in code points (BINARY), so the prefix bound is a
range of the existing ``(server_id, name)`` and ``(account_id, name)`` indexes.
"""

from alembic import op
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    op.execute("CREATE INDEX IF NOT EXISTS ix_domains_name_pattern ON domains (name text_pattern_ops)")
    try:
        with bind.begin_nested():  # a savepoint: a refused extension leaves the migration going on
            bind.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except DBAPIError:
        return
    op.execute("CREATE INDEX IF NOT EXISTS ix_domains_name_trgm ON domains USING gin (name gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX IF EXISTS ix_domains_name_trgm")  # the extension stays: others may use it
    op.execute("DROP INDEX IF EXISTS ix_domains_name_pattern")
