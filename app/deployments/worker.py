"""The deployment worker: embedded in ``certpost serve`` or alone as ``certpost worker``.

Each round claims servers with due deployments (``claims.py``), delivers to several at once
(``delivery.py``, async I/O; one server never twice at once), and sleeps until the next poll
or until the API wakes it after a commit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from datetime import timedelta

from app.context import AppContext
from app.deployments.claims import claim_due_servers
from app.deployments.delivery import deliver
from app.kit.time import utc_now

log = logging.getLogger("certpost.worker")

CONCURRENCY = 16


def worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


async def run_once(ctx: AppContext, owner: str) -> int:
    """One round; returns how many servers it delivered to."""
    lease = timedelta(seconds=2 * ctx.settings.agent_timeout_seconds + 30)
    async with ctx.sessionmaker() as session:
        claimed = await claim_due_servers(session, owner, utc_now(), lease, CONCURRENCY)
        await session.commit()
    if not claimed:
        return 0
    results = await asyncio.gather(*(deliver(ctx, sid, owner) for sid in claimed), return_exceptions=True)
    for server_id, result in zip(claimed, results):
        if isinstance(result, BaseException):
            log.error("delivery to server %s crashed: %s", server_id, type(result).__name__, exc_info=result)
    return len(claimed)


async def run_forever(ctx: AppContext, *, owner: str | None = None) -> None:
    owner = owner or worker_id()
    wake = ctx.worker_wake()
    log.info("deployment worker %s started", owner)
    while True:
        try:
            busy = await run_once(ctx, owner)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database may be briefly away; keep the worker alive
            log.error("worker round failed: %s", type(exc).__name__, exc_info=exc)
            busy = 0
        if busy:
            continue
        try:
            await asyncio.wait_for(wake.wait(), timeout=ctx.settings.worker_poll_seconds)
        except TimeoutError:
            pass
        wake.clear()
