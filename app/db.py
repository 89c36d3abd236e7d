"""Database engine, sessions and the declarative base.

The engine is made by ``create_engine(settings)`` from the application's lifespan (or the CLI),
never at import. SQLite gets WAL mode and enforced foreign keys on every connection.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from datetime import datetime
from pathlib import Path

from sqlalchemy import DateTime, MetaData, String, event, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator

from app.config import Settings
from app.kit.time import as_utc, utc_now

CONNECT_TIMEOUT_SECONDS = 5

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator):
    """Timezone-aware UTC in and out, on SQLite (which stores naive text) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        return None if value is None else as_utc(value)

    def process_result_value(self, value: datetime | None, dialect):
        return None if value is None else as_utc(value)


def new_id() -> str:
    return str(uuid.uuid4())


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime()}  # noqa: RUF012 (SQLAlchemy reads this class attribute)


class IdMixin:
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utc_now)
    updated_at: Mapped[datetime] = mapped_column(default=utc_now, onupdate=utc_now)


def create_engine(settings: Settings) -> AsyncEngine:
    """The engine, with dead pooled connections discarded and no SQL parameters in errors.

    ``pool_pre_ping`` (PostgreSQL) tests each connection as it leaves the pool, so after a database restart
    the first request gets a fresh connection instead of the dead one. ``hide_parameters``
    keeps bound values (sealed key blobs, token hashes) out of exception messages and logs.
    """
    url = settings.resolved_database_url
    common = {"hide_parameters": True}
    if url.startswith("sqlite"):
        secure_sqlite_files(url)
        # No pre-ping: a file does not restart under a pooled connection, and the ping was one
        # more statement (three more thread hops through aiosqlite) on every request.
        engine = create_async_engine(url, connect_args={"timeout": 30}, **common)
        event.listen(engine.sync_engine, "connect", sqlite_pragmas)
        _skip_idle_ends(engine.sync_engine.dialect)
        return engine
    # asyncpg waits 60 s for a connection by default; an outage must be answered sooner.
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_timeout=10, pool_pre_ping=True,
                               connect_args={"timeout": CONNECT_TIMEOUT_SECONDS}, **common)


class Explain(Executable, ClauseElement):
    """``EXPLAIN QUERY PLAN`` (SQLite) / ``EXPLAIN`` (PostgreSQL) of a statement, with its binds
    processed as the statement's own (bench/renewal_scan.py and the index tests read plans)."""

    inherit_cache = False

    def __init__(self, statement):
        self.statement = statement


@compiles(Explain)
def _compile_explain(element: Explain, compiler, **kw) -> str:
    prefix = "EXPLAIN QUERY PLAN " if compiler.dialect.name == "sqlite" else "EXPLAIN "
    return prefix + compiler.process(element.statement, **kw)


class unindexed(FunctionElement):
    """``column`` as a term no index may drive on SQLite: the unary ``+`` that
    sqlite.org/optoverview.html ("Disqualifying WHERE clause terms using unary-"+"") documents
    for this. Without table statistics SQLite takes an equality on an indexed column for a few
    rows; where another condition is the selective one (a certificate list filtered by the names
    it covers, against an account holding 10,000 certificates) that guess reads them all.
    Plain ``column`` on the other databases, whose planners have statistics."""

    inherit_cache = True
    name = "unindexed"

    def __init__(self, column):
        super().__init__(column)
        self.type = column.type


@compiles(unindexed)
def _unindexed(element, compiler, **kw):
    return compiler.process(next(iter(element.clauses)), **kw)


@compiles(unindexed, "sqlite")
def _unindexed_sqlite(element, compiler, **kw):
    return "+" + compiler.process(next(iter(element.clauses)), **kw)


