"""Short leases kept alive while the work runs, so a crashed worker's work is taken over quickly.

A worker claims a server (a delivery) or an order with a lease of ``lease_seconds`` (20 s by
default), not with one as long as the longest the work could take: while the work runs, a
heartbeat renews the lease every quarter of it with a conditional UPDATE (``... WHERE
lease_owner = me``). A worker that dies stops renewing, and its lease runs out within
``lease_seconds``, after which any worker claims the work again.

A worker that finds it no longer holds its lease (another worker took it over, or it could
not renew before the lease ran out, for example during a database outage) stops the work at
once: the heartbeat cancels the working task, and ``Heartbeat`` turns that cancellation into
``LeaseLost`` so the caller writes nothing more. Final writes also re-check the owner.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Self

from sqlalchemy.ext.asyncio import AsyncSession

from app.context import AppContext
from app.kit.time import utc_now

log = logging.getLogger("certpost.worker")

Renew = Callable[[AsyncSession, datetime], Awaitable[bool]]


class LeaseLost(Exception):
    """Another worker holds this lease now (or it ran out): stop, and write nothing more."""


def heartbeat_interval(lease_seconds: float) -> float:
    """Four renewals per lease: three may fail (a database restart) before the lease runs out."""
    return max(0.05, lease_seconds / 4)


class Heartbeat:
    """``async with Heartbeat(ctx, renew, name=...)`` around the work done under a lease.

    ``renew(session, until)`` extends the lease to ``until`` if this worker still owns it and
    says whether it did. The block must run in the task that does the work: that task is
    cancelled when the lease is lost.
    """

    def __init__(self, ctx: AppContext, renew: Renew, *, name: str, lease_seconds: float | None = None):
        self.ctx = ctx
        self.renew = renew
        self.name = name
        self.lease_seconds = lease_seconds or ctx.settings.lease_seconds
        self.lost: str | None = None
        self._worker: asyncio.Task | None = None
        self._beat: asyncio.Task | None = None
        self._abandoned: asyncio.Future | None = None

    async def __aenter__(self) -> Self:
        self._worker = asyncio.current_task()
        self._beat = asyncio.create_task(self._run(), name=f"heartbeat:{self.name}")
        return self

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        self._beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._beat
        if self.lost is not None and exc_type is asyncio.CancelledError:
            if self._worker.uncancel() > 0:
                return False  # also cancelled from outside (shutdown): let that go on
            raise LeaseLost(f"{self.name}: {self.lost}") from None
        return False

    async def _run(self) -> None:
        # Counted from now, a little after the claim: the lease is a bound, not a promise.
        held_until = time.monotonic() + self.lease_seconds - heartbeat_interval(self.lease_seconds) / 2
        while True:
            await asyncio.sleep(heartbeat_interval(self.lease_seconds))
            asked = time.monotonic()  # the new lease counts from before the renewal, as in the row
            # A renewal still hanging when the lease ends (a database that does not answer)
            # counts as failed: by then another worker may hold the lease. The work stops at
            # once; the hanging renewal is left to finish its cancellation on its own.
            renewal = asyncio.ensure_future(self._renew_once())
            done, _ = await asyncio.wait({renewal}, timeout=max(0.0, held_until - asked))
            if not done:
                renewal.add_done_callback(_consume)
                renewal.cancel()
                self._abandoned = renewal  # a reference until it is done
                self._lose("could not renew the lease before it ran out (no answer)")
                return
            try:
                kept = renewal.result()
            except Exception as exc:  # noqa: BLE001 - the database may be away; retry until the lease ends
                if time.monotonic() >= held_until:
                    self._lose(f"could not renew the lease before it ran out ({type(exc).__name__})")
                    return
                continue
            if not kept:
                self._lose("another worker holds the lease now")
                return
            held_until = asked + self.lease_seconds

    async def _renew_once(self) -> bool:
        async with self.ctx.sessionmaker() as session:
            kept = await self.renew(session, utc_now() + timedelta(seconds=self.lease_seconds))
            await session.commit()
            return kept

    def _lose(self, why: str) -> None:
        self.lost = why
        log.warning("%s: lease lost (%s); stopping without writing", self.name, why)
        self._worker.cancel()


def _consume(task: asyncio.Task) -> None:
    """Retrieve an abandoned renewal's outcome, so asyncio does not report it as lost."""
    if not task.cancelled():
        task.exception()
