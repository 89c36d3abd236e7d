"""FastAPI dependencies: the request's session (the one place that commits), the caller."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.accounts.caller import Caller
from app.accounts.repository import AccountRepository
from app.accounts.service import AccountService
from app.context import AppContext
from app.db import has_worker_work
from app.reads import Reads


async def get_context(request: Request) -> AppContext:
    """Dependencies are ``async def`` even when they do not await (here and each router's
    ``get_service``): FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop
    per dependency per request (seven of them made up a third of a TLS status's time)."""
    return request.app.state.ctx


Context = Annotated[AppContext, Depends(get_context)]


async def get_session(ctx: Context) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the handler returns, else rolled back.

    A commit that fails (the database went away after the handler ran) raises here, before
    any response is sent, and is answered like any other error (503 for an outage). The
    embedded worker is woken only when the transaction recorded work for it
    (``app.db.record_worker_work``: a deployment, an order). The
    rollback after a failure must not replace the original error with its own: on a dead
    connection it fails too.
    """
    async with ctx.sessionmaker() as session:
        try:
            yield session
            if not session.in_transaction():
                return  # nothing ran through the session (a cached token, a connection read)
            wake = has_worker_work(session)  # a read never wakes the worker: nothing for it
            await session.commit()
            if wake:
                ctx.notify_worker()
        except BaseException:
            with contextlib.suppress(Exception):
                await session.rollback()
            raise


# scope="function": the commit runs when the handler returns and BEFORE the response is sent,
# so a failed commit can never be answered with a 2xx.
Session = Annotated[AsyncSession, Depends(get_session, scope="function")]

async def get_reader(ctx: Context) -> Reads:
    """Read-only statements for a route's Core reads, outside the ORM session and without a
    transaction, each in one trip to the database (app/reads.py; issue 8: the TLS status).

    Why this reads what the session would: PostgreSQL runs at READ COMMITTED, where every
    statement takes its own snapshot inside a transaction too, so AUTOCOMMIT changes nothing a
    SELECT sees. pysqlite never opens a transaction for a SELECT, so on SQLite each statement
    already ran on its own WAL snapshot. Nothing can be written here: no commit follows.
    """
    return ctx.reads()


Reader = Annotated[Reads, Depends(get_reader)]

bearer = HTTPBearer(auto_error=False, description="An API token: `cpt_<id>_<secret>`.")


async def get_caller(
    session: Session,
    ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The caller; a token this process authenticated within ``token_cache_seconds`` is answered
    from its cache (app.accounts.token_cache) and the session then never opens a connection."""
    token = credentials.credentials if credentials else None
    return await AccountService(AccountRepository(session), ctx.token_cache()).authenticate(token)


CurrentCaller = Annotated[Caller, Depends(get_caller)]


async def get_reading_caller(
    reader: Reader,
    ctx: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """``get_caller`` for routes on ``Reader``: a token not in the cache is looked up through
    it too, so such a request never holds a pooled connection of the session's engine."""
    token = credentials.credentials if credentials else None
    return await AccountService(AccountRepository(reader), ctx.token_cache()).authenticate(token)


ReadingCaller = Annotated[Caller, Depends(get_reading_caller)]


async def get_admin(caller: CurrentCaller) -> Caller:
    caller.require_admin()
    return caller


Admin = Annotated[Caller, Depends(get_admin)]


async def read_inputs(request: Request) -> tuple[AppContext, Reads, Caller]:
    """The context, the reader and the caller as ``get_context``, ``get_reader`` and
    ``get_reading_caller`` resolve them, for a DirectRoute's resolver (app/direct.py)."""
    ctx = await get_context(request)
    reader = await get_reader(ctx)
    return ctx, reader, await get_reading_caller(reader, ctx, await bearer(request))
