"""The worker's drift job: read one agent's observations, store them, raise events, repair.

Two short transactions around the network call, as deliveries do (app/deployments/delivery.py):
read where the last poll stopped; (no transaction) ``GET /v1/observations`` page by page over
the pinned, signed channel; store the observations with the events and the repair decision.
A poll that fails (agent away, an agent without the endpoint) records its error and is tried
again at the next interval; it never touches the deployment's state.
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, exists, select

from app.accounts.caller import Caller
from app.context import AppContext
from app.deployments.agent_client import AgentClient, AgentError
from app.deployments.models import AppliedName
from app.deployments.outbox import servers_changed
from app.drift import rules
from app.drift.events import record_changes
from app.drift.models import DriftPoll, ServedObservation
from app.drift.repository import DriftRepository
from app.kit.time import utc_now
from app.servers.models import Server
from app.servers.repository import ServerRepository

log = logging.getLogger("certpost.drift")

PAGE = 1000
MAX_PAGES = 200  # 200,000 observations: more than 10,000 names on six ports


async def poll_server(ctx: AppContext, server_id: str, owner: str) -> int | None:
    """Poll one server as worker ``owner``; the number of drifted probes after it, or None
    when it failed."""
    async with ctx.sessionmaker() as session:
        server = await session.get(Server, server_id)
        poll = await DriftRepository(session).poll(server_id)
        if server is None or poll is None or not server.agent_url:
            return None
        url, pin, epoch, seq = server.agent_url, server.agent_tls_fingerprint, poll.epoch, poll.seq
    try:
        epoch, seq, items = await _read(ctx, url, pin, epoch, seq)
    except AgentError as exc:
        async with ctx.sessionmaker() as session:
            poll = await session.get(DriftPoll, server_id)
            if poll is not None:
                poll.polled_at, poll.last_error = utc_now(), f"{exc.code}: {exc.detail}"[:500]
                if exc.status is not None:  # it answered, over the pinned TLS: alive
                    await ServerRepository(session).agent_answered(server_id, poll.polled_at)
                await session.commit()
        log.info("server %s: drift poll failed: %s", server_id, exc.code)
        return None
    return await _store(ctx, Caller.for_worker(owner), server_id, epoch, seq, items)


async def _read(ctx: AppContext, url: str, pin: str | None, epoch: str | None, seq: int):
    client = AgentClient(url, pin, ctx.controller_key, timeout=ctx.settings.agent_timeout_seconds,
                         pins=ctx.agent_pins())
    items: list = []
    try:
        for _ in range(MAX_PAGES):
            page = await client.observations(epoch, seq, PAGE)
            new_epoch, last = page.get("epoch"), page.get("last_seq")
            if not isinstance(new_epoch, str) or type(last) is not int:
                raise AgentError("agent_bad_answer", "GET /v1/observations answered without epoch/last_seq",
                                 retryable=True)
            epoch, seq = new_epoch, last
            items += page.get("observations") or []
            if not page.get("more"):
                break
    finally:
        await client.aclose()
    return epoch, seq, items


async def _store(ctx: AppContext, caller: Caller, server_id: str, epoch: str, seq: int, items: list) -> int | None:
    now = utc_now()
    latest: dict[tuple, rules.Seen] = {}
    for item in items:  # in sequence order: a later observation of a key wins
        seen = rules.parse(item, now)
        if seen is not None:
            latest[seen.key] = seen
    async with ctx.sessionmaker() as session:
        repo = DriftRepository(session)
        poll = await session.get(DriftPoll, server_id, with_for_update=True)
        if poll is None:  # the server was deleted meanwhile
            return None
        before = await repo.drifted_flags(server_id, latest)
        await repo.store(server_id, list(latest.values()))
        # Names the agent no longer serves (unbound, domain removed) are not drift.
        await session.execute(delete(ServedObservation).where(
            ServedObservation.server_id == server_id, ServedObservation.hostname != "",
            ~exists(select(AppliedName.hostname).where(AppliedName.server_id == server_id,
                                                        AppliedName.hostname == ServedObservation.hostname))))
        detected, resolved = rules.changes(before, list(latest.values()))
        poll.epoch, poll.seq, poll.polled_at, poll.last_error = epoch, seq, now, None
        await ServerRepository(session).agent_answered(server_id, now)
        poll.drifted = await repo.count_drifted(server_id)
        await record_changes(session, caller, server_id, detected, resolved)
        if not poll.drifted:
            poll.repairs = 0  # the next drift starts with the shortest wait again
        if ctx.settings.drift_repair and rules.repair_due(poll.drifted, await repo.delivery_due(server_id), poll.repair_at, now,
                            ctx.settings.drift_repair_backoff_seconds, poll.repairs or 0):
            poll.repair_at, poll.repairs = now, (poll.repairs or 0) + 1
            await servers_changed(session, [server_id], f"drift repair: {poll.drifted} probe(s) drifted", names={})
            log.warning("server %s: %d probe(s) serve what the agent did not apply; repair scheduled",
                        server_id, poll.drifted)
        drifted = poll.drifted
        await session.commit()
    return drifted
