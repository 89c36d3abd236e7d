"""Queries for drift polls and observations."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.deployments.models import Deployment, is_due
from app.domains.models import Domain
from app.drift.models import DriftPoll, ServedObservation
from app.drift.rules import Seen
from app.servers.models import Server


def _insert(session: AsyncSession, model):
    return (postgresql if session.bind.dialect.name == "postgresql" else sqlite).insert(model)


class DriftRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def claim(self, now: datetime, interval: float, limit: int) -> list[str]:
        """Servers with an agent whose poll is due, each claimed by moving its next poll
        ``interval`` ahead in one conditional statement (one worker wins, as claims.py does)."""
        candidates = (await self.session.execute(
            select(Server.id, DriftPoll.server_id)
            .outerjoin(DriftPoll, DriftPoll.server_id == Server.id)
            .where(Server.agent_url.is_not(None), or_(DriftPoll.next_at.is_(None), DriftPoll.next_at <= now))
            .order_by(DriftPoll.next_at.nulls_first()).limit(limit)
        )).all()
        until = now + timedelta(seconds=interval)
        claimed = []
        for server_id, known in candidates:
            if known is None:
                result = await self.session.execute(
                    _insert(self.session, DriftPoll).values(server_id=server_id, next_at=until, seq=0, drifted=0)
                    .on_conflict_do_nothing(index_elements=["server_id"]))
            else:
                result = await self.session.execute(
                    update(DriftPoll).where(DriftPoll.server_id == server_id, DriftPoll.next_at <= now)
                    .values(next_at=until).execution_options(synchronize_session=False))
            if result.rowcount == 1:
                claimed.append(server_id)
        return claimed

    async def poll(self, server_id: str) -> DriftPoll | None:
        return await self.session.get(DriftPoll, server_id)

    async def drifted_flags(self, server_id: str, keys: Iterable[tuple]) -> dict[tuple, bool]:
        keys = list(keys)
        out: dict[tuple, bool] = {}
        cols = (ServedObservation.hostname, ServedObservation.service, ServedObservation.daemon,
                ServedObservation.port)
        for start in range(0, len(keys), 500):
            rows = await self.session.execute(
                select(*cols, ServedObservation.drifted)
                .where(ServedObservation.server_id == server_id, tuple_(*cols).in_(keys[start:start + 500])))
            out.update({tuple(r[:4]): bool(r[4]) for r in rows})
        return out

    async def store(self, server_id: str, seen: list[Seen]) -> None:
        """Upsert the latest observation per (name, service, daemon, port)."""
        rows = [
            {"server_id": server_id, "hostname": s.hostname, "service": s.service, "daemon": s.daemon,
             "port": s.port, "protocol": s.protocol, "expected": s.expected, "served": s.served,
             "error": s.error, "drifted": s.drifted, "observed_at": s.at}
            for s in seen
        ]
        for start in range(0, len(rows), 500):
            stmt = _insert(self.session, ServedObservation).values(rows[start:start + 500])
            await self.session.execute(stmt.on_conflict_do_update(
                index_elements=["server_id", "hostname", "service", "daemon", "port"],
                set_={c: getattr(stmt.excluded, c)
                      for c in ("protocol", "expected", "served", "error", "drifted", "observed_at")}))

    async def count_drifted(self, server_id: str) -> int:
        return int(await self.session.scalar(
            select(func.count()).select_from(ServedObservation)
            .where(ServedObservation.server_id == server_id, ServedObservation.drifted.is_(True))) or 0)

    async def delivery_due(self, server_id: str) -> bool:
        return await self.session.scalar(
            select(Deployment.id).where(Deployment.server_id == server_id, is_due()).limit(1)) is not None

    async def domain_accounts(self, server_id: str, names: Iterable[str]) -> dict[str, str]:
        """Domain name -> account, for the given names hosted on the server."""
        names = sorted(names)
        if not names:
            return {}
        rows = await self.session.execute(
            select(Domain.name, Domain.account_id).where(Domain.server_id == server_id, Domain.name.in_(names)))
        return {name: account for name, account in rows}

    async def drifted_on(self, server_id: str, at_most: int) -> set[tuple[str, str, str]] | None:
        """(server_id, hostname, service) of every drifted name of the server, from the
        ``(server_id, drifted)`` index in one statement; None when there are more than
        ``at_most`` (then ``drifted_names`` per batch keeps memory bounded)."""
        o = ServedObservation
        rows = await self.session.execute(
            select(o.server_id, o.hostname, o.service).where(o.server_id == server_id, o.drifted.is_(True))
            .distinct().limit(at_most + 1))
        out = {tuple(r) for r in rows}
        return None if len(out) > at_most else out

    async def drifted_names(self, names: set[tuple[str, str]]) -> set[tuple[str, str, str]]:
        """(server_id, hostname, service) of the given (server_id, hostname) pairs that some port
        was last seen serving differently from what the agent applied: the ``(server_id,
        drifted)`` index, where drifted rows are few, then the names of a page."""
        if not names:
            return set()
        servers = sorted({server for server, _ in names})
        hostnames = sorted({hostname for _, hostname in names})
        out: set[tuple[str, str, str]] = set()
        for start in range(0, len(hostnames), 1000):
            rows = await self.session.execute(
                select(ServedObservation.server_id, ServedObservation.hostname, ServedObservation.service)
                .where(ServedObservation.server_id.in_(servers), ServedObservation.drifted.is_(True),
                       ServedObservation.hostname.in_(hostnames[start:start + 1000])).distinct())
            out |= {tuple(r) for r in rows if (r[0], r[1]) in names}
        return out
