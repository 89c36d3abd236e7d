"""Which database errors are an outage (503) and which are a bug (500), from real errors."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from app.outage import is_database_outage
from tests.support.ports import free_port


async def _error_of(engine, statement: str) -> BaseException:
    with pytest.raises(Exception) as raised:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    return raised.value


async def test_an_unreachable_postgresql_is_an_outage():
    engine = create_async_engine(f"postgresql+asyncpg://nobody@127.0.0.1:{free_port()}/none")
    try:
        assert is_database_outage(await _error_of(engine, "SELECT 1"))
    finally:
        await engine.dispose()


async def test_a_locked_sqlite_database_is_an_outage(tmp_path):
    path = tmp_path / "locked.db"
    holder = create_async_engine(f"sqlite+aiosqlite:///{path}")
    waiter = create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 0.1})
    try:
        async with holder.connect() as conn:
            await conn.execute(text("CREATE TABLE t (x INTEGER)"))
            await conn.commit()
            await conn.execute(text("BEGIN EXCLUSIVE"))
            error = await _error_of(waiter, "SELECT * FROM t")
            await conn.rollback()
        assert "locked" in str(error) and is_database_outage(error)
    finally:
        await holder.dispose()
        await waiter.dispose()


async def test_bugs_are_not_an_outage(context):
    missing = await _error_of(context.engine, "SELECT * FROM no_such_table_here")
    assert isinstance(missing, DBAPIError) and not is_database_outage(missing)
    syntax = await _error_of(context.engine, "SELEKT 1")
    assert not is_database_outage(syntax)
