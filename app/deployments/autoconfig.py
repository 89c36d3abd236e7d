"""The host name mail client autoconfiguration advertises, per domain, for the desired document.

The agent's nginx serves Thunderbird autoconfig, Outlook Autodiscover and Apple profiles from
the document's ``autoconfig`` map (domain -> host name; docs/autoconfig.md). Each value is the
pure rule ``rules.autoconfig_hostname`` on the domain's mail status, computed from the same
facts as the TLS status (the certificate presented for ``mail.<d>``: the binding's when the
software serves per-domain mail, else the server-wide one; trust as stored on the row).

It depends on the domain's own mail binding only (``mail.<d>`` is covered by the server-wide
certificate only in the rare case that certificate names it), so a delivery recomputes it for
the domains whose ``mail.<d>`` a change marked, and nothing else: O(changed domains).
"""

from __future__ import annotations

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.certificates.models import Certificate
from app.domains import rules
from app.domains.models import Binding, Domain
from app.kit.time import utc_now
from app.servers.models import Server
from app.servers.software import capabilities

_FACTS = (Certificate.sans, Certificate.not_before, Certificate.not_after, Certificate.trusted,
          Certificate.self_signed)


def _statement(server_id: str):
    return (
        select(Domain.name, *_FACTS, Binding.id.label("binding_id"))
        .select_from(Domain)
        .outerjoin(Binding, and_(Binding.domain_id == Domain.id, Binding.service == "mail"))
        .outerjoin(Certificate, Certificate.id == Binding.certificate_id)
        .where(Domain.server_id == server_id)
    )


async def load_autoconfig(session: AsyncSession, server: Server,
                          domains: list[str] | None = None) -> dict[str, str | None]:
    """Domain -> advertised host name, for every domain of ``server`` (``domains`` None) or for
    the given ones (None for a name that is not a domain of this server any more)."""
    server_cert = (await session.execute(
        select(*_FACTS).where(Certificate.id == server.mail_certificate_id))).one()
    per_domain_mail = capabilities(server.software).per_domain_mail
    now = utc_now()
    out: dict[str, str | None] = dict.fromkeys(domains or [])
    names = sorted(set(domains or []))
    batches = [None] if domains is None else [names[i:i + 500] for i in range(0, len(names), 500)]
    for batch in batches:
        stmt = _statement(server.id)
        if batch is not None:
            stmt = stmt.where(Domain.name.in_(batch))
        for row in await session.execute(stmt):
            bound = row.binding_id is not None and per_domain_mail
            mail = rules.service_status(
                "mail", row.name, row if bound else server_cert, "binding" if bound else "server-default",
                server_hostname=server.hostname, server_cert=server_cert, per_domain_mail=per_domain_mail,
                now=now, expiring_days=0,
            )
            out[row.name] = rules.autoconfig_hostname(mail, server.hostname)
    return out


def domains_of(hostnames: list[str]) -> list[str]:
    """The domains whose ``mail.<d>`` is among ``hostnames`` (the names a change marked)."""
    return sorted({name.split(".", 1)[1] for name in hostnames if name.startswith("mail.") and "." in name})
