"""A database error never carries the statement's bound values (sealed keys, token hashes)."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

SECRET = "sealed-key-blob-0123456789abcdef"


async def test_a_database_error_shows_no_parameters(context, caplog):
    """The engine the service builds (``create_engine``) reports the SQL, never the values."""
    caplog.set_level(logging.INFO)  # the level `certpost serve` logs at
    with pytest.raises(DBAPIError) as raised:
        async with context.engine.begin() as conn:
            # A duplicate primary key: the database refuses it, with our value bound.
            await conn.execute(text("INSERT INTO accounts (id, name, created_at, updated_at) "
                                    "VALUES (:id, :name, :now, :now)"),
                               {"id": SECRET[:36], "name": SECRET, "now": "2026-01-01 00:00:00+00:00"})
            await conn.execute(text("INSERT INTO accounts (id, name, created_at, updated_at) "
                                    "VALUES (:id, :name, :now, :now)"),
                               {"id": SECRET[:36], "name": SECRET, "now": "2026-01-01 00:00:00+00:00"})
    message = str(raised.value)
    logging.getLogger("certpost").error("database error: %s", message)
    assert "hidden due to hide_parameters" in message
    assert SECRET not in message and SECRET not in caplog.text
