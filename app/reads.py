"""Read-only statements of the hot read routes, each in one trip to the database (issue 8).

``Reads.execute(statement, params)`` has the shape of ``AsyncConnection.execute`` and returns a
buffered result (``first()``, ``all()``, iteration), so a repository runs on it unchanged
(``app.deps.get_reader`` hands it to the TLS status's repositories). Nothing may be written
through it: there is no transaction and no commit.

Why not the request's pooled connection of the main engine:

- **SQLite**: aiosqlite hands each step of a statement (cursor, execute, fetch, close) to the
  connection's thread and back, about four hand-offs a statement, each waiting for the GIL
  under load. Here the statement runs on a plain ``sqlite3`` connection (SQLAlchemy's sync
  engine over the same file, WAL) inside **one** executor call. The connections are
  ``PRAGMA query_only`` (sqlite.org/pragma.html#pragma_query_only): a write is refused, not
  committed. pysqlite opens no transaction for a SELECT, so each statement reads its own WAL
  snapshot, as the session's SELECTs do.
- **PostgreSQL**: the main engine pre-pings every connection it lends (a ``SELECT 1`` round
  trip before the statement). This engine does not, and runs in AUTOCOMMIT (no BEGIN/COMMIT;
  at READ COMMITTED a SELECT takes its own snapshot anyway), so a read is one round trip (the
  asyncpg adapter keeps the prepared statement). Its sessions start with
  ``default_transaction_read_only`` on, so a write is refused there too. A pooled connection the server dropped
  (a restart, ``pg_terminate_backend``, an idle timeout) fails at its first statement: SQLAlchemy
  reports that as a disconnect, invalidates the pool's older connections, and the statement is
  retried **once** on a fresh one. ``pool_recycle`` replaces connections before common idle
  timeouts drop them. A database that stays down fails the retry too, and the outage handlers
  answer 503 as for any other statement (app/outage.py).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.engine import Result
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.db import CONNECT_TIMEOUT_SECONDS, sqlite_pragmas

SQLITE_THREADS = 4  # concurrent SQLite reads: one connection (and page cache) per thread
# As many kept connections as a loaded process has reads at once (wrk's 16 in bench/reads.py):
# an overflow connection is closed when returned, so a smaller pool opened and closed a
# connection (asyncpg's start-up and SQLAlchemy's on-connect queries) in every burst, which
# cost a TLS status about 0.6 ms of CPU more under 16 concurrent readers (docs/performance.md).
PG_POOL_SIZE, PG_MAX_OVERFLOW = 16, 4
RECYCLE_SECONDS = 1800  # below the usual idle timeouts of proxies and firewalls


class Reads:
    """One read-only statement at a time, in one hand-off (SQLite) or one round trip (PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._sync: Engine | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._async: AsyncEngine | None = None
        self.dialect_name = make_url(url).get_backend_name()

    async def execute(self, statement, params: dict | None = None) -> Result:
        if self.dialect_name == "sqlite":
            loop = asyncio.get_running_loop()
            frozen = await loop.run_in_executor(self._sqlite_executor(), partial(self._run_sync, statement, params))
            return frozen()
        return await self._run_async(statement, params)

    @property
    def engine(self) -> Engine:
        """The (sync) engine the statements run on, where SQLAlchemy's events attach."""
        if self.dialect_name == "sqlite":
            self._sqlite_executor()
            return self._sync
        return self._engine().sync_engine

    # -- SQLite --------------------------------------------------------------------------------

    def _sqlite_executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            url = make_url(self._url).set(drivername="sqlite")
            self._sync = create_engine(url, pool_size=SQLITE_THREADS, max_overflow=0, hide_parameters=True,
                                       connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(self._sync, "connect", self._sqlite_connect)
            self._executor = ThreadPoolExecutor(max_workers=SQLITE_THREADS, thread_name_prefix="certpost-read")
        return self._executor

    def _sqlite_connect(self, dbapi_connection, record) -> None:
        sqlite_pragmas(dbapi_connection, record)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    def _run_sync(self, statement, params):
        with self._sync.connect() as conn:
            return conn.execute(statement, params or {}).freeze()

    # -- PostgreSQL ----------------------------------------------------------------------------

    def _engine(self) -> AsyncEngine:
        if self._async is None:
            self._async = create_async_engine(
                self._url, pool_size=PG_POOL_SIZE, max_overflow=PG_MAX_OVERFLOW, pool_timeout=10,
                pool_recycle=RECYCLE_SECONDS, isolation_level="AUTOCOMMIT", hide_parameters=True,
                connect_args={"timeout": CONNECT_TIMEOUT_SECONDS,
                              "server_settings": {"default_transaction_read_only": "on"}})
        return self._async

    async def _run_async(self, statement, params) -> Result:
        engine = self._engine()
        for attempt in (1, 2):
            try:
                async with engine.connect() as conn:
                    return (await conn.execute(statement, params or {})).freeze()()
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._sync.dispose()
        if self._async is not None:
            await self._async.dispose()
