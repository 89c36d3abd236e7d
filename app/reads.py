"""Read-only statements of the hot read routes, each in one trip to the database (issue 8).

``Reads.execute(statement, params)`` has the shape of ``AsyncConnection.execute`` and returns the
statement's rows, fetched (``Rows``: ``first()``, ``all()``, ``scalar()``, ``scalars()``,
iteration), so a repository runs on it unchanged (``app.deps.get_reader`` hands it to the
repositories of the TLS status and of the domain and certificate lists). Nothing may be written
through it: there is no transaction and no commit.

Why not the request's pooled connection of the main engine:

- **SQLite**: aiosqlite hands each step of a statement (cursor, execute, fetch, close) to the
  connection's thread and back, about four hand-offs a statement, each waiting for the GIL
  under load. Here the statement runs on a plain ``sqlite3`` connection (SQLAlchemy's sync
  engine over the same file, WAL, AUTOCOMMIT: pysqlite never opens a transaction, so each
  statement reads the latest committed snapshot, as the session's SELECTs do) **on the event
  loop's own thread**. The connections are ``PRAGMA query_only``
  (sqlite.org/pragma.html#pragma_query_only): a write is refused, not committed. Why not in a
  thread: these statements are index lookups of one domain or one page, tens to hundreds of
  microseconds in SQLite, and SQLAlchemy's work around them holds the GIL wherever it runs; the
  hand-off to an executor thread and back (a queue, a futex wake-up, the loop's self-pipe, two
  context switches and the GIL changing threads twice) cost more CPU than the lookup itself
  (docs/performance.md, section 9). The loop must never wait on a lock, though: a WAL reader is
  not blocked by writers, but SQLite can answer SQLITE_BUSY while a connection recovers the WAL
  or holds the file exclusively, so the loop's connection has no busy timeout, and a statement
  it meets busy runs again in an executor thread on a connection that waits as long as the
  main engine's do (``busy_timeout`` 30 s).
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

The rows are fetched before the connection goes back (``Rows``), rather than kept in a frozen
``Result``, whose re-built metadata cost as much as the rest of a TLS status's statement.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.db import CONNECT_TIMEOUT_SECONDS, sqlite_pragmas

SQLITE_THREADS = 4  # SQLite reads the loop met busy, at once: one connection (and page cache) per thread
SQLITE_BUSY, SQLITE_LOCKED = 5, 6  # primary result codes (sqlite.org/rescode.html); extended codes add high bits
# As many kept connections as a loaded process has reads at once (wrk's 16 in bench/reads.py):
# an overflow connection is closed when returned, so a smaller pool opened and closed a
# connection (asyncpg's start-up and SQLAlchemy's on-connect queries) in every burst, which
# cost a TLS status about 0.6 ms of CPU more under 16 concurrent readers (docs/performance.md).
PG_POOL_SIZE, PG_MAX_OVERFLOW = 16, 4
RECYCLE_SECONDS = 1800  # below the usual idle timeouts of proxies and firewalls


class Rows(list):
    """A statement's rows, fetched: the part of SQLAlchemy's ``Result`` the hot reads use."""

    def all(self) -> list:
        return list(self)

    def first(self):
        return self[0] if self else None

    def scalar(self):
        return self[0][0] if self else None

    def scalars(self) -> list:
        return [row[0] for row in self]


def _rows(result) -> Rows:
    return Rows(result.all() if result.returns_rows else ())


def _busy(exc: OperationalError) -> bool:
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)


class Reads:
    """One read-only statement at a time: on SQLite on the loop's thread (a busy one in a
    thread), on PostgreSQL in one round trip."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._loop_engine: Engine | None = None
        self._thread_engine: Engine | None = None
        self._loop_connection: Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._async: AsyncEngine | None = None
        self.dialect_name = make_url(url).get_backend_name()

    async def execute(self, statement, params: dict | None = None) -> Rows:
        if self.dialect_name != "sqlite":
            return await self._run_async(statement, params)
        try:
            return self._run_on_loop(statement, params)
        except OperationalError as exc:
            if not _busy(exc):
                raise
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._sqlite_executor(), partial(self._run_sync, statement, params))

    @property
    def engine(self) -> Engine:
        """The (sync) engine the statements run on, where SQLAlchemy's events attach."""
        if self.dialect_name == "sqlite":
            return self._sqlite_engine(on_loop=True)
        return self._engine().sync_engine

    # -- SQLite --------------------------------------------------------------------------------

    def _sqlite_engine(self, *, on_loop: bool) -> Engine:
        """The loop's engine (one connection that never waits on a lock) or the executor's (one
        connection per thread, waiting up to 30 s as the main engine's do)."""
        engine = self._loop_engine if on_loop else self._thread_engine
        if engine is None:
            url = make_url(self._url).set(drivername="sqlite")
            engine = create_engine(url, pool_size=1 if on_loop else SQLITE_THREADS, max_overflow=0,
                                   hide_parameters=True, isolation_level="AUTOCOMMIT",
                                   connect_args={"timeout": 0 if on_loop else 30, "check_same_thread": False})
            event.listen(engine, "connect", self._loop_connect if on_loop else self._thread_connect)
            if on_loop:
                self._loop_engine = engine
            else:
                self._thread_engine = engine
        return engine

    def _thread_connect(self, dbapi_connection, record) -> None:
        sqlite_pragmas(dbapi_connection, record)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA query_only=ON")
        cursor.close()

    def _loop_connect(self, dbapi_connection, record) -> None:
        self._thread_connect(dbapi_connection, record)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=0")  # sqlite_pragmas set the main engine's 30 s
        cursor.close()

    def _run_on_loop(self, statement, params) -> Rows:
        """On the loop's own connection, kept from one statement to the next (nothing else uses
        it: the loop runs one statement at a time); checked in again after any error."""
        if self._loop_connection is None:
            self._loop_connection = self._sqlite_engine(on_loop=True).connect()
        try:
            return _rows(self._loop_connection.execute(statement, params or {}))
        except BaseException:
            connection, self._loop_connection = self._loop_connection, None
            connection.close()
            raise

    def _sqlite_executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=SQLITE_THREADS, thread_name_prefix="certpost-read")
        return self._executor

    def _run_sync(self, statement, params) -> Rows:
        with self._sqlite_engine(on_loop=False).connect() as conn:
            return _rows(conn.execute(statement, params or {}))

    # -- PostgreSQL ----------------------------------------------------------------------------

    def _engine(self) -> AsyncEngine:
        if self._async is None:
            self._async = create_async_engine(
                self._url, pool_size=PG_POOL_SIZE, max_overflow=PG_MAX_OVERFLOW, pool_timeout=10,
                pool_recycle=RECYCLE_SECONDS, isolation_level="AUTOCOMMIT", hide_parameters=True,
                connect_args={"timeout": CONNECT_TIMEOUT_SECONDS,
                              "server_settings": {"default_transaction_read_only": "on"}})
        return self._async

    async def _run_async(self, statement, params) -> Rows:
        engine = self._engine()
        for attempt in (1, 2):
            try:
                async with engine.connect() as conn:
                    return _rows(await conn.execute(statement, params or {}))
            except DBAPIError as exc:
                if attempt == 2 or not exc.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._loop_connection is not None:
            self._loop_connection.close()
            self._loop_connection = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        for engine in (self._loop_engine, self._thread_engine):
            if engine is not None:
                engine.dispose()
        if self._async is not None:
            await self._async.dispose()
