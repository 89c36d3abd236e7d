"""Telling "the database is away" from a bug, so that an outage is answered 503, not 500.

A restarted or unreachable database shows up as many exception types, depending on where it
is met: a refused connect (``ConnectionRefusedError``, raw, from the pool), PostgreSQL's class
57 "operator intervention" (``57P01 admin_shutdown`` while it stops, ``57P03
cannot_connect_now`` while it starts; PostgreSQL manual, Appendix A "Error Codes") or class 08
"connection exception", a connection that asyncpg finds closed mid-query, the pool's own
timeout, SQLite's "database is locked". SQLAlchemy wraps some of these (``DBAPIError`` with
``orig``), not all, so ``is_database_outage`` walks the whole chain of causes. A bug that
SQLAlchemy files under the same class (SQLite's "no such table" is an ``OperationalError``
too) stays a 500 with its traceback.

``is_database_outage`` is pure. ``install_outage_handlers`` answers such errors with the 503
problem ``database_unavailable`` and ``Retry-After``, logging one line per outage.
"""

from __future__ import annotations

import logging
import socket
import sqlite3
import time

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import SQLAlchemyError

from app.problems import DatabaseUnavailable, internal_error, problem_response

log = logging.getLogger("certpost")

_OUTAGE_TYPES: tuple[type[BaseException], ...] = (
    sa_exc.TimeoutError,  # the pool had no connection to give within pool_timeout
    sa_exc.DisconnectionError,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
)

# SQLite reports a busy or unreachable file with the same class as a bug ("no such table"):
# only these messages mean "try again" (sqlite.org/rescode.html: SQLITE_BUSY, SQLITE_CANTOPEN,
# SQLITE_IOERR, SQLITE_FULL).
_SQLITE_OUTAGE_MESSAGES = ("database is locked", "unable to open database", "disk i/o error",
                           "database or disk is full")


def _asyncpg_outage_types() -> tuple[type[BaseException], ...]:
    try:
        import asyncpg
        from asyncpg import exceptions as pg
    except ImportError:  # SQLite-only installation
        return ()
    # InternalClientError: asyncpg's protocol state after the server vanished mid-operation
    # ("cannot switch to state 12; another operation is in progress").
    return (pg.PostgresConnectionError, pg.OperatorInterventionError, asyncpg.InterfaceError,
            pg.InternalClientError)


def _chain(exc: BaseException):
    seen: set[int] = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend((current.__cause__, current.__context__, getattr(current, "orig", None)))


def is_database_outage(exc: BaseException) -> bool:
    """True when ``exc`` (or anything that caused it) says the database cannot be reached now."""
    outage = _OUTAGE_TYPES + _asyncpg_outage_types()
    for item in _chain(exc):
        if isinstance(item, sa_exc.DBAPIError) and item.connection_invalidated:
            return True
        if isinstance(item, outage):
            return True
        if isinstance(item, sqlite3.OperationalError) and str(item).lower().startswith(_SQLITE_OUTAGE_MESSAGES):
            return True
    return False


class _OutageLog:
    """One warning line per outage (at most one per ``quiet`` seconds), no traceback per request."""

    def __init__(self, quiet: float = 30.0):
        self.quiet = quiet
        self.last = float("-inf")

    def seen(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self.last >= self.quiet:
            self.last = now
            first = str(exc).splitlines()[0][:200] if str(exc) else ""
            log.warning("database unavailable (%s: %s); answering 503 database_unavailable until it is back",
                        type(exc).__name__, first)


def database_unavailable(outage_log: _OutageLog | None = None, exc: BaseException | None = None,
                         **extra) -> JSONResponse:
    """The 503 answer for an outage, with ``Retry-After`` (RFC 9110 section 10.2.3)."""
    if outage_log is not None and exc is not None:
        outage_log.seen(exc)
    problem = DatabaseUnavailable("The database cannot be reached right now; retry shortly.", **extra)
    return problem_response(503, problem.body(), problem.headers())


def install_outage_handlers(app: FastAPI, *, asyncpg_errors: bool = True) -> None:
    """Database (and connection) errors get their own handler, not the catch-all ``Exception``
    one: Starlette re-raises after that one, which prints a traceback per request in the
    server's log. An outage is expected operation: 503, one log line."""
    outage_log = _OutageLog()
    app.state.outage_log = outage_log

    async def _database_error(request: Request, exc: Exception):
        if isinstance(exc, DatabaseUnavailable) or is_database_outage(exc):
            return database_unavailable(outage_log, exc)
        return internal_error(request, exc)

    app.add_exception_handler(DatabaseUnavailable, _database_error)
    # Without PostgreSQL (asyncpg_errors=False) asyncpg is never imported: 2.4 MB less RSS.
    for kind in (SQLAlchemyError, OSError, *(_asyncpg_error_types() if asyncpg_errors else ())):
        app.add_exception_handler(kind, _database_error)


def _asyncpg_error_types() -> tuple[type[Exception], ...]:
    try:
        import asyncpg
    except ImportError:
        return ()
    return (asyncpg.PostgresError, asyncpg.InterfaceError)
