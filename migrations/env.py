"""Alembic environment: runs the revisions on the async engine certpost itself uses.

The URL comes from the Alembic config's ``sqlalchemy.url`` (set by ``app.migrate``), so the
CLI, the service and the tests all migrate the same way.
"""

import asyncio
import warnings

from alembic import context
from sqlalchemy import exc, pool
from sqlalchemy.ext.asyncio import create_async_engine

from app.models import Base

target_metadata = Base.metadata


def _configure_and_run(connection) -> None:
    # SQLite's batch mode reflects tables, and SQLAlchemy cannot reflect 0009's expression index
    # (coalesce(account_id, '')); the revisions that rebuild `certificates` put it back
    # themselves (0010), so the warning says nothing an operator can act on.
    warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index",
                            exc.SAWarning)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_configure_and_run)
    await engine.dispose()


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
    else:
        asyncio.run(_run_online())


run()
