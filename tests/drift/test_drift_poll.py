"""The worker's drift poll against the database: one claim per due server, and an agent that
cannot be reached is recorded on the poll, not raised."""

from __future__ import annotations

from datetime import timedelta

from app.drift.models import DriftPoll
from app.drift.poll import poll_server
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