async def query_plan(session: AsyncSession, statement) -> list[str]:
    """The plan the database chooses for ``statement``: one line per row (SQLite's ``detail``)."""
    return [str(row[-1]) for row in (await session.execute(Explain(statement))).all()]


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, or None for an in-memory database or another backend."""
    parsed = make_url(url)
    if not parsed.drivername.startswith("sqlite") or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def secure_sqlite_files(url: str) -> None:
    """Make the SQLite database (and its -wal/-shm) readable by the owner only.

    The file holds sealed private keys and token hashes. SQLite creates it with the process
    umask (0644 usually), and creates -wal/-shm with the database file's own mode (sqlite.org
    "Temporary Files Used By SQLite"), so the database is created 0600 before SQLite opens it,
    and files that already exist with a wider mode are narrowed.
    """
    path = sqlite_path(url)
    if path is None:
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            if file.stat().st_mode & 0o077:
                file.chmod(0o600)


def _sqlite_open(connection) -> bool:
    """Whether SQLite has a transaction open on this (pooled, aiosqlite) connection; True when
    that cannot be read, so the caller then does what it would have done anyway."""
    try:
        raw = connection.dbapi_connection if hasattr(connection, "dbapi_connection") else connection
        return bool(raw._connection.in_transaction)  # aiosqlite reads sqlite3_get_autocommit, no thread hop
    except Exception:  # noqa: BLE001 (not aiosqlite, or closed: let the driver decide, as without this)
        return True


def _skip_idle_ends(dialect) -> None:
    """Send COMMIT/ROLLBACK to SQLite only when it has a transaction open.

    pysqlite opens a transaction at the first write only, so after a read (a TLS status, a
    token lookup) there is nothing to end: sqlite3's own ``commit()``/``rollback()`` then do
    nothing, but through aiosqlite each is still a hand-off to the connection's thread and back
    (one per request, on every connection returned to the pool; issue 8)."""
    rollback, commit = dialect.do_rollback, dialect.do_commit

    def do_rollback(connection) -> None:
        if _sqlite_open(connection):
            rollback(connection)

    def do_commit(connection) -> None:
        if _sqlite_open(connection):
            commit(connection)

    dialect.do_rollback, dialect.do_commit = do_rollback, do_commit


def sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    # 512 KiB of page cache per connection instead of SQLite's 2 MB: the pool holds up to 15
    # connections, each in its own thread, and under 16 concurrent reads of a 10,000-domain
    # server the default caches alone added about 30 MB to `certpost serve` (docs/performance.md,
    # "End to end through the API"). Pages not cached here come from the OS page cache.
    cursor.execute("PRAGMA cache_size=-512")
    cursor.close()


class TransactionalSession(Session):
    """A Session whose ``info["transaction"]`` dict lives exactly as long as one transaction.

    The outbox uses it to bump a server's generation once per transaction, however many
    changes in that transaction touch the server.
    """


@event.listens_for(TransactionalSession, "after_transaction_end")
def _forget_transaction_info(session: Session, transaction) -> None:
    if transaction.parent is None:
        session.info.pop("transaction", None)


BEFORE_COMMIT = "before_commit"


def before_commit(session, key: str, hook) -> None:
    """Run ``hook(sync_session)`` once when this transaction commits, before COMMIT is sent (the
    event log writes its rows there, ``app.events.recorder``). ``key`` makes it once: a second
    registration under the same key replaces the first. A rollback forgets it with the rest
    of the transaction's ``info``."""
    sync = getattr(session, "sync_session", session)
    sync.info.setdefault("transaction", {}).setdefault(BEFORE_COMMIT, {})[key] = hook


@event.listens_for(TransactionalSession, "before_commit")
def _run_before_commit(session: Session) -> None:
    for hook in list(session.info.get("transaction", {}).get(BEFORE_COMMIT, {}).values()):
        hook(session)


AFTER_COMMIT = "after_commit"


def after_commit(session, key: str, hook) -> None:
    """Run ``hook()`` once after this transaction has committed (a revoked token leaves the
    process's token cache once the revocation is visible to every other connection). ``key``
    makes it once; a rollback forgets it."""
    sync = getattr(session, "sync_session", session)
    sync.info.setdefault("transaction", {}).setdefault(AFTER_COMMIT, {})[key] = hook


@event.listens_for(TransactionalSession, "after_commit")
def _run_after_commit(session: Session) -> None:
    for hook in list(session.info.get("transaction", {}).get(AFTER_COMMIT, {}).values()):
        hook()


WORKER_WORK = "worker_work"


def record_worker_work(session) -> None:
    """The transaction gave the worker something to do (a deployment, an order): the request's
    session wakes the embedded worker after it commits (``app.deps.get_session``)."""
    session.info.setdefault("transaction", {})[WORKER_WORK] = True


def has_worker_work(session) -> bool:
    return bool(session.info.get("transaction", {}).get(WORKER_WORK))


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False, sync_session_class=TransactionalSession)
