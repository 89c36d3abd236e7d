"""The Alembic revisions upgrade an empty database, downgrade to nothing, and upgrade again."""

import sqlite3

from app.migrate import downgrade, upgrade
from tests.conftest import _in_thread


def test_upgrade_downgrade_upgrade(tmp_path):
    path = tmp_path / "m.db"
    url = f"sqlite+aiosqlite:///{path}"
    _in_thread(upgrade, url)
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"certificates", "servers", "domains", "bindings", "deployments"} <= tables
    _in_thread(downgrade, url, "base")
    tables = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables <= {"alembic_version"}
    _in_thread(upgrade, url)


def test_migrations_match_the_models(tmp_path):
    """What the revisions build is what the models declare (no forgotten revision)."""
    import asyncio

    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.models import Base

    url = f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"
    _in_thread(upgrade, url)

    async def diff():
        engine = create_async_engine(url)
        async with engine.connect() as conn:
            found = await conn.run_sync(lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata))
        await engine.dispose()
        return found

    assert _in_thread(asyncio.run, diff()) == []
