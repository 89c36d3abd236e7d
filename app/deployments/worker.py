"""The worker: embedded in ``certpost serve`` or alone as ``certpost worker``.

Each round it claims what is due and runs each piece as its own task: up to ``CONCURRENCY``
deliveries to servers (``delivery.py``; a lease keeps one server to one worker) and, in slots
of their own, up to ``ORDER_CONCURRENCY`` certificate orders (``app.acme.runner``; a lease per
order). An order mostly waits on the CA and DNS, so orders neither wait for deliveries to
finish nor hold back a delivery. Every ``renewal_check_seconds``
it starts renewal orders for ACME certificates that are due (``app.acme.renewal``), and every
``drift_poll_seconds`` it reads each agent's drift observations (``app.drift.poll``, in the
delivery slots). Between
rounds it sleeps until the next poll, or until the API wakes it after a commit.

Leases are short and renewed by a heartbeat while the work runs (``heartbeat.py``), so a
crashed worker's work is taken over within ``lease_seconds``; a renewal is an order, so
renewals are covered the same way.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from datetime import timedelta

from app.acme.repository import AcmeRepository
from app.context import AppContext
from app.deployments.claims import claim_due_servers
from app.deployments.delivery import deliver
from app.drift.poll import poll_server
from app.drift.repository import DriftRepository
from app.kit.time import utc_now
from app.outage import is_database_outage

log = logging.getLogger("certpost.worker")

CONCURRENCY = 16
ORDER_CONCURRENCY = 32  # each holds one of AppContext.run_blocking's threads while it talks to the CA
OUTAGE_LOG_QUIET_SECONDS = 30.0


def worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    def __init__(self, ctx: AppContext, owner: str | None = None):
        self.ctx = ctx
        self.owner = owner or worker_id()
        self.tasks: set[asyncio.Task] = set()
        self.order_tasks: set[asyncio.Task] = set()
        self._last_renewal_check = float("-inf")
        self._last_drift_claim = float("-inf")
        self._last_outage_log = float("-inf")

    def _spawn(self, coro, name: str, *, order: bool = False) -> None:
        task = asyncio.create_task(coro, name=name)
        self.tasks.add(task)
        if order:
            self.order_tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        self.order_tasks.discard(task)
        if task.get_name().startswith("deliver:"):  # with "claimed": which worker held which lease when
            log.info("worker %s: delivery to server %s finished", self.owner, task.get_name().removeprefix("deliver:"))
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if is_database_outage(exc):  # its lease runs out and another round takes it over
                self._outage(f"{task.get_name()} stopped", exc)
            else:
                log.error("%s crashed: %s", task.get_name(), type(exc).__name__, exc_info=exc)
        self.ctx.notify_worker()

    def _round_failed(self, exc: Exception) -> None:
        if is_database_outage(exc):
            self._outage("worker round skipped", exc)
        else:
            log.error("worker round failed: %s", type(exc).__name__, exc_info=exc)

    def _outage(self, what: str, exc: BaseException) -> None:
        """One line per outage, not a traceback per poll (a poll is a second)."""
        now = time.monotonic()
        if now - self._last_outage_log >= OUTAGE_LOG_QUIET_SECONDS:
            self._last_outage_log = now
            log.warning("%s: database unavailable (%s); retrying every poll", what, type(exc).__name__)

    async def round(self) -> int:
        """Claim and start what is due; returns how many tasks it started."""
        from app.acme.renewal import schedule_due_renewals

        settings = self.ctx.settings
        if time.monotonic() - self._last_renewal_check >= settings.renewal_check_seconds:
            self._last_renewal_check = time.monotonic()
            await schedule_due_renewals(self.ctx)
        room = CONCURRENCY - (len(self.tasks) - len(self.order_tasks))
        order_room = ORDER_CONCURRENCY - len(self.order_tasks)
        if room <= 0 and order_room <= 0:
            return 0
        now = utc_now()
        async with self.ctx.sessionmaker() as session:
            # Short leases, renewed while the work runs (heartbeat.py): a crash is taken over fast.
            lease = timedelta(seconds=settings.lease_seconds)
            servers = await claim_due_servers(session, self.owner, now, lease, room) if room > 0 else []
            orders = await AcmeRepository(session).claim_orders(
                self.owner, now, now + lease, order_room) if order_room > 0 else []
            await session.commit()
        for server_id in servers:
            log.info("worker %s claimed server %s", self.owner, server_id)
            self._spawn(deliver(self.ctx, server_id, self.owner), f"deliver:{server_id}")
        if orders:  # the ACME protocol layer (about 9 MB) loads with the first order
            from app.acme.runner import run_order
        for order_id in orders:
            self._spawn(run_order(self.ctx, order_id, owner=self.owner), f"order:{order_id}", order=True)
        polls = await self._drift_polls(room - len(servers))
        return len(servers) + len(orders) + polls

    async def _drift_polls(self, room: int) -> int:
        """Start the drift polls that are due (app.drift.poll), at most every few seconds."""
        interval = self.ctx.settings.drift_poll_seconds
        if interval <= 0 or room <= 0 or time.monotonic() - self._last_drift_claim < min(interval, 5.0):
            return 0
        self._last_drift_claim = time.monotonic()
        async with self.ctx.sessionmaker() as session:
            claimed = await DriftRepository(session).claim(utc_now(), interval, room)
            await session.commit()
        for server_id in claimed:
            self._spawn(poll_server(self.ctx, server_id, self.owner), f"drift:{server_id}")
        return len(claimed)

    async def drain(self) -> None:
        """Wait for every started task (tests, and a graceful stop)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def run_forever(self) -> None:
        wake = self.ctx.worker_wake()
        log.info("worker %s started", self.owner)
        try:
            while True:
                try:
                    started = await self.round()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the database may be briefly away; keep the worker alive
                    self._round_failed(exc)
                    started = 0
                if started:
                    continue
                try:
                    await asyncio.wait_for(wake.wait(), timeout=self.ctx.settings.worker_poll_seconds)
                except TimeoutError:
                    pass
                wake.clear()
        finally:
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*list(self.tasks), return_exceptions=True)


async def run_forever(ctx: AppContext, *, owner: str | None = None) -> None:
    await Worker(ctx, owner).run_forever()
