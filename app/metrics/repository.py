"""The aggregate queries behind the controller's Prometheus gauges: a handful per scrape, none
per row, each one statement whatever the number of certificates, domains or servers.

Every row here is something a scrape shows: no private key, no PEM, no customer secret; the
columns are selected one by one (never whole rows, which carry the sealed keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, func, select, union
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.acme.models import CertificateOrder
from app.certificates.models import Certificate
from app.deployments.models import Deployment
from app.domains.models import Binding
from app.retention.models import ScheduledTask
from app.servers.models import Server
from app.webhooks.models import WebhookDelivery


@dataclass(frozen=True)
class CertificateRow:
    id: str
    account_id: str | None
    name: str  # the first subjectAltName (or the certificate's label when it has none)
    source: str
    not_after: datetime


@dataclass(frozen=True)
class RenewalRow:
    id: str
    account_id: str | None
    name: str
    attempts: int


@dataclass(frozen=True)
class ServerRow:
    id: str
    name: str
    has_agent: bool
    desired_generation: int
    applied_generation: int
    agent_contact_at: datetime | None
    latest_state: str | None  # the status of its newest deployment; None: it never had one
    held_back: int  # names its applied generation holds back (per-name failures)


def _primary(sans, label) -> str:
    if isinstance(sans, list) and sans:
        return str(sans[0])
    return label or ""


class MetricsRepository:
    def __init__(self, session: AsyncSession):
        self.session = session

    async def certificates_in_use(self) -> list[CertificateRow]:
        """Certificates something presents: bound to a domain's service, or a server's
        server-wide mail certificate or chosen webmail default. An unused certificate's expiry
        pages nobody, so it gets no series (the cardinality is bounded by what is served)."""
        used = union(
            select(Binding.certificate_id),
            select(Server.mail_certificate_id),
            select(Server.webmail_certificate_id).where(Server.webmail_certificate_id.is_not(None)),
        ).subquery()
        # The first name is taken in SQL (JSON index, both databases) rather than decoding every
        # list, and the rows run through Core, not the ORM: at 100,000 rows both cost seconds.
        first = func.coalesce(Certificate.sans[0].as_string(), Certificate.name, "")
        stmt = select(Certificate.id, Certificate.account_id, first, Certificate.source,
                      Certificate.not_after).where(Certificate.id.in_(select(used.c[0])))
        connection = await self.session.connection()
        return [CertificateRow(*row) for row in await connection.execute(stmt)]

    async def renewal_counts(self) -> dict[str, int]:
        """ACME certificates by renewal status (``scheduled``, ``renewing``, ``failed``)."""
        stmt = (select(func.coalesce(Certificate.renewal_status, "none"), func.count())
                .where(Certificate.source == "acme").group_by(Certificate.renewal_status))
        return {status: int(count) for status, count in await self.session.execute(stmt)}

    async def failing_renewals(self) -> list[RenewalRow]:
        """The certificates whose last renewal failed, with their attempt counts."""
        stmt = select(Certificate.id, Certificate.account_id, Certificate.sans, Certificate.name,
                      Certificate.renewal_attempts).where(Certificate.renewal_status == "failed")
        rows = await self.session.execute(stmt)
        return [RenewalRow(r[0], r[1], _primary(r[2], r[3]), int(r[4] or 0)) for r in rows]

    async def order_counts(self) -> dict[tuple[str, str], int]:
        """ACME orders by (purpose, status): ``valid`` and ``invalid`` only grow, so their
        increase over a window is the outcomes in that window."""
        stmt = (select(CertificateOrder.purpose, CertificateOrder.status, func.count())
                .group_by(CertificateOrder.purpose, CertificateOrder.status))
        return {(purpose, status): int(count) for purpose, status, count in await self.session.execute(stmt)}

    async def servers(self) -> list[ServerRow]:
        """Every server with its newest deployment's status and the number of names its applied
        generation holds back: one statement (the newest row per server through the unique
        (server_id, generation) index)."""
        newest, applied = aliased(Deployment), aliased(Deployment)
        top = (select(func.max(Deployment.generation)).where(Deployment.server_id == Server.id)
               .correlate(Server).scalar_subquery())
        stmt = (
            select(Server.id, Server.name, Server.agent_url, Server.desired_generation,
                   Server.applied_generation, Server.agent_contact_at, newest.status, applied.failed_names)
            .select_from(Server)
            .outerjoin(newest, and_(newest.server_id == Server.id, newest.generation == top))
            .outerjoin(applied, and_(applied.server_id == Server.id,
                                     applied.generation == Server.applied_generation))
        )
        rows = await self.session.execute(stmt)
        return [
            ServerRow(r[0], r[1], r[2] is not None, int(r[3] or 0), int(r[4] or 0), r[5], r[6],
                      len(r[7]) if isinstance(r[7], list) else 0)
            for r in rows
        ]

    async def webhook_delivery_counts(self, pruned: dict[str, int]) -> dict[str, int]:
        """Webhook deliveries by status (``pending``, ``retrying``, ``delivered``, ``failed``):
        one ``GROUP BY``, plus those retention pruned (``pruned``, from ``retention_totals``), so
        ``delivered`` and ``failed`` only grow and their increase over a window is the outcomes in it."""
        stmt = select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
        counts = {status: int(count) for status, count in await self.session.execute(stmt)}
        for status in ("delivered", "failed"):
            counts[status] = counts.get(status, 0) + int(pruned.get(f"webhook_deliveries.{status}", 0))
        return counts

    async def retention_totals(self) -> dict[str, int]:
        """Rows retention pruned since the database was made, by table (app/retention)."""
        totals = await self.session.scalar(select(ScheduledTask.pruned_total).where(ScheduledTask.id == "retention"))
        return {k: int(v) for k, v in (totals or {}).items()}
