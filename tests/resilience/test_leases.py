"""Leases on work in progress: kept alive while the work runs, given up when taken over.

The work is real: deliveries by the real worker to the real agent (with real Postfix, Dovecot,
nginx), paused with SIGSTOP so that a delivery lasts as long as the test wants. The lease is
made short (0.6 s) so that a delivery spans several leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, update

from app.acme.models import CertificateOrder
from app.acme.repository import AcmeRepository
from app.deployments.models import Deployment, DeploymentAttempt
from app.kit.signing import public_key_to_text
from app.kit.time import utc_now
from app.scheduler.heartbeat import Heartbeat, LeaseLost
from app.scheduler.worker import Worker
from app.servers.models import Server
from tests.support.api import create_domain, create_server
from tests.support.daemons import running_stack

LEASE = 0.6


@pytest.fixture
def short_leases(context):
    saved = context.settings.lease_seconds
    context.settings.lease_seconds = LEASE
    yield context
    context.settings.lease_seconds = saved


@pytest.fixture
def paused_agent(context, short_leases):
    """A real agent stack; ``pause()`` stops the agent (SIGSTOP), resumed on exit in any case."""
    key = Ed25519PrivateKey.generate()
    saved = context.controller_key
    context.controller_key = key
    with running_stack(public_key_to_text(key.public_key())) as (stack, agent):
        stopped = []

        def pause():
            os.kill(agent.process.pid, signal.SIGSTOP)
            stopped.append(True)

        def resume():
            if stopped:
                os.kill(agent.process.pid, signal.SIGCONT)
                stopped.clear()

        try:
            yield stack, agent, pause, resume
        finally:
            resume()
            context.controller_key = saved


async def _server_row(context, server_id) -> Server:
    async with context.sessionmaker() as session:
        return await session.get(Server, server_id)


async def _attempts(context, server_id) -> int:
    async with context.sessionmaker() as session:
        return await session.scalar(select(func.count()).select_from(DeploymentAttempt).join(Deployment)
                                    .where(Deployment.server_id == server_id))


@pytest.mark.daemons
async def test_a_long_delivery_keeps_its_lease(client, admin, context, paused_agent):
    stack, agent, pause, resume = paused_agent
    server = await create_server(client, admin, name="slow", hostname=stack.hostname,
                                 agent_url=stack.agent_url, agent_tls_fingerprint=agent.fingerprint)
    pause()
    first, second = Worker(context, owner="worker-a"), Worker(context, owner="worker-b")
    assert await first.round() == 1
    deadline = time.monotonic() + 6 * LEASE
    while time.monotonic() < deadline:  # six leases long: renewed, never free for the other worker
        assert await second.round() == 0
        row = await _server_row(context, server["id"])
        assert row.deploy_lease_owner == "worker-a" and row.deploy_lease_until > utc_now()
        await asyncio.sleep(LEASE / 3)
    resume()
    await asyncio.wait_for(first.drain(), 60)
    row = await _server_row(context, server["id"])
    assert row.applied_generation == row.desired_generation and row.deploy_lease_owner is None
    assert await _attempts(context, server["id"]) == 1


@pytest.mark.daemons
async def test_a_worker_that_lost_its_lease_stops_and_writes_nothing(client, admin, context, paused_agent):
    stack, agent, pause, _resume = paused_agent
    server = await create_server(client, admin, name="taken", hostname=stack.hostname,
                                 agent_url=stack.agent_url, agent_tls_fingerprint=agent.fingerprint)
    pause()
    worker = Worker(context, owner="worker-a")
    assert await worker.round() == 1
    async with context.sessionmaker() as session:  # what a worker that took over would have written
        await session.execute(update(Server).where(Server.id == server["id"])
                              .values(deploy_lease_owner="worker-b", deploy_lease_until=utc_now() + timedelta(minutes=5)))
        await session.commit()
    started = time.monotonic()
    await asyncio.wait_for(worker.drain(), 5)
    print(f"\nthe delivery stopped {time.monotonic() - started:.2f} s after its lease was taken (lease {LEASE} s)")
    row = await _server_row(context, server["id"])
    assert row.deploy_lease_owner == "worker-b" and row.applied_generation == 0
    assert await _attempts(context, server["id"]) == 0
    async with context.sessionmaker() as session:
        deployment = await session.scalar(select(Deployment).where(Deployment.server_id == server["id"]))
    assert deployment.status == "pending" and deployment.attempts == 0


async def test_an_order_keeps_its_lease_while_it_runs_and_notices_a_takeover(client, admin, context,
                                                                            customer_headers, short_leases):
    """The order's own renewal (``renew_order_lease``) under a heartbeat, around work lasting
    several leases (an order waiting minutes for DNS propagation, shortened)."""
    server = await create_server(client, admin)
    account_id, _ = await customer_headers()
    await create_domain(client, admin, "lease.test", server["id"], account_id)
    async with context.sessionmaker() as session:
        order = CertificateOrder(account_id=account_id, domain="lease.test", names=["lease.test"], challenge="dns-01",
                                 key_type="ec-p256", bind=[], status="pending", authorizations=[])
        session.add(order)
        await session.flush()
        now = utc_now()
        assert await AcmeRepository(session).claim_orders("worker-a", now, now + timedelta(seconds=LEASE), 5) == [order.id]
        await session.commit()

    async def keep(session, until):
        return await AcmeRepository(session).renew_order_lease(order.id, "worker-a", until)

    async def claim_as_b():
        async with context.sessionmaker() as session:
            now = utc_now()
            won = await AcmeRepository(session).claim_orders("worker-b", now, now + timedelta(seconds=LEASE), 5)
            await session.commit()
            return won

    wrote_after_takeover = False
    with pytest.raises(LeaseLost):
        async with Heartbeat(context, keep, name=f"order:{order.id}"):
            deadline = time.monotonic() + 6 * LEASE
            while time.monotonic() < deadline:
                assert await claim_as_b() == []
                await asyncio.sleep(LEASE / 3)
            async with context.sessionmaker() as session:  # an operator's or another worker's takeover
                await session.execute(update(CertificateOrder).where(CertificateOrder.id == order.id)
                                      .values(lease_owner="worker-b"))
                await session.commit()
            with contextlib.suppress(TimeoutError):
                await asyncio.sleep(10 * LEASE)
            wrote_after_takeover = True
    assert not wrote_after_takeover


@pytest.mark.parametrize("away", ["stopped", "frozen"])
async def test_a_worker_that_cannot_renew_before_its_lease_ends_stops(tmp_path, away):
    """The database is away for longer than the lease: the worker cannot know whether another
    one took over, so it stops when the lease it could not renew runs out. Away: stopped
    (connections refused), or frozen (SIGSTOP: connections open, the renewal hangs)."""
    from types import SimpleNamespace

    from sqlalchemy import text

    from app.config import Settings
    from app.db import create_engine, create_sessionmaker
    from tests.support.postgres import private_postgres

    with private_postgres() as pg:
        engine = create_engine(Settings(database_url=pg.url, data_dir=tmp_path))
        ctx = SimpleNamespace(sessionmaker=create_sessionmaker(engine), settings=Settings(lease_seconds=LEASE))

        async def renew(session, _until):
            return (await session.scalar(text("SELECT 1"))) == 1

        finished = stopped_at = None
        try:
            with pytest.raises(LeaseLost):
                async with Heartbeat(ctx, renew, name="outage"):
                    await asyncio.sleep(3 * LEASE)  # renewed meanwhile: still running
                    with contextlib.ExitStack() as outage:
                        if away == "stopped":
                            await asyncio.to_thread(pg.stop)
                        else:
                            outage.enter_context(pg.frozen())
                        stopped_at = time.monotonic()
                        await asyncio.sleep(20 * LEASE)
                        finished = True
        finally:
            await engine.dispose()
        assert finished is None and stopped_at is not None
        assert time.monotonic() - stopped_at < 2 * LEASE + 1
