"""The desired configuration of one server: what it should serve, by host name.

``load_desired`` reads it in three queries whatever the number of domains; ``DesiredConfig``
is the document the agent receives (``PUT /v1/config``, docs/agent.md), minus the bundles,
which are added only for the fingerprints the agent does not already hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.certificates.models import Certificate
from app.deployments.autoconfig import load_autoconfig
from app.domains.models import Binding, Domain
from app.servers.models import Server
from app.servers.software import capabilities


@dataclass
class DesiredConfig:
    generation: int
    server_hostname: str
    server_certificate: str  # fingerprint of the server-wide mail certificate
    # Fingerprint nginx presents without SNI, for the host name and for webmail names without a
    # binding: the server's chosen webmail certificate, else its server-wide mail certificate.
    webmail_default: str
    mail: dict[str, str] = field(default_factory=dict)  # mail.<d> -> fingerprint
    webmail: dict[str, str] = field(default_factory=dict)  # webmail.<d> -> fingerprint
    certificate_ids: dict[str, str] = field(default_factory=dict)  # fingerprint -> certificate id
    # Mail client autoconfiguration: every domain -> the host name advertised (autoconfig.py).
    autoconfig: dict[str, str] = field(default_factory=dict)

    def document(self, *, autoconfig: bool = True) -> dict:
        """The agent's document without bundles (also the API's preview); ``autoconfig`` False
        for an agent that does not announce the feature (its schema refuses the member). An
        empty map is left out, as the agent leaves it out of the digest it reports."""
        document = {
            "generation": self.generation,
            "server_hostname": self.server_hostname,
            "server_certificate": self.server_certificate,
            "webmail_default": self.webmail_default,
            "mail": dict(sorted(self.mail.items())),
            "webmail": dict(sorted(self.webmail.items())),
        }
        if autoconfig and self.autoconfig:
            document["autoconfig"] = dict(sorted(self.autoconfig.items()))
        return document

    @property
    def fingerprints(self) -> set[str]:
        return set(self.certificate_ids)


async def load_desired(session: AsyncSession, server: Server) -> DesiredConfig:
    webmail_default_id = server.webmail_default_id
    defaults = {
        c.id: c
        for c in await session.scalars(
            select(Certificate).where(Certificate.id.in_({server.mail_certificate_id, webmail_default_id}))
        )
    }
    server_cert = defaults[server.mail_certificate_id]
    default_cert = defaults[webmail_default_id]
    config = DesiredConfig(
        generation=server.desired_generation,
        server_hostname=server.hostname,
        server_certificate=server_cert.fingerprint_sha256,
        webmail_default=default_cert.fingerprint_sha256,
        certificate_ids={
            server_cert.fingerprint_sha256: server_cert.id,
            default_cert.fingerprint_sha256: default_cert.id,
        },
    )
    per_domain_mail = capabilities(server.software).per_domain_mail
    rows = await session.execute(
        select(Domain.name, Binding.service, Certificate.id, Certificate.fingerprint_sha256)
        .join(Binding, Binding.domain_id == Domain.id)
        .join(Certificate, Certificate.id == Binding.certificate_id)
        .where(Domain.server_id == server.id)
    )
    for domain, service, cert_id, fingerprint in rows:
        if service == "mail" and not per_domain_mail:
            continue  # refused at binding time; kept out in case the software changed since
        target = config.mail if service == "mail" else config.webmail
        target[f"{service}.{domain}"] = fingerprint
        config.certificate_ids[fingerprint] = cert_id
    config.autoconfig = await load_autoconfig(session, server)
    return config


CHUNK = 500  # names per IN (...) list: well under SQLite's and asyncpg's parameter limits


def chunks(items: list, size: int = CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


async def load_head(session: AsyncSession, server: Server) -> dict[str, str]:
    """The document's three scalars, in one query."""
    fps = dict(
        (await session.execute(
            select(Certificate.id, Certificate.fingerprint_sha256)
            .where(Certificate.id.in_({server.mail_certificate_id, server.webmail_default_id}))
        )).all()
    )
    return {
        "server_hostname": server.hostname,
        "server_certificate": fps[server.mail_certificate_id],
        "webmail_default": fps[server.webmail_default_id],
    }


async def load_names(session: AsyncSession, server: Server, hostnames: list[str]) -> dict[str, str | None]:
    """The desired fingerprint of each of ``hostnames`` (None: the name is not in the document:
    no binding, no domain, or mail on software without per-domain mail)."""
    by_domain: dict[str, list[str]] = {}
    for hostname in hostnames:
        service, _, domain = hostname.partition(".")
        if service in ("mail", "webmail") and domain:
            by_domain.setdefault(domain, []).append(hostname)
    per_domain_mail = capabilities(server.software).per_domain_mail
    out: dict[str, str | None] = dict.fromkeys(hostnames)
    for chunk in chunks(sorted(by_domain)):
        rows = await session.execute(
            select(Domain.name, Binding.service, Certificate.fingerprint_sha256)
            .join(Binding, Binding.domain_id == Domain.id)
            .join(Certificate, Certificate.id == Binding.certificate_id)
            .where(Domain.server_id == server.id, Domain.name.in_(chunk))
        )
        for domain, service, fingerprint in rows:
            hostname = f"{service}.{domain}"
            if hostname in out and (service == "webmail" or per_domain_mail):
                out[hostname] = fingerprint
    return out
