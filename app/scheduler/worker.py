"""The worker: embedded in ``certpost serve`` or alone as ``certpost worker``.

Each round it runs the periodic scans that are due and then claims what is due of each leased
job kind and runs each piece as its own task, in slots of its own per kind:

| job | lease on | slots | runs |
| --- | --- | --- | --- |
| delivery to a server | the server row | ``CONCURRENCY`` | ``app.deployments.delivery.deliver`` |
| certificate order | the order row | ``ORDER_CONCURRENCY`` | ``app.acme.runner.run_order`` |
| webhook | the webhook row | ``WEBHOOK_CONCURRENCY`` | ``app.webhooks.jobs.run_webhook`` |
| drift poll of a server | the server's next poll time | ``DRIFT_CONCURRENCY`` | ``app.drift.poll.poll_server`` |
| retention (pruning) | the ``retention`` row of ``scheduled_tasks`` | 1 | ``app.retention.jobs.run_retention`` |

and, every ``renewal_check_seconds``, the renewal scan (``app.acme.renewal``, which writes orders),
every ``expiry_check_seconds`` the expiry scan (``app.expiry.jobs``, which records events).
An order mostly waits on the CA and DNS and a webhook on a receiver, so separate slots keep one
kind from holding back another: a slow receiver holds one webhook slot, never a delivery.
Between rounds it sleeps until the next poll, until the API wakes it after a commit, or until a
task it started ends; it looks again at once only when a kind claimed as many as it had room
for (more may be waiting). A round right after one that found less would find nothing, and its
claim statements would compete with the delivery just started for the database and the GIL:
on SQLite under load, 10 to 15 ms of a one-domain change's path (docs/performance.md, section 8).

Every leased job follows one rule (``app.scheduler.lease``): claimed by a conditional UPDATE,
kept by a heartbeat (``app.scheduler.heartbeat``), so a crashed worker's work is taken over
within ``lease_seconds``. A drift poll is claimed the same way (one conditional statement moves
the server's next poll ``drift_poll_seconds`` ahead), so its "lease" is the poll interval: a
crashed poll is simply the next one. Retention is one job for the whole database: its row
holds the lease and when it is due again (``retention_check_seconds`` after the last run).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.context import AppContext
from app.kit.time import utc_now
from app.outage import is_database_outage

log = logging.getLogger("certpost.worker")

CONCURRENCY = 16
ORDER_CONCURRENCY = 32  # each holds one of AppContext.run_blocking's threads while it talks to the CA
WEBHOOK_CONCURRENCY = 16  # webhooks served at once (each with up to settings.webhook_concurrency requests)
DRIFT_CONCURRENCY = 8  # agents read at once for their drift observations
CLAIM_THROTTLE_SECONDS = 5.0
OUTAGE_LOG_QUIET_SECONDS = 30.0

Claim = Callable[[AppContext, AsyncSession, str, datetime, timedelta, int], Awaitable[list[str]]]
Run = Callable[[AppContext, str, str], Awaitable[None]]


def worker_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class JobKind:
    """A kind of leased job: how to claim up to n of them, how to run one, how many at once.

    ``every``: the setting that paces a kind that is due by the clock rather than by a write
    (drift polls, retention): claimed at most every that many seconds (and every ``CLAIM_THROTTLE_SECONDS``
    at most), never when it is 0."""

    name: str
    slots: int
    claim: Claim
    run: Run
    every: str | None = None


async def _claim_servers(_ctx, session, owner, now, lease, limit):
    from app.deployments.claims import claim_due_servers

    return await claim_due_servers(session, owner, now, lease, limit)


async def _run_delivery(ctx, server_id, owner):
    from app.deployments.delivery import deliver

    await deliver(ctx, server_id, owner)


async def _claim_orders(_ctx, session, owner, now, lease, limit):
    from app.acme.repository import AcmeRepository

    return await AcmeRepository(session).claim_orders(owner, now, now + lease, limit)


async def _run_order(ctx, order_id, owner):
    # The ACME protocol layer (about 9 MB) loads with the first order.
    from app.acme.runner import run_order

    await run_order(ctx, order_id, owner=owner)


async def _claim_webhooks(_ctx, session, owner, now, lease, limit):
    from app.webhooks.jobs import claim_webhooks

    return await claim_webhooks(session, owner, now, lease, limit)


async def _run_webhook(ctx, webhook_id, owner):
    from app.webhooks.jobs import run_webhook

    await run_webhook(ctx, webhook_id, owner)


async def _claim_drift_polls(ctx, session, _owner, now, _lease, limit):
    from app.drift.repository import DriftRepository

    return await DriftRepository(session).claim(now, ctx.settings.drift_poll_seconds, limit)


async def _run_drift_poll(ctx, server_id, owner):
    from app.drift.poll import poll_server

    await poll_server(ctx, server_id, owner)


async def _claim_retention(_ctx, session, owner, now, lease, _limit):
    from app.retention.jobs import claim_retention

    return await claim_retention(session, owner, now, lease)


async def _run_retention(ctx, task_id, owner):
    from app.retention.jobs import run_retention

    await run_retention(ctx, task_id, owner)


JOB_KINDS = (
    JobKind("deliver", CONCURRENCY, _claim_servers, _run_delivery),
    JobKind("order", ORDER_CONCURRENCY, _claim_orders, _run_order),
    JobKind("webhook", WEBHOOK_CONCURRENCY, _claim_webhooks, _run_webhook),
    JobKind("drift", DRIFT_CONCURRENCY, _claim_drift_polls, _run_drift_poll, every="drift_poll_seconds"),
    JobKind("retention", 1, _claim_retention, _run_retention, every="retention_check_seconds"),
)


async def _scan_renewals(ctx: AppContext, owner: str) -> None:
    from app.acme.renewal import schedule_due_renewals

    await schedule_due_renewals(ctx, owner=owner)


async def _scan_expiry(ctx: AppContext, owner: str) -> None:
    from app.expiry.jobs import record_expiry_notices

    await record_expiry_notices(ctx, owner)


PERIODIC = (
    ("renewals", "renewal_check_seconds", _scan_renewals),
    ("expiry", "expiry_check_seconds", _scan_expiry),
)
"""(name, the setting that says how often, the scan): unleased scans whose writes are
conditional (a renewal is started by one conditional UPDATE, an expiry notice by one unique row),
so two workers scanning at once still act once."""


class Worker:
    def __init__(self, ctx: AppContext, owner: str | None = None):
        self.ctx = ctx
        self.owner = owner or worker_id()
        self.tasks: set[asyncio.Task] = set()
        self.running: dict[str, set[asyncio.Task]] = {kind.name: set() for kind in JOB_KINDS}
        self._last_scan: dict[str, float] = {}
        self._last_claim: dict[str, float] = {}
        self.filled = False  # the last round claimed as many of some kind as it had room for
        self._last_outage_log = float("-inf")

    @property
    def order_tasks(self) -> set[asyncio.Task]:
        return self.running["order"]

    def _spawn(self, coro, kind: str, job_id: str) -> None:
        task = asyncio.create_task(coro, name=f"{kind}:{job_id}")
        self.tasks.add(task)
        self.running[kind].add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        for running in self.running.values():
            running.discard(task)
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

    async def scans(self) -> None:
        """The periodic scans that are due (each at most every its setting's seconds)."""
        for name, setting, scan in PERIODIC:
            if time.monotonic() - self._last_scan.get(name, float("-inf")) >= getattr(self.ctx.settings, setting):
                self._last_scan[name] = time.monotonic()
                await scan(self.ctx, self.owner)

    def _paced_out(self, kind: JobKind) -> bool:
        """True when a clock-paced kind is off, or was claimed too recently to look again."""
        if kind.every is None:
            return False
        interval = getattr(self.ctx.settings, kind.every)
        since = time.monotonic() - self._last_claim.get(kind.name, float("-inf"))
        if interval <= 0 or since < min(interval, CLAIM_THROTTLE_SECONDS):
            return True
        self._last_claim[kind.name] = time.monotonic()
        return False

    async def round(self) -> int:
        """Run the due scans, claim and start what is due; returns how many tasks it started."""
        await self.scans()
        rooms = {kind.name: 0 if self._paced_out(kind) else kind.slots - len(self.running[kind.name])
                 for kind in JOB_KINDS}
        if all(room <= 0 for room in rooms.values()):
            return 0
        now = utc_now()
        claimed: list[tuple[JobKind, str]] = []
        self.filled = False
        async with self.ctx.sessionmaker() as session:
            # Short leases, renewed while the work runs (heartbeat.py): a crash is taken over fast.
            lease = timedelta(seconds=self.ctx.settings.lease_seconds)
            for kind in JOB_KINDS:
                if rooms[kind.name] > 0:
                    got = await kind.claim(self.ctx, session, self.owner, now, lease, rooms[kind.name])
                    claimed += [(kind, i) for i in got]
                    self.filled = self.filled or len(got) >= rooms[kind.name]
            await session.commit()
        for kind, job_id in claimed:
            if kind.name == "deliver":
                log.info("worker %s claimed server %s", self.owner, job_id)
            self._spawn(kind.run(self.ctx, job_id, self.owner), kind.name, job_id)
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
                except Exception as exc:  # noqa: BLE001 - the database may be briefly away; keep the worker alive
                    self._round_failed(exc)
                    started = 0
                if started and self.filled:  # more may be due than there was room for: look again now
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
