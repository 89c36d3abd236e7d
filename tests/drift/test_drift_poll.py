"""The worker's drift poll against the database: one claim per due server, and an agent that
cannot be reached is recorded on the poll, not raised."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select, update

from app.accounts.caller import Caller
from app.deployments.models import Deployment
from app.drift.models import DriftPoll
from app.drift.poll import _store, poll_server
from app.drift.repository import DriftRepository
from app.kit.time import utc_now
from tests.support.api import create_server
from tests.support.ports import free_port


async def test_a_due_poll_is_claimed_once_and_an_unreachable_agent_is_recorded(client, admin, context):
    unreachable = await create_server(client, admin, name="away", hostname="mx9.host.test",
                                      agent_url=f"https://127.0.0.1:{free_port()}", agent_tls_fingerprint="0" * 64)
    await create_server(client, admin, name="no-agent", hostname="mx8.host.test")
    now = utc_now()
    async with context.sessionmaker() as session:
        repo = DriftRepository(session)
        assert await repo.claim(now, 60, 10) == [unreachable["id"]]  # servers without an agent are not polled
        assert await repo.claim(now, 60, 10) == []  # claimed: not due again before its interval
        await session.commit()
    assert await poll_server(context, unreachable["id"], "test-worker") is None
    async with context.sessionmaker() as session:
        poll = await session.get(DriftPoll, unreachable["id"])
        assert poll.last_error.startswith("agent_unreachable") and poll.polled_at is not None
        assert poll.drifted == 0 and poll.epoch is None
        assert await DriftRepository(session).claim(now + timedelta(seconds=61), 60, 10) == [unreachable["id"]]
        await session.commit()


async def test_a_drift_that_a_repair_does_not_mend_is_repaired_less_and_less_often(client, admin, context):
    """The no-SNI probe of a server keeps serving another certificate (a push cannot mend it):
    the first poll schedules a repair delivery; while the server stays drifted, later polls wait
    ever longer before the next; once nothing is drifted the count starts again."""
    server = await create_server(client, admin, name="stuck", hostname="mx7.host.test",
                                 agent_url=f"https://127.0.0.1:{free_port()}", agent_tls_fingerprint="0" * 64)
    sid, worker = server["id"], Caller.for_worker("test-worker")
    async with context.sessionmaker() as session:
        await DriftRepository(session).claim(utc_now(), 60, 10)
        await session.commit()
    drifted = {"service": "mail", "name": None, "daemon": "postfix", "port": 25, "expected": "a" * 64,
               "served": "b" * 64, "at": utc_now().isoformat()}

    async def poll(item, seq, *, rewind=0.0):
        async with context.sessionmaker() as session:  # the repair delivery of the last poll has run
            await session.execute(update(Deployment).where(Deployment.server_id == sid).values(status="applied"))
            if rewind:
                row = await session.get(DriftPoll, sid)
                row.repair_at -= timedelta(seconds=rewind)
            await session.commit()
        await _store(context, worker, sid, "e1", seq, [item])
        async with context.sessionmaker() as session:
            row = await session.get(DriftPoll, sid)
            count = await session.scalar(select(func.count()).select_from(Deployment).where(Deployment.server_id == sid))
            return row.repairs, count

    backoff = context.settings.drift_repair_backoff_seconds
    repairs, first = await poll(drifted, 1)
    assert repairs == 1
    assert await poll(drifted, 2, rewind=backoff) == (2, first + 1)  # one backoff after the first
    assert await poll(drifted, 3, rewind=backoff) == (2, first + 1)  # the next waits twice as long
    assert await poll(drifted, 4, rewind=backoff) == (3, first + 2)
    assert (await poll({**drifted, "served": "a" * 64}, 5))[0] == 0  # mended: the count starts again
